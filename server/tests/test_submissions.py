"""Concurrent submissions share one write, and each still gets exactly what it would have got alone.

Against the real Postgres and Redis; the first group is held open so the others arrive during it.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from fibapi import contract, create_app, queueing
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
    """Holds the first group's statement until released: submissions arriving meanwhile wait for the next group."""

    def __init__(self, app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writing = threading.Event()
        self.release = threading.Event()
        record = Database.record_submissions

        def holding(conn: psycopg.Connection, indexes: list[int], jobs: dict[int, str]) -> Any:
            if not self.writing.is_set():
                self.writing.set()
                assert self.release.wait(10)
            return record(conn, indexes, jobs)

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
        first, _ = post_all(app, [{"index": 100_100}])
        assert hold.writing.wait(10)
        bodies = [{"index": index} for index in range(100_101, 100_109)] + [{"index": 100_100}]
        later, answers = post_all(app, bodies)
        wait_for_waiters(app, len(bodies))
        hold.release.set()
        for thread in first + later:
            thread.join(10)
        by_index = {body["index"]: answers[at] for at, body in enumerate(bodies) if body["index"] != 100_100}
        accepted = {index for index, answer in by_index.items() if answer.status_code == 202}
        assert len(accepted) == 4  # the queue's room: 5 jobs, 100,100's the first
        for index in set(by_index) - accepted:
            assert by_index[index].status_code == 503
            assert by_index[index].get_json()["code"] == "over_capacity"
        assert answers[len(bodies) - 1].status_code == 202  # known already: no room needed
        # Nothing refused is recorded: neither its submission nor its index.
        assert sorted(rows(pg_conn)) == sorted([100_100, *accepted, 100_100])
        assert indexes_recorded(pg_conn) == {100_100, *accepted}
        assert lists_changes(redis_client_of(services_env)) == ["100100", ",".join(map(str, sorted(accepted)))
                                                               + ",100100"]  # fmt: skip
    finally:
        app.extensions["fibstack.db"].close()


def indexes_recorded(pg_conn: psycopg.Connection) -> set[int]:
    return {number for (number,) in pg_conn.execute("SELECT number FROM indexes")}


def redis_client_of(env: dict[str, str]) -> Redis:
    return Redis(port=int(env["REDIS_PORT"]))


def test_a_refused_index_is_accepted_later_once_there_is_room(
    services_env: dict[str, str], pg_conn: psycopg.Connection, redis_server: RedisServer
) -> None:
    app = create_app(Settings.from_env(services_env | {"ADMISSION_QUEUE_MAX": "1"}))
    try:
        client = app.test_client()
        assert client.post("/api/values", json={"index": 40}).status_code == 202
        assert client.post("/api/values", json={"index": 41}).status_code == 503
        assert indexes_recorded(pg_conn) == {40}
        drain(redis_server.port)
        answer = client.post("/api/values", json={"index": 41})
        assert (answer.status_code, answer.get_json()["status"]) == (202, "pending")
        drain(redis_server.port)
        assert client.get("/api/values/41").get_json()["value"] == "165580141"
        assert pg_conn.execute("SELECT submissions, attempts FROM indexes WHERE number = 41").fetchone() == (1, 1)
    finally:
        app.extensions["fibstack.db"].close()


def test_a_failed_index_is_queued_again_when_submitted_and_stays_failed_if_refused(
    services_env: dict[str, str], pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer
) -> None:
    app = create_app(Settings.from_env(services_env | {"ADMISSION_QUEUE_MAX": "1"}))
    try:
        client = app.test_client()
        pg_conn.execute(
            "INSERT INTO indexes (number, status, error, job) VALUES (50, 'failed', 'timed out', 'fib-50-x')"
        )
        redis_client.hset(contract.status_key(50), mapping=contract.failed_fields("timed out"))
        assert client.post("/api/values", json={"index": 60}).status_code == 202  # the queue is full now
        refused = client.post("/api/values", json={"index": 50})
        assert refused.status_code == 503
        state = pg_conn.execute("SELECT status, error, attempts, submissions FROM indexes WHERE number = 50")
        assert state.fetchone() == ("failed", "timed out", 1, 1)
        assert client.get("/api/values/50").get_json()["status"] == "failed"
        drain(redis_server.port)
        again = client.post("/api/values", json={"index": 50})
        assert (again.status_code, again.get_json()["status"], again.get_json()["error"]) == (202, "pending", None)
        assert not redis_client.exists(contract.status_key(50))  # its cached "failed" is gone with it
        assert client.get("/api/values/50").get_json()["status"] == "pending"
        drain(redis_server.port)
        assert client.get("/api/values/50").get_json()["value"] == "12586269025"
        assert pg_conn.execute("SELECT attempts FROM indexes WHERE number = 50").fetchone() == (2,)
    finally:
        app.extensions["fibstack.db"].close()


def test_when_postgres_fails_in_a_group_every_submission_of_it_is_a_503(
    app: Flask, pg_conn: psycopg.Connection, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: psycopg.Connection, indexes: list[int], jobs: dict[int, str]) -> None:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(app.extensions["fibstack.db"], "record_submissions", broken)
    threads, answers = post_all(app, [{"index": index} for index in range(30, 40)])
    for thread in threads:
        thread.join(10)
    assert {answer.status_code for answer in answers.values()} == {503}
    assert {answer.get_json()["code"] for answer in answers.values()} == {"postgres_unavailable"}
    assert rows(pg_conn) == []
    assert redis_client.llen(f"rq:queue:{contract.QUEUE_NAME}") == 0


def test_when_redis_fails_after_the_record_it_is_undone(
    app: Flask, pg_conn: psycopg.Connection, redis_server: RedisServer
) -> None:
    client = app.test_client()
    assert client.post("/api/values", json={"index": 70}).status_code == 202  # known, then Redis goes
    redis_server.stop()
    try:
        for index in (70, 71):
            answer = client.post("/api/values", json={"index": index})
            assert (answer.status_code, answer.get_json()["code"]) == (503, "redis_unavailable")
    finally:
        redis_server.start()
    assert rows(pg_conn) == [70]
    assert pg_conn.execute("SELECT number, submissions FROM indexes").fetchall() == [(70, 1)]


def queued_jobs(redis_client: Redis) -> list[Job]:
    """The queued jobs, oldest first."""
    return [
        Job.fetch(job_id.decode(), connection=redis_client, serializer=JSONSerializer)
        for job_id in redis_client.lrange(f"rq:queue:{contract.QUEUE_NAME}", 0, -1)
    ]


def jobs_queued(redis_client: Redis) -> list[tuple[str, Any]]:
    """Each queued job's function and argument, oldest first."""
    return [(job.func_name, job.args[0]) for job in queued_jobs(redis_client)]


def recorded_jobs(pg_conn: psycopg.Connection) -> dict[int, str]:
    return dict(pg_conn.execute("SELECT number, job FROM indexes").fetchall())


def test_a_group_arriving_at_a_deep_queue_is_one_batch_job_and_each_of_it_is_computed(
    app: Flask, monkeypatch: pytest.MonkeyPatch, pg_conn: psycopg.Connection, redis_client: Redis,
    redis_server: RedisServer,
) -> None:  # fmt: skip
    client = app.test_client()
    for index in (898, 899):  # two jobs waiting: the queue is deep
        assert client.post("/api/values", json={"index": index}).status_code == 202
    held = Held(app, monkeypatch)
    first, _ = post_all(app, [{"index": 901}])
    assert held.writing.wait(10)
    small = list(range(10, 20))
    large = queueing.BATCH_INDEX_MAX + 1
    bodies = [{"index": index} for index in [*small, 10, 898, large]]
    later, answers = post_all(app, bodies)
    wait_for_waiters(app, len(bodies))
    held.release.set()
    for thread in first + later:
        thread.join(10)
    assert {answer.status_code for answer in answers.values()} == {202}

    queued = jobs_queued(redis_client)
    assert queued[:3] == [(contract.JOB_FUNCTION, 898), (contract.JOB_FUNCTION, 899), (contract.JOB_FUNCTION, 901)]
    # The group's small new ones in one job, each once (898 is known: no job); the large one alone.
    (batch,) = [argument for function, argument in queued[3:] if function == contract.BATCH_JOB_FUNCTION]
    assert sorted(batch) == small
    jobs = recorded_jobs(pg_conn)
    assert len({jobs[index] for index in small}) == 1
    assert (contract.JOB_FUNCTION, large) in queued
    assert len(queued) == 5
    assert sorted(rows(pg_conn)) == sorted([898, 899, 901, *small, 10, 898, large])

    drain(redis_server.port)
    statuses = dict(pg_conn.execute("SELECT number, status FROM indexes").fetchall())
    assert set(statuses.values()) == {contract.DONE}
    assert client.get("/api/values/19").get_json()["value"] == "4181"


def test_a_repeated_index_is_recorded_each_time_and_queued_once(
    app: Flask, pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer
) -> None:
    client = app.test_client()
    for _ in range(3):
        assert client.post("/api/values", json={"index": 7}).status_code == 202
    assert jobs_queued(redis_client) == [(contract.JOB_FUNCTION, 7)]
    drain(redis_server.port)
    redis_client.flushall()  # Redis forgot everything: Postgres still knows 7 is done
    answer = client.post("/api/values", json={"index": 7})
    assert (answer.status_code, answer.get_json()["status"], answer.get_json()["value"]) == (202, "done", "13")
    assert jobs_queued(redis_client) == []
    assert rows(pg_conn) == [7, 7, 7, 7]


def test_replicas_receiving_the_same_new_indexes_at_once_queue_each_once(
    services_env: dict[str, str], pg_conn: psycopg.Connection, redis_client: Redis
) -> None:
    apps = [create_app(Settings.from_env(services_env)) for _ in range(3)]
    try:
        bodies = [{"index": index} for index in range(200, 260)]
        threads = [thread for app in apps for thread in post_all(app, bodies * 2)[0]]
        for thread in threads:
            thread.join(20)
        queued = [argument for _, argument in jobs_queued(redis_client)]
        each = [index for argument in queued for index in (argument if isinstance(argument, list) else [argument])]
        assert sorted(each) == list(range(200, 260))  # every index in exactly one job
        assert len(rows(pg_conn)) == 3 * 2 * 60
    finally:
        for app in apps:
            app.extensions["fibstack.db"].close()


def test_each_job_carries_its_own_submitters_request_id(
    app: Flask, monkeypatch: pytest.MonkeyPatch, pg_conn: psycopg.Connection, redis_client: Redis
) -> None:
    held = Held(app, monkeypatch)
    # 7 in a group another submission leads, so that its job is recorded in the leader's request.
    answers: dict[str, Any] = {}

    def post(index: int, request_id: str) -> None:
        headers = {"X-Request-ID": request_id}
        answers[request_id] = app.test_client().post("/api/values", json={"index": index}, headers=headers)

    threads = [threading.Thread(target=post, args=(901, "holds-the-write-0001"))]
    threads[0].start()
    assert held.writing.wait(10)
    for count, (index, request_id) in enumerate([(8, "leads-the-group-0001"), (7, "submits-seven-0001")], 1):
        threads.append(threading.Thread(target=post, args=(index, request_id)))
        threads[-1].start()
        wait_for_waiters(app, count)
    held.release.set()
    for thread in threads:
        thread.join(10)

    assert {answer.status_code for answer in answers.values()} == {202}
    jobs = {job.args[0]: job.meta[contract.JOB_META_REQUEST_ID] for job in queued_jobs(redis_client)}
    assert jobs == {901: "holds-the-write-0001", 8: "leads-the-group-0001", 7: "submits-seven-0001"}


def lists_changes(redis_client: Redis) -> list[str]:
    return [fields[b"indexes"].decode() for _, fields in redis_client.xrange(contract.LISTS_CHANGES)]


def test_each_group_is_announced_once_after_its_commit_in_its_own_queueing_script(
    app: Flask, held: Held, monkeypatch: pytest.MonkeyPatch, redis_client: Redis
) -> None:
    alone: list[Any] = []
    monkeypatch.setattr(queueing, "announce", lambda store, change: alone.append(change))
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
    assert alone == []  # no round trip of its own: the script that queued the group appended it


def test_a_group_reads_redis_memory_once_however_many_new_indexes_it_has(app: Flask, redis_client: Redis) -> None:
    def info_calls() -> int:
        return int(redis_client.info("commandstats").get("cmdstat_info", {}).get("calls", 0))

    the_store = app.extensions["fibstack.store"]
    queueing.queue(the_store, [queueing.Job(contract.new_job_id(499), [499])])  # the script loaded
    before = info_calls()
    answers = queueing.queue(the_store, [queueing.Job(contract.new_job_id(i), [i]) for i in range(500, 510)])
    assert answers == [True] * 10
    assert info_calls() - before == 2  # the script's one, and the INFO that read `before`
