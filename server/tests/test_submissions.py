"""Concurrent submissions share one write, and each still gets exactly what it would have got alone.

Against the real Postgres and Redis; the first group is held open so the others arrive during it.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from fibapi import contract, create_app, store
from fibapi.config import Settings
from fibapi.db import Database
from flask import Flask
from processes import wait_until
from queue_runner import drain
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from stack.servers import RedisServer


class Held:
    """Holds the first group's INSERT until released: submissions arriving meanwhile wait for the next group."""

    def __init__(self, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writing = threading.Event()
        self.release = threading.Event()
        record = Database.record_submissions

        def holding(conn: psycopg.Connection, indexes: list[int]) -> None:
            if not self.writing.is_set():
                self.writing.set()
                assert self.release.wait(10)
            record(conn, indexes)

        monkeypatch.setattr(app.extensions["fibstack.db"], "record_submissions", holding)


@pytest.fixture
def held(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Held:
    return Held(app, monkeypatch)


def post_all(app: Flask, bodies: list[Any]) -> tuple[list[threading.Thread], dict[int, Any]]:
    answers: dict[int, Any] = {}

    def post(at: int, body: Any) -> None:
        answers[at] = app.test_client().post("/api/values", json=body)

    threads = [threading.Thread(target=post, args=(at, body)) for at, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    return threads, answers


def wait_for_waiters(app: Flask, count: int) -> None:
    commit = app.extensions["fibstack.submissions"].group_commit
    wait_until(lambda: commit.waiting() >= count, timeout=10, interval=0.001)


def rows(pg_conn: psycopg.Connection) -> list[int]:
    return [number for (number,) in pg_conn.execute("SELECT number FROM submissions ORDER BY id")]


def test_submissions_during_a_write_share_one_and_each_is_committed_before_its_202(
    app: Flask, held: Held, pg_conn: psycopg.Connection, redis_client: Redis
) -> None:
    first, first_answer = post_all(app, [{"index": 1}])
    assert held.writing.wait(10)
    bodies = [{"index": index} for index in range(2, 22)] + [{"index": 5}, {"index": 1}]
    later, answers = post_all(app, bodies)
    wait_for_waiters(app, len(bodies))
    assert not answers, "a 202 was sent before its row was committed"
    assert rows(pg_conn) == []
    held.release.set()
    for thread in first + later:
        thread.join(10)

    assert first_answer[0].status_code == 202
    assert [answers[at].status_code for at in range(len(bodies))] == [202] * len(bodies)
    assert app.extensions["fibstack.submissions"].group_commit.groups == 2
    # Every submission a row, the repeated ones too; each index once, counted.
    assert sorted(rows(pg_conn)) == sorted([1, *range(2, 22), 5, 1])
    counts = dict(pg_conn.execute("SELECT number, submissions FROM indexes").fetchall())
    assert (counts[5], counts[1], counts[2]) == (2, 2, 1)
    # Queued once each: a job per distinct index, and every answer says pending.
    assert redis_client.llen(f"rq:queue:{contract.QUEUE_NAME}") == 21
    for answer in [first_answer[0], *answers.values()]:
        assert answer.get_json()["status"] == contract.PENDING


def test_in_a_group_each_new_index_is_admitted_as_if_it_came_alone(
    services_env: dict[str, str], pg_conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(Settings.from_env(services_env | {"ADMISSION_QUEUE_MAX": "5"}))
    try:
        hold = Held(app, monkeypatch)
        first, _ = post_all(app, [{"index": 100}])
        assert hold.writing.wait(10)
        bodies = [{"index": index} for index in range(101, 109)] + [{"index": 100}]
        later, answers = post_all(app, bodies)
        wait_for_waiters(app, len(bodies))
        hold.release.set()
        for thread in first + later:
            thread.join(10)
        by_index = {body["index"]: answers[at] for at, body in enumerate(bodies) if body["index"] != 100}
        accepted = {index for index, answer in by_index.items() if answer.status_code == 202}
        assert len(accepted) == 4  # the queue's room: 5 jobs, 100's the first
        for index in set(by_index) - accepted:
            assert by_index[index].status_code == 503
            assert by_index[index].get_json()["code"] == "over_capacity"
        assert answers[len(bodies) - 1].status_code == 202  # known already: no room needed
        assert sorted(rows(pg_conn)) == sorted([100, *accepted, 100])  # nothing refused recorded
    finally:
        app.extensions["fibstack.db"].close()


def test_when_postgres_fails_in_a_group_every_submission_of_it_is_a_503(
    app: Flask, pg_conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: psycopg.Connection, indexes: list[int]) -> None:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(app.extensions["fibstack.db"], "record_submissions", broken)
    threads, answers = post_all(app, [{"index": index} for index in range(30, 40)])
    for thread in threads:
        thread.join(10)
    assert {answer.status_code for answer in answers.values()} == {503}
    assert {answer.get_json()["code"] for answer in answers.values()} == {"postgres_unavailable"}
    assert rows(pg_conn) == []


def queued_jobs(redis_client: Redis) -> list[Job]:
    """The queued jobs, oldest first."""
    return [
        Job.fetch(job_id.decode(), connection=redis_client, serializer=JSONSerializer)
        for job_id in redis_client.lrange(f"rq:queue:{contract.QUEUE_NAME}", 0, -1)
    ]


def jobs_queued(redis_client: Redis) -> list[tuple[str, Any]]:
    """Each queued job's function and argument, oldest first."""
    return [(job.func_name, job.args[0]) for job in queued_jobs(redis_client)]


def test_a_group_arriving_at_a_deep_queue_is_one_batch_job_and_each_of_it_is_computed(
    app: Flask, held: Held, pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer
) -> None:
    # A job already waiting, queued by another replica: this one does not know 900 is pending.
    another_replica = store.Store(app.extensions["fibstack.store"].settings)
    another_replica.request_computation(900)
    first, _ = post_all(app, [{"index": 901}])
    assert held.writing.wait(10)
    small = list(range(10, 20))
    bodies = [{"index": index} for index in [*small, 10, 900, store.BATCH_INDEX_MAX + 1]]
    later, answers = post_all(app, bodies)
    wait_for_waiters(app, len(bodies))
    held.release.set()
    for thread in first + later:
        thread.join(10)
    assert {answer.status_code for answer in answers.values()} == {202}

    queued = jobs_queued(redis_client)
    assert queued[:2] == [(contract.JOB_FUNCTION, 900), (contract.JOB_FUNCTION, 901)]
    # The group's small ones in one job, each once; the large one alone. The
    # batch names 900 too (written before the script saw it pending), but
    # claims only the new ones: 900 stays its own job's.
    (batch,) = [argument for function, argument in queued[2:] if function == contract.BATCH_JOB_FUNCTION]
    assert sorted(batch) == [*small, 900]
    claims = {index: redis_client.hget(contract.status_key(index), "job") for index in [*small, 900]}
    assert len({claims[index] for index in small}) == 1
    assert claims[900] != claims[10]
    assert (contract.JOB_FUNCTION, store.BATCH_INDEX_MAX + 1) in queued
    assert len(queued) == 4
    assert sorted(rows(pg_conn)) == sorted([901, *small, 10, 900, store.BATCH_INDEX_MAX + 1])

    drain(redis_server.port)
    for index in [900, 901, *small, store.BATCH_INDEX_MAX + 1]:
        status = redis_client.hget(contract.status_key(index), "status")
        assert status == contract.DONE.encode(), index
    assert redis_client.get(contract.decimal_key(19)) == b"4181"


def test_a_repeated_index_is_submitted_without_recording_a_job(
    app: Flask, monkeypatch: pytest.MonkeyPatch, redis_client: Redis
) -> None:
    the_store = app.extensions["fibstack.store"]
    recorded = []
    record = the_store._queue_commands
    monkeypatch.setattr(the_store, "_queue_commands", lambda index: recorded.append(index) or record(index))
    client = app.test_client()
    for _ in range(3):
        assert client.post("/api/values", json={"index": 7}).status_code == 202
    assert recorded == [7]
    assert jobs_queued(redis_client) == [(contract.JOB_FUNCTION, 7)]


def test_an_index_redis_lost_is_queued_again_in_its_own_submitters_name(
    app: Flask, monkeypatch: pytest.MonkeyPatch, pg_conn: psycopg.Connection, redis_client: Redis,
    redis_server: RedisServer,
) -> None:  # fmt: skip
    assert app.test_client().post("/api/values", json={"index": 7}).status_code == 202
    drain(redis_server.port)
    redis_client.flushall()  # a Redis that restarted without its data: this process still thinks 7 is done
    held = Held(app, monkeypatch)

    # 7 in a group another submission leads, so that its job is recorded in the leader's request.
    answers: dict[str, Any] = {}

    def post(index: int, request_id: str) -> None:
        headers = {"X-Request-ID": request_id}
        answers[request_id] = app.test_client().post("/api/values", json={"index": index}, headers=headers)

    threads = [threading.Thread(target=post, args=(901, "holds-the-write-0001"))]
    threads[0].start()
    assert held.writing.wait(10)
    for count, (index, request_id) in enumerate([(8, "leads-the-group-0001"), (7, "resubmits-seven-0001")], 1):
        threads.append(threading.Thread(target=post, args=(index, request_id)))
        threads[-1].start()
        wait_for_waiters(app, count)
    held.release.set()
    for thread in threads:
        thread.join(10)

    assert {answer.status_code for answer in answers.values()} == {202}
    assert answers["resubmits-seven-0001"].get_json()["status"] == "pending"
    jobs = {job.args[0]: job.meta[contract.JOB_META_REQUEST_ID] for job in queued_jobs(redis_client)}
    assert jobs == {901: "holds-the-write-0001", 8: "leads-the-group-0001", 7: "resubmits-seven-0001"}
    assert rows(pg_conn) == [7, 901, 8, 7]
    drain(redis_server.port)
    assert redis_client.hget(contract.status_key(7), "status") == contract.DONE.encode()


def lists_changes(redis_client: Redis) -> list[str]:
    return [fields[b"indexes"].decode() for _, fields in redis_client.xrange(contract.LISTS_CHANGES)]


def test_each_group_is_announced_once_after_its_commit_the_next_group_carrying_it(
    app: Flask, held: Held, monkeypatch: pytest.MonkeyPatch, redis_client: Redis
) -> None:
    the_store = app.extensions["fibstack.store"]
    alone = []
    announce = the_store.announce
    monkeypatch.setattr(the_store, "announce", lambda change: alone.append(list(change.indexes)) or announce(change))
    first, _ = post_all(app, [{"index": 1}])
    assert held.writing.wait(10)
    later, answers = post_all(app, [{"index": index} for index in (2, 3, 4)])
    wait_for_waiters(app, 3)
    assert lists_changes(redis_client) == [], "announced before its commit"
    held.release.set()
    for thread in first + later:
        thread.join(10)

    assert {answer.status_code for answer in answers.values()} == {202}
    second = sorted(int(index) for index in lists_changes(redis_client)[1].split(","))
    assert (lists_changes(redis_client)[0], second) == ("1", [2, 3, 4])
    # The first group's entry went with the second group's queueing; the last, with nobody after it, alone.
    assert [sorted(indexes) for indexes in alone] == [[2, 3, 4]]


def test_a_group_owed_announcement_is_made_even_when_the_next_group_fails_first(
    app: Flask, held: Held, monkeypatch: pytest.MonkeyPatch, redis_client: Redis
) -> None:
    first, first_answer = post_all(app, [{"index": 1}])
    assert held.writing.wait(10)

    def no_connection() -> None:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(app.extensions["fibstack.db"], "connection", no_connection)
    later, answers = post_all(app, [{"index": index} for index in (2, 3)])
    wait_for_waiters(app, 2)
    held.release.set()
    for thread in first + later:
        thread.join(10)

    assert first_answer[0].status_code == 202
    assert {answer.status_code for answer in answers.values()} == {503}
    assert lists_changes(redis_client) == ["1"]


def test_a_group_reads_redis_memory_once_however_many_new_indexes_it_has(app: Flask, redis_client: Redis) -> None:
    def info_calls() -> int:
        return int(redis_client.info("commandstats").get("cmdstat_info", {}).get("calls", 0))

    the_store = app.extensions["fibstack.store"]
    the_store.request_computation(499)  # the script loaded, the connection made
    before = info_calls()
    queued = the_store.request_computations([the_store.prepare(index) for index in range(500, 510)])
    assert queued.outcomes == [True] * 10
    assert info_calls() - before == 2  # the script's one, and the INFO that read `before`
