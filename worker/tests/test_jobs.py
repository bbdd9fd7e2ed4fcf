"""The job functions, run by a real RQ worker against a real Redis and Postgres.

Each index is recorded pending in Postgres first, as the API records it
(server/fibapi/db.py); the worker records the result there, then caches and
announces it.
"""

from __future__ import annotations

import json
import time

import gmpy2
import psycopg
import pytest
from fibworker import contract, jobs, recorder
from fibworker.database import Database
from fibworker.jobqueue import fib_queue
from fibworker.results import Computed, Result
from processes import wait_until
from queue_runner import drain
from redis import Redis
from rq import Callback

from stack.servers import PostgresServer, RedisServer


def record_pending(pg_conn: psycopg.Connection, index: int, job_id: str) -> None:
    """The row the API's submission makes for a new index (Database.record_submissions)."""
    pg_conn.execute("INSERT INTO indexes (number, job) VALUES (%s, %s)", (index, job_id))


def enqueue(redis_client: Redis, index: int, job_id: str = "", batch: list[int] | None = None) -> str:
    """What the API queues (fibapi/queueing.py), minus its pending event; the job's id.

    With `batch`: a batch job for those indexes (`index` names it).
    """
    job_id = job_id or contract.new_job_id(index)
    fib_queue(redis_client).enqueue_call(
        contract.BATCH_JOB_FUNCTION if batch else contract.JOB_FUNCTION,
        args=(batch or index,),
        job_id=job_id,
        result_ttl=0,
        on_failure=Callback(contract.JOB_FAILURE_CALLBACK),
    )
    return job_id


def submitted(pg_conn: psycopg.Connection, redis_client: Redis, index: int) -> str:
    job_id = contract.new_job_id(index)
    record_pending(pg_conn, index, job_id)
    return enqueue(redis_client, index, job_id)


def row(pg_conn: psycopg.Connection, index: int) -> dict[str, object]:
    cursor = pg_conn.execute("SELECT * FROM indexes WHERE number = %s", (index,))
    names = [column.name for column in cursor.description or []]
    found = cursor.fetchone()
    assert found is not None
    return dict(zip(names, found, strict=True))


def cached(redis_client: Redis, index: int) -> dict[str, str]:
    raw = redis_client.hgetall(contract.status_key(index))
    return {key.decode(): value.decode() for key, value in raw.items()}


def test_a_result_is_recorded_in_postgres_then_cached_and_announced(
    pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer
) -> None:
    job_id = submitted(pg_conn, redis_client, 300)
    drain(redis_server.port)
    expected = gmpy2.fib(300).digits()
    recorded = row(pg_conn, 300)
    assert (recorded["status"], recorded["digits"], recorded["value"]) == ("done", len(expected), expected)
    assert (recorded["head"], recorded["tail"]) == (expected[:20], expected[-20:])
    assert recorded["computed_at"] is not None
    fields = cached(redis_client, 300)
    assert fields["status"] == "done"
    assert fields["value"] == expected
    assert not redis_client.exists(contract.decimal_key(300))  # short: its status carries it
    ((_, event),) = redis_client.xrange(contract.EVENTS_STREAM)
    assert json.loads(event[b"data"]) == contract.public_status(300, fields)
    assert event[b"job"] == job_id.encode()
    # The cache counts what its keys take, plus what recording each takes.
    size = redis_client.memory_usage(contract.status_key(300)) + contract.CACHE_ENTRY_OVERHEAD_BYTES
    assert int(redis_client.get(contract.CACHE_BYTES)) == size
    assert redis_client.ttl(contract.status_key(300)) == -1  # the cache's budget drops it, not an expiry
    assert not redis_client.exists(f"rq:job:{job_id}")


def test_a_long_value_is_cached_apart_and_not_in_postgres(
    pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer
) -> None:
    submitted(pg_conn, redis_client, 10_000)
    drain(redis_server.port)
    recorded = row(pg_conn, 10_000)
    assert (recorded["status"], recorded["digits"], recorded["value"]) == ("done", 2090, None)
    assert redis_client.get(contract.decimal_key(10_000)) == gmpy2.fib(10_000).digits().encode()
    assert cached(redis_client, 10_000)["value"] == ""
    event = json.loads(redis_client.xrange(contract.EVENTS_STREAM)[-1][1][b"data"])
    assert event["value"] is None
    assert len(json.dumps(event)) < 400


def test_failure_is_recorded_and_announced(
    pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(n: int) -> None:
        raise MemoryError("out of memory")

    monkeypatch.setattr(jobs.fib, "fibonacci", broken)
    submitted(pg_conn, redis_client, 5)
    drain(redis_server.port)
    assert (row(pg_conn, 5)["status"], row(pg_conn, 5)["error"]) == ("failed", "MemoryError: out of memory")
    assert cached(redis_client, 5)["error"] == "MemoryError: out of memory"
    event = json.loads(redis_client.xrange(contract.EVENTS_STREAM)[-1][1][b"data"])
    assert (event["status"], event["error"]) == ("failed", "MemoryError: out of memory")


def test_a_failed_job_another_job_took_over_leaves_the_index_alone(
    pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs.fib, "fibonacci", lambda n: 1 // 0)
    record_pending(pg_conn, 6, "fib-6-the-new-one")  # the reconcile pass queued it again meanwhile
    enqueue(redis_client, 6)
    drain(redis_server.port)
    assert row(pg_conn, 6)["status"] == "pending"
    assert not redis_client.exists(contract.status_key(6))
    assert redis_client.xlen(contract.EVENTS_STREAM) == 0


def enqueue_batch(pg_conn: psycopg.Connection, redis_client: Redis, indexes: list[int]) -> str:
    """What the API does for a batch: each recorded pending for one job, then the job."""
    job_id = contract.new_job_id(indexes[0])
    for index in indexes:
        record_pending(pg_conn, index, job_id)
    return enqueue(redis_client, indexes[0], job_id, batch=indexes)


def test_batch_computes_what_is_still_its_own(
    pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer
) -> None:
    enqueue_batch(pg_conn, redis_client, [10, 11, 12])
    # 11 was given a job of its own meanwhile: the batch leaves it alone.
    pg_conn.execute("UPDATE indexes SET job = 'fib-11-another' WHERE number = 11")
    drain(redis_server.port)
    assert row(pg_conn, 10)["value"] == "55"
    assert row(pg_conn, 12)["value"] == "144"
    assert row(pg_conn, 11)["status"] == "pending"
    assert redis_client.xlen(contract.EVENTS_STREAM) == 2


def test_a_failed_batch_fails_its_unfinished_indexes(
    pg_conn: psycopg.Connection, redis_client: Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_batch(pg_conn, redis_client, [20, 21])
    monkeypatch.setattr(jobs.fib, "fibonacci", lambda n: 1 // 0)
    drain(redis_server.port)
    assert [row(pg_conn, index)["status"] for index in (20, 21)] == ["failed", "failed"]
    assert "ZeroDivisionError" in str(row(pg_conn, 21)["error"])


def results_of(indexes: range) -> list[Result]:
    return [Result(f"fib-{i}-test", Computed(i, str(gmpy2.fib(i)), 0.1, time.time())) for i in indexes]


def test_results_handed_in_while_one_group_is_written_share_the_next(
    pg_conn: psycopg.Connection, postgres: PostgresServer, redis_client: Redis
) -> None:
    for index in range(100):
        record_pending(pg_conn, index, f"fib-{index}-test")
    groups_before = recorded_groups()
    recording = recorder.Recorder(Database(postgres_settings(postgres)), redis_client, 0)
    recording.start()
    # Hold the first write at Postgres (a lock on the rows), hand in the rest meanwhile.
    with pg_conn.transaction():
        pg_conn.execute("SELECT * FROM indexes WHERE number = 0 FOR UPDATE")
        recording.record(results_of(range(1)))
        wait_until(lambda: waiting_on_a_lock(pg_conn) == 1)  # the recorder's UPDATE, held
        for index in range(1, 100):
            recording.record(results_of(range(index, index + 1)))
        time.sleep(0.2)
    assert recording.flush(timeout=10)
    recording.stop()
    assert redis_client.xlen(contract.EVENTS_STREAM) == 100  # one event per result
    done = pg_conn.execute("SELECT count(*) FROM indexes WHERE status = 'done'").fetchone()
    assert done == (100,)
    # The first alone (or with the few handed in before it was taken), then the rest as one.
    assert 2 <= recorded_groups() - groups_before <= 3


def waiting_on_a_lock(pg_conn: psycopg.Connection) -> int:
    with psycopg.connect(pg_conn.info.dsn, password=pg_conn.info.password, autocommit=True) as other:
        row = other.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'fibstack-worker' AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def recorded_groups() -> float:
    from fibworker.metrics import RECORDED_GROUPS

    (count,) = (s.value for s in RECORDED_GROUPS.collect()[0].samples if s.name.endswith("_count"))
    return count


def test_nothing_is_announced_before_postgres_has_it(
    pg_conn: psycopg.Connection, postgres: PostgresServer, redis_client: Redis
) -> None:
    record_pending(pg_conn, 7, "fib-7-test")
    recording = recorder.Recorder(Database(postgres_settings(postgres)), redis_client, 0)
    recording.start()
    with pg_conn.transaction():
        pg_conn.execute("LOCK TABLE indexes IN EXCLUSIVE MODE")  # Postgres cannot take the write yet
        recording.record(results_of(range(7, 8)))
        time.sleep(0.5)
        assert redis_client.xlen(contract.EVENTS_STREAM) == 0
        assert not redis_client.exists(contract.status_key(7))
    assert recording.flush(timeout=10)
    recording.stop()
    assert redis_client.xlen(contract.EVENTS_STREAM) == 1
    assert row(pg_conn, 7)["status"] == "done"


def test_the_recorder_keeps_trying_while_postgres_is_down(
    pg_conn: psycopg.Connection, postgres: PostgresServer, redis_client: Redis
) -> None:
    record_pending(pg_conn, 8, "fib-8-test")
    database = Database(postgres_settings(postgres))
    database.check_schema()  # connected before the outage
    recording = recorder.Recorder(database, redis_client, 0)
    recording.start()
    postgres.stop()
    try:
        recording.record(results_of(range(8, 9)))
        time.sleep(1.0)
        assert redis_client.xlen(contract.EVENTS_STREAM) == 0
    finally:
        postgres.start()
    assert recording.flush(timeout=30)
    recording.stop()
    with psycopg.connect(**postgres_settings(postgres).connect_kwargs(), autocommit=True) as conn:
        assert conn.execute("SELECT status FROM indexes WHERE number = 8").fetchone() == ("done",)
    assert redis_client.xlen(contract.EVENTS_STREAM) == 1


def postgres_settings(postgres: PostgresServer):  # type: ignore[no-untyped-def]
    from fibworker.pgconf import postgres_settings as read

    problems: list[str] = []
    settings = read(postgres.env(), problems)
    assert not problems
    return settings
