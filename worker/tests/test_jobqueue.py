"""A job put in Redis by anyone but the API runs nothing: the real worker process against a real Redis."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fibworker import contract
from fibworker.jobqueue import fib_queue
from processes import start_worker, wait_until
from redis import Redis
from rq import Callback, Queue
from rq.registry import FailedJobRegistry

from .test_jobs import cached, submitted


@pytest.fixture
def worker(services_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "worker.log"
    process = start_worker(services_env, log)
    yield log
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def failed_ids(redis_client: Redis) -> list[str]:
    return FailedJobRegistry(contract.QUEUE_NAME, connection=redis_client).get_job_ids()


def injected(redis_client: Redis, proof: Path, **kwargs: object) -> str:
    """What an intruder who can write to Redis enqueues: os.system, creating `proof` if it runs."""
    queue = kwargs.pop("queue", None) or fib_queue(redis_client)
    assert isinstance(queue, Queue)
    job = queue.enqueue_call("os.system", args=(f"touch {proof}",), **kwargs)  # type: ignore[arg-type]
    return str(job.id)


def the_worker_goes_on(redis_client: Redis, pg_conn: psycopg.Connection) -> None:
    """A real job queued after the intruder's is computed: the worker did not stop."""
    submitted(pg_conn, redis_client, 30)
    wait_until(lambda: cached(redis_client, 30).get("status") == "done", timeout=30)


def test_a_json_job_naming_another_function_is_refused(
    redis_client: Redis, pg_conn: psycopg.Connection, worker: Path, tmp_path: Path
) -> None:
    proof = tmp_path / "ran"
    job_id = injected(redis_client, proof)
    wait_until(lambda: job_id in failed_ids(redis_client), timeout=30)
    the_worker_goes_on(redis_client, pg_conn)
    assert not proof.exists()
    assert "refused to run the job function 'os.system'" in worker.read_text()


def test_a_pickled_job_is_never_unpickled(
    redis_client: Redis, pg_conn: psycopg.Connection, worker: Path, tmp_path: Path
) -> None:
    # RQ's default serializer, pickle: loading it could itself run code.
    proof = tmp_path / "ran"
    job_id = injected(redis_client, proof, queue=Queue(contract.QUEUE_NAME, connection=redis_client))
    wait_until(lambda: job_id in failed_ids(redis_client), timeout=30)
    the_worker_goes_on(redis_client, pg_conn)
    assert not proof.exists()


def test_a_callback_naming_another_function_is_refused(
    redis_client: Redis, pg_conn: psycopg.Connection, worker: Path, tmp_path: Path
) -> None:
    # A real job function, failing on purpose (a bad argument), with an intruder's failure callback:
    # print, which would write the arguments RQ passes it (the job, the connection...) to the log.
    job = fib_queue(redis_client).enqueue_call(
        contract.JOB_FUNCTION, args=("not an index",), on_failure=Callback("builtins.print")
    )
    wait_until(lambda: job.id in failed_ids(redis_client), timeout=30)
    the_worker_goes_on(redis_client, pg_conn)
    log = worker.read_text()
    assert "refused to run the failure callback 'builtins.print'" in log
    assert "Redis<ConnectionPool" not in log
