"""The reconcile pass: whatever Redis lost, every index Postgres has pending gets a live job.

Against real Postgres and Redis. The grace is 0 here (the pass looks at
every pending index at once) but in the test of the grace itself.
"""

from __future__ import annotations

import time

import gmpy2
import psycopg
from fibapi import contract, reconcile
from fibapi.db import Database
from fibapi.metrics import HEALED
from flask import Flask
from flask.testing import FlaskClient
from queue_runner import drain
from redis import Redis
from rq.job import Job
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer

from stack.servers import RedisServer

QUEUE = f"rq:queue:{contract.QUEUE_NAME}"


def run_pass(app: Flask, grace: float = 0.0) -> reconcile.Pass | None:
    return reconcile.reconcile(app.extensions["fibstack.db"], app.extensions["fibstack.store"], grace)


def healed_by(app: Flask, grace: float = 0.0) -> tuple[int, int]:
    """(pending looked at, healed) by one pass."""
    done = run_pass(app, grace)
    assert done is not None
    return done.pending, done.healed


def queued_indexes(redis_client: Redis) -> list[int]:
    """Every index the queued jobs will compute, in the queue's order."""
    found = []
    for job_id in redis_client.lrange(QUEUE, 0, -1):
        job = Job.fetch(job_id.decode(), connection=redis_client, serializer=JSONSerializer)
        found += job.args[0] if isinstance(job.args[0], list) else [job.args[0]]
    return found


def jobs_of(pg_conn: psycopg.Connection) -> dict[int, str]:
    return dict(pg_conn.execute("SELECT number, job FROM indexes").fetchall())


def submitted(client: FlaskClient, pg_conn: psycopg.Connection, *indexes: int) -> dict[int, str]:
    """POST each of `indexes` (queued, not run); the job Postgres recorded for each."""
    for index in indexes:
        client.post("/api/values", json={"index": index})
    return jobs_of(pg_conn)


def test_nothing_is_healed_when_nothing_was_lost(app: Flask, client: FlaskClient, redis_client: Redis) -> None:
    assert healed_by(app) == (0, 0)
    client.post("/api/values", json={"index": 9})  # queued, not run
    assert healed_by(app) == (1, 0)
    assert queued_indexes(redis_client) == [9]


def test_a_flush_heals_every_pending_index_and_computes_nothing_done_again(
    app: Flask, client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    for index in (3, 4, 4, 30):
        client.post("/api/values", json={"index": index})
    drain(redis_server.port)
    for index in (5, 6):
        client.post("/api/values", json={"index": index})  # accepted, their jobs not run yet
    redis_client.flushall()
    # The lists are right at once: Postgres has every state, the results too.
    assert client.get("/api/values/current").get_json() == {
        "6": "Nothing yet!",
        "5": "Nothing yet!",
        "30": "832040",
        "4": "3",
        "3": "2",
    }
    before = HEALED._value.get()  # type: ignore[attr-defined]
    assert healed_by(app) == (2, 2)
    assert HEALED._value.get() - before == 2  # type: ignore[attr-defined]
    assert sorted(queued_indexes(redis_client)) == [5, 6]
    report = redis_client.hgetall(contract.RECONCILE_REPORT)
    assert (report[b"pending"], report[b"healed"], report[b"healed_total"]) == (b"2", b"2", b"2")
    drain(redis_server.port)
    assert client.get("/api/values/current").get_json()["6"] == "8"
    assert healed_by(app) == (0, 0)


def test_a_partial_loss_heals_exactly_what_was_lost(
    app: Flask, client: FlaskClient, pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer
) -> None:
    for index in range(100, 120):
        client.post("/api/values", json={"index": index})
    jobs = jobs_of(pg_conn)
    for index in (101, 107, 113):
        redis_client.delete(Job.key_for(jobs[index]))  # a job's key lost
    for index in (102, 108):
        redis_client.lrem(QUEUE, 0, jobs[index])  # still "queued", but in no list the workers take from
    assert healed_by(app) == (20, 5)
    again = jobs_of(pg_conn)
    assert {index for index in jobs if again[index] != jobs[index]} == {101, 102, 107, 108, 113}
    assert healed_by(app) == (20, 0)  # healed once, not twice
    drain(redis_server.port)
    done = pg_conn.execute("SELECT count(*) FROM indexes WHERE status = 'done'").fetchone()
    assert done == (20,)
    assert client.get("/api/values/119").get_json()["value"] == str(gmpy2.fib(119))


def test_a_job_started_by_a_worker_that_is_gone_is_healed_and_one_alive_is_not(
    app: Flask, client: FlaskClient, pg_conn: psycopg.Connection, redis_client: Redis
) -> None:
    jobs = submitted(client, pg_conn, 21, 22)
    for index, worker in ((21, "gone"), (22, "alive")):
        redis_client.lrem(QUEUE, 0, jobs[index])
        redis_client.hset(Job.key_for(jobs[index]), mapping={"status": "started", "worker_name": worker})
    redis_client.set(contract.worker_alive_key("alive"), "1", ex=30)
    assert healed_by(app) == (2, 1)
    assert queued_indexes(redis_client) == [21]


def test_a_job_finished_a_moment_ago_is_left_to_its_recorder_and_one_long_ago_is_healed(
    app: Flask, client: FlaskClient, pg_conn: psycopg.Connection, redis_client: Redis
) -> None:
    """RQ forgets a finished job a second later; its worker may still be recording the results."""
    jobs = submitted(client, pg_conn, 24, 25)
    finished = FinishedJobRegistry(contract.QUEUE_NAME, connection=redis_client)
    for index, seconds_ago in ((24, 1), (25, reconcile.RECORDING_SECONDS + 5)):
        redis_client.lrem(QUEUE, 0, jobs[index])
        redis_client.delete(Job.key_for(jobs[index]))  # expired, as RQ's result_ttl has it
        redis_client.zadd(finished.key, {jobs[index]: time.time() - seconds_ago})
    assert healed_by(app) == (2, 1)
    assert queued_indexes(redis_client) == [25]


def test_a_job_a_worker_has_just_taken_is_live_and_one_in_no_list_is_not(
    app: Flask, client: FlaskClient, pg_conn: psycopg.Connection, redis_client: Redis
) -> None:
    """Between taking a job (into RQ's intermediate list) and starting it, RQ still calls it queued."""
    jobs = submitted(client, pg_conn, 26, 27)
    redis_client.lmove(QUEUE, f"{QUEUE}:intermediate", "LEFT", "RIGHT")  # 26, the first queued, taken
    redis_client.lrem(QUEUE, 0, jobs[27])  # 27's entry lost
    assert healed_by(app) == (2, 1)
    assert queued_indexes(redis_client) == [27]


def test_an_index_is_left_alone_while_it_is_new(app: Flask, client: FlaskClient, redis_client: Redis) -> None:
    client.post("/api/values", json={"index": 23})
    redis_client.flushall()  # its job lost at once
    assert healed_by(app, grace=10) == (0, 0)  # maybe still being queued: not yet
    assert healed_by(app) == (1, 1)


def test_only_one_process_makes_a_pass_at_a_time(app: Flask, pg_conn: psycopg.Connection) -> None:
    pg_conn.execute("SELECT pg_advisory_lock(%s)", (reconcile.LOCK_ID,))
    try:
        assert run_pass(app) is None
    finally:
        pg_conn.execute("SELECT pg_advisory_unlock(%s)", (reconcile.LOCK_ID,))
    assert run_pass(app) is not None


def test_a_result_or_a_new_job_recorded_meanwhile_wins_over_a_heal(
    app: Flask, client: FlaskClient, pg_conn: psycopg.Connection
) -> None:
    jobs = submitted(client, pg_conn, 24, 25)
    pg_conn.execute("UPDATE indexes SET status = 'done', digits = 5, head = '46368' WHERE number = 24")
    pg_conn.execute("UPDATE indexes SET job = 'fib-25-newer' WHERE number = 25")
    with app.extensions["fibstack.db"].connection() as conn:
        assert Database.requeue(conn, [(24, jobs[24]), (25, jobs[25])], "fib-24-heal") == []
    assert jobs_of(pg_conn)[25] == "fib-25-newer"


def test_healing_many_queues_batches_not_one_job_per_index(
    app: Flask, client: FlaskClient, redis_client: Redis, redis_server: RedisServer, pg_conn: psycopg.Connection
) -> None:
    # As a database an older fibstack made finds itself after the upgrade: all pending, no job.
    pg_conn.execute("INSERT INTO indexes (number) SELECT generate_series(0, 2499)")
    assert healed_by(app) == (2500, 2500)
    assert redis_client.llen(QUEUE) == 3  # 1,000 per batch at most
    drain(redis_server.port)
    statuses = pg_conn.execute("SELECT status, count(*) FROM indexes GROUP BY status").fetchall()
    assert statuses == [("done", 2500)]
    assert client.get("/api/values/2499/decimal").data == gmpy2.fib(2499).digits().encode()


def test_a_batch_is_bounded_by_its_work_too() -> None:
    big = reconcile.BATCH_MAX_WORK // 2 + 1
    assert list(reconcile.batches([1, 2, big, big, 3])) == [[1, 2, big], [big, 3]]
    assert [len(batch) for batch in reconcile.batches(range(2500))] == [1000, 1000, 500]


def test_keys_an_older_version_left_are_removed_once(app: Flask, redis_client: Redis) -> None:
    store = app.extensions["fibstack.store"]
    for index in range(2500):
        redis_client.hset(f"fib:v1:status:{index}", mapping={"status": "done"})
    redis_client.set("someone-elses", "1")
    assert reconcile.forget_old_keys(store) == 2500
    assert redis_client.keys("fib:v1:*") == []
    assert redis_client.get("someone-elses") == b"1"
    redis_client.set("fib:v1:status:1", "x")
    assert reconcile.forget_old_keys(store) == 0  # once per Redis: a flush would make it look again
