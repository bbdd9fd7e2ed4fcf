"""A worker that dies or is stopped mid-job never loses the job."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
from fibworker import contract
from fibworker.jobqueue import fib_queue
from fibworker.liveness import requeue_orphans
from processes import start_worker, wait_until
from redis import Redis
from rq import SimpleWorker

from .test_jobs import cached, enqueue, row, submitted


def started_jobs(redis_client: Redis) -> list[int]:
    """The indexes of the jobs RQ records as started."""
    registry = fib_queue(redis_client).started_job_registry
    return [contract.index_of_job(job_id) for job_id in registry.get_job_ids(cleanup=False)]


def test_job_of_a_killed_worker_is_requeued_and_finished(
    redis_client: Redis, pg_conn: psycopg.Connection, services_env: dict[str, str], tmp_path: Path
) -> None:
    doomed = start_worker(services_env, tmp_path / "doomed.log", delay=60)
    try:
        submitted(pg_conn, redis_client, 1000)
        wait_until(lambda: started_jobs(redis_client) == [1000])
        doomed.send_signal(signal.SIGKILL)  # no chance to clean up
        doomed.wait()
    finally:
        doomed.kill()
    assert row(pg_conn, 1000)["status"] == "pending"  # not computed, and still "started" in RQ
    assert started_jobs(redis_client) == [1000]

    rescuer = start_worker(services_env, tmp_path / "rescuer.log")
    try:
        wait_until(lambda: row(pg_conn, 1000)["status"] == "done", timeout=30)
    finally:
        rescuer.terminate()
        rescuer.wait(timeout=20)
    assert str(row(pg_conn, 1000)["value"]).startswith("434665576869374564356885276750")
    assert started_jobs(redis_client) == []


def test_a_job_just_taken_by_a_live_worker_is_not_run_twice(redis_client: Redis) -> None:
    """RQ names the worker on the job a moment after it enters the started registry: not an orphan meanwhile."""
    queue = fib_queue(redis_client)
    job_id = enqueue(redis_client, 500)
    taker = SimpleWorker([queue], connection=redis_client, name="taker")
    job = queue.fetch_job(job_id)
    assert job is not None
    redis_client.lrem(queue.key, 0, job_id)  # dequeued, as the worker's BLMOVE does
    taker.prepare_execution(job)  # the registry's entry, the job not yet started
    redis_client.set(contract.worker_alive_key("taker"), "1", ex=30)
    assert requeue_orphans(queue) == []
    assert redis_client.llen(queue.key) == 0
    redis_client.delete(contract.worker_alive_key("taker"))  # and once the taker is gone, it is one
    assert requeue_orphans(queue) == [job_id]
    assert redis_client.lrange(queue.key, 0, -1) == [job_id.encode()]


def test_sigterm_finishes_the_current_job_then_exits(
    redis_client: Redis, pg_conn: psycopg.Connection, services_env: dict[str, str], tmp_path: Path
) -> None:
    worker = start_worker(services_env, tmp_path / "worker.log", delay=2)
    try:
        submitted(pg_conn, redis_client, 77)
        submitted(pg_conn, redis_client, 78)
        wait_until(lambda: started_jobs(redis_client) == [77])
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    # Recorded, cached and announced before the worker exits.
    assert row(pg_conn, 77)["value"] == "5527939700884757"
    assert cached(redis_client, 77)["value"] == "5527939700884757"
    # The next job was not started, so it is still waiting in the queue.
    assert row(pg_conn, 78)["status"] == "pending"
    queued = fib_queue(redis_client).job_ids
    assert [contract.index_of_job(job_id) for job_id in queued] == [78]


def test_worker_waits_for_redis_instead_of_crashing(
    tmp_path: Path, pg_conn: psycopg.Connection, services_env: dict[str, str]
) -> None:
    from stack.servers import RedisServer

    later = RedisServer(tmp_path)
    worker = start_worker(services_env | later.env(), tmp_path / "worker.log")
    try:
        wait_until(lambda: b"waiting for Redis" in (tmp_path / "worker.log").read_bytes())
        assert worker.poll() is None
        later.start()
        client = Redis(port=later.port)
        submitted(pg_conn, client, 12)
        wait_until(lambda: row(pg_conn, 12)["value"] == "144")
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        later.stop()


def test_bad_configuration_stops_with_a_clear_message(tmp_path: Path) -> None:
    worker = start_worker({"REDIS_HOST": "", "REDIS_PORT": "x"}, tmp_path / "worker.log")
    assert worker.wait(timeout=20) == 2
    output = (tmp_path / "worker.log").read_text()
    assert "REDIS_HOST is required" in output
    assert "REDIS_PORT must be a whole number" in output
    assert "Traceback" not in output


def test_worker_waits_for_a_migrated_postgres_instead_of_crashing(
    tmp_path: Path, redis_client: Redis, pg_conn: psycopg.Connection, services_env: dict[str, str]
) -> None:
    pg_conn.execute("DELETE FROM schema_migrations WHERE version = %s", (contract.SCHEMA_VERSION,))
    worker = start_worker(services_env, tmp_path / "worker.log")
    try:
        wait_until(lambda: b"waiting for Postgres" in (tmp_path / "worker.log").read_bytes())
        assert b"this worker needs" in (tmp_path / "worker.log").read_bytes()
        submitted(pg_conn, redis_client, 13)
        assert row(pg_conn, 13)["status"] == "pending"  # no job is taken meanwhile
        pg_conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, 'back')", (contract.SCHEMA_VERSION,))
        wait_until(lambda: row(pg_conn, 13)["value"] == "233", timeout=30)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
