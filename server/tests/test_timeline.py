"""The last few submissions as timelines of their stages, as GET /api/system gives them."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from fibapi import contract, system, timeline
from flask.testing import FlaskClient
from queue_runner import drain
from redis import Redis

from stack.servers import RedisServer


@pytest.fixture(autouse=True)
def never_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "KEEP_SECONDS", 0.0)  # each GET here sees the state after the steps before it


def recent(client: FlaskClient) -> list[dict[str, Any]]:
    body = client.get("/api/system").get_json()
    shown = body["recent"]
    assert isinstance(shown, list)
    return shown


def test_a_computed_submission_shows_every_stage_in_order(client: FlaskClient, redis_server: RedisServer) -> None:
    assert client.post("/api/values", json={"index": 90}).status_code == 202
    (waiting,) = recent(client)
    assert (waiting["index"], waiting["outcome"]) == (90, "waiting")
    assert waiting["stages"]["committed"] is not None
    assert waiting["stages"]["started"] is None
    drain(redis_server.port)

    (done,) = recent(client)
    assert (done["index"], done["outcome"]) == (90, contract.DONE)
    stages = [done["stages"][name] for name in timeline.STAGES]
    assert None not in stages
    assert stages[0] == 0
    # The API's three in order; the worker's two and the event after them (each stage
    # is since accepted, and the worker may start before the commit ends).
    assert stages[0] <= stages[1] <= stages[2]
    assert stages[1] <= stages[3] <= stages[4] <= stages[5]
    assert stages[5] < 10_000
    assert 0 <= done["age_seconds"] < 10


def test_a_submission_of_a_known_index_is_not_computed_again(client: FlaskClient, redis_server: RedisServer) -> None:
    client.post("/api/values", json={"index": 91})
    drain(redis_server.port)
    client.post("/api/values", json={"index": 91})
    again, first = recent(client)
    assert (again["outcome"], first["outcome"]) == ("computed before", contract.DONE)
    assert again["stages"]["committed"] is not None
    assert [again["stages"][name] for name in ("started", "done", "announced")] == [None] * 3


def test_a_submission_waiting_for_an_earlier_ones_job_shows_that_job(
    client: FlaskClient, redis_server: RedisServer
) -> None:
    client.post("/api/values", json={"index": 92})
    client.post("/api/values", json={"index": 92})
    drain(redis_server.port)
    assert [shown["outcome"] for shown in recent(client)] == [contract.DONE, contract.DONE]


def test_only_the_last_few_show_newest_first(client: FlaskClient) -> None:
    for index in range(100, 100 + contract.TIMELINE_MAX + 3):
        client.post("/api/values", json={"index": index})
    shown = [submission["index"] for submission in recent(client)]
    assert shown == list(range(100 + contract.TIMELINE_MAX + 2, 102, -1))


def test_refused_submissions_are_not_drawn(client: FlaskClient) -> None:
    assert client.post("/api/values", json={"index": "x"}).status_code == 422
    assert recent(client) == []


def test_a_computation_is_found_after_a_burst_of_earlier_events(
    client: FlaskClient, redis_server: RedisServer, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More events in the seconds before the submission than one read takes: its own are the newest.
    monkeypatch.setattr(system, "WINDOW_ENTRIES_MAX", 5)
    for index in range(20):
        redis_client.xadd(contract.EVENTS_STREAM, contract.event_entry(index, {"status": "done"}, f"fib-{index}-0"))
    client.post("/api/values", json={"index": 93})
    drain(redis_server.port)
    assert recent(client)[0]["outcome"] == contract.DONE


def test_a_computation_is_joined_by_its_job_not_its_index() -> None:
    shown = [timeline.Submission(5, 1000.0, 1001.0, 1002.0, "queued", "fib-5-new")]
    other_job = contract.event_entry(5, {"status": "done"}, "fib-5-old", 1.0, 1.0005)
    its_job = contract.event_entry(5, {"status": "done"}, "fib-5-new", 1.003, 1.004)
    events = [(b"1001-0", _raw(other_job)), (b"1005-0", _raw(its_job))]
    (drawn,) = timeline.drawn(shown, events, now=2.0)
    assert drawn["stages"] == {
        "accepted": 0.0,
        "committed": 1.0,
        "queued": 2.0,
        "started": 3.0,
        "done": 4.0,
        "announced": 5.0,
    }


def test_a_clock_behind_shows_a_stage_with_the_one_it_follows_never_before() -> None:
    shown = [timeline.Submission(5, 1000.0, 1001.0, 1002.0, "queued", "fib-5-a")]
    behind = contract.event_entry(5, {"status": "done"}, "fib-5-a", 0.9, 0.95)
    (drawn,) = timeline.drawn(shown, [(b"999-0", _raw(behind))], now=2.0)
    # The worker's clock 0.1 s behind the API's, Redis's whole milliseconds behind the worker's.
    assert drawn["stages"] == {
        "accepted": 0.0,
        "committed": 1.0,
        "queued": 2.0,
        "started": 2.0,
        "done": 2.0,
        "announced": 2.0,
    }


def test_each_lists_changes_entry_carries_its_groups_stamps(
    client: FlaskClient, redis_client: Redis, pg_conn: psycopg.Connection
) -> None:
    client.post("/api/values", json={"index": 93})
    ((_, fields),) = redis_client.xrange(contract.LISTS_CHANGES)
    stamps = json.loads(fields[contract.TIMELINE_FIELD.encode()])
    ((index, accepted, state, job),) = stamps["submissions"]
    assert (index, state) == (93, "queued")
    assert (job,) == pg_conn.execute("SELECT job FROM indexes WHERE number = 93").fetchone()
    assert accepted <= stamps["committed"] <= stamps["queued"]  # Postgres first, then the queue


def _raw(entry: dict[str, str]) -> dict[bytes, bytes]:
    return {key.encode(): value.encode() for key, value in entry.items()}
