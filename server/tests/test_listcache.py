"""Lists answered from memory: never stale, on any replica, and really from memory."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from fibapi import contract, create_app, listcache
from fibapi.config import Settings
from flask import Flask
from flask.testing import FlaskClient
from queue_runner import drain
from redis import Redis

from stack.servers import RedisServer

LISTS = ("/api/values/current", "/api/values/all", "/api/values/recent")


@pytest.fixture
def replica(settings: Settings) -> Iterator[FlaskClient]:
    """A second API process on the same Postgres and Redis, with its own memory."""
    other: Flask = create_app(settings)
    yield other.test_client()
    other.extensions["fibstack.db"].close()


# How soon another replica's lists show a change: the stream's entry reaching it (a millisecond or so).
OTHER_REPLICA_SECONDS = 0.5


def soon(replica: FlaskClient, path: str, expected: object) -> None:
    """`replica` answers `path` with `expected` within OTHER_REPLICA_SECONDS."""
    deadline = time.monotonic() + OTHER_REPLICA_SECONDS
    while (got := replica.get(path).get_json()) != expected:
        assert time.monotonic() < deadline, f"{path} still {got} after {OTHER_REPLICA_SECONDS} s"
        time.sleep(0.005)


def following(client: FlaskClient) -> None:
    """Wait until `client`'s process follows the streams: until then it keeps nothing."""
    client.get("/api/values/all")  # the first list read starts the reader
    changes = client.application.extensions["fibstack.events"]
    deadline = time.monotonic() + 5
    while not changes.in_step:
        assert time.monotonic() < deadline, "the reader never got in step"
        time.sleep(0.01)


def test_the_replica_that_took_a_submission_shows_it_at_once(client: FlaskClient) -> None:
    for path in LISTS:
        assert client.get(path).status_code == 200  # kept now
    assert client.post("/api/values", json={"index": "12"}).status_code == 202
    # No waiting: read your writes.
    assert client.get("/api/values/all").get_json() == [{"number": 12}]
    assert client.get("/api/values/current").get_json() == {"12": contract.NOTHING_YET}
    assert client.post("/api/values", json={"index": "12"}).status_code == 202  # a repeat: no status change
    assert client.get("/api/values/all").get_json() == [{"number": 12}, {"number": 12}]


def test_every_list_is_current_on_another_replica_within_its_bound(
    client: FlaskClient, replica: FlaskClient, redis_server: RedisServer
) -> None:
    for path in LISTS:
        assert replica.get(path).status_code == 200  # the replica keeps them now
    assert client.post("/api/values", json={"index": "12"}).status_code == 202
    soon(replica, "/api/values/current", {"12": contract.NOTHING_YET})
    soon(replica, "/api/values/all", [{"number": 12}])
    assert replica.get("/api/values/recent").get_json()[0]["status"] == "pending"
    drain(redis_server.port)  # the worker's result, written straight to Redis
    soon(replica, "/api/values/current", {"12": "144"})
    assert replica.get("/api/values/recent").get_json()[0]["value"] == "144"
    assert client.post("/api/values", json={"index": "12"}).status_code == 202  # a repeat: no new status
    soon(replica, "/api/values/all", [{"number": 12}, {"number": 12}])


def test_lists_are_answered_without_asking_redis(client: FlaskClient, redis_server: RedisServer) -> None:
    assert client.post("/api/values", json={"index": "6"}).status_code == 202
    following(client)
    for path in LISTS:
        client.get(path)
    counter = Redis(port=redis_server.port)
    before = counter.info("commandstats")
    for _ in range(20):
        for path in LISTS:
            assert client.get(path).status_code == 200
    after = counter.info("commandstats")
    calls = {name: stats["calls"] - before.get(name, {"calls": 0})["calls"] for name, stats in after.items()}
    # Only the commands of the two INFO calls and the streams' reader (XREAD) ran meanwhile.
    assert {name for name, count in calls.items() if count} <= {"cmdstat_info", "cmdstat_xread"}


def test_an_unchanged_list_is_answered_from_memory(client: FlaskClient, pg_conn: psycopg.Connection) -> None:
    assert client.post("/api/values", json={"index": "3"}).status_code == 202
    following(client)
    assert client.get("/api/values/all").get_json() == [{"number": 3}]
    # Changed behind the app's back, with no stream entry: the kept answer stands.
    pg_conn.execute("DELETE FROM submissions")
    assert client.get("/api/values/all").get_json() == [{"number": 3}]


def test_a_browser_revalidating_gets_304_until_something_changes(client: FlaskClient) -> None:
    first = client.get("/api/values/recent")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    again = client.get("/api/values/recent", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert client.post("/api/values", json={"index": "4"}).status_code == 202
    changed = client.get("/api/values/recent", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.get_json()[0]["index"] == 4


def test_a_change_behind_fibstacks_back_shows_within_the_age_bound(
    client: FlaskClient, pg_conn: psycopg.Connection
) -> None:
    # Postgres edited by hand: no stream entry tells of it; the kept answer ages out.
    assert client.post("/api/values", json={"index": "5"}).status_code == 202
    assert client.get("/api/values/current").get_json() == {"5": contract.NOTHING_YET}
    pg_conn.execute("UPDATE indexes SET status = 'failed', error = 'lost' WHERE number = 5")
    deadline = time.monotonic() + listcache.MAX_AGE_SECONDS + 0.5
    while client.get("/api/values/current").get_json() != {"5": "Failed: lost"}:
        assert time.monotonic() < deadline, "the kept answer outlived MAX_AGE_SECONDS"
        time.sleep(0.05)


def test_while_the_reader_is_out_of_step_nothing_is_kept(client: FlaskClient, pg_conn: psycopg.Connection) -> None:
    client.get("/api/values/all")
    changes = client.application.extensions["fibstack.events"]
    changes._last_read = None  # as when it lost Redis
    client.application.extensions["fibstack.listcache"].invalidate()
    assert client.get("/api/values/all").get_json() == []
    pg_conn.execute("INSERT INTO submissions (number) VALUES (9)")  # behind the app's back
    assert client.get("/api/values/all").get_json() == [{"number": 9}]  # built again, not kept
