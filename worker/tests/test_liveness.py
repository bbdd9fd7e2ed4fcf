"""A worker that dies or is stopped mid-job never loses the job."""

from __future__ import annotations

import signal
from pathlib import Path

from fibworker import contract
from fibworker.jobqueue import fib_queue
from processes import start_worker, wait_until
from redis import Redis

from .test_jobs import enqueue, status


def started_jobs(redis_client: Redis) -> list[int]:
    """The indexes of the jobs RQ records as started."""
    registry = fib_queue(redis_client).started_job_registry
    return [contract.index_of_job(job_id) for job_id in registry.get_job_ids(cleanup=False)]


def test_job_of_a_killed_worker_is_requeued_and_finished(
    redis_client: Redis, services_env: dict[str, str], tmp_path: Path
) -> None:
    doomed = start_worker(services_env, tmp_path / "doomed.log", delay=60)
    try:
        enqueue(redis_client, 1000)
        wait_until(lambda: started_jobs(redis_client) == [1000])
        doomed.send_signal(signal.SIGKILL)  # no chance to clean up
        doomed.wait()
    finally:
        doomed.kill()
    assert status(redis_client, 1000) == {}  # not computed, and still "started" in RQ
    assert started_jobs(redis_client) == [1000]

    rescuer = start_worker(services_env, tmp_path / "rescuer.log")
    try:
        wait_until(lambda: status(redis_client, 1000).get("status") == "done", timeout=30)
    finally:
        rescuer.terminate()
        rescuer.wait(timeout=20)
    assert redis_client.get(contract.decimal_key(1000)).startswith(b"434665576869374564356885276750")
    assert started_jobs(redis_client) == []


def test_sigterm_finishes_the_current_job_then_exits(
    redis_client: Redis, services_env: dict[str, str], tmp_path: Path
) -> None:
    worker = start_worker(services_env, tmp_path / "worker.log", delay=2)
    try:
        enqueue(redis_client, 77)
        enqueue(redis_client, 78)
        wait_until(lambda: started_jobs(redis_client) == [77])
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    assert status(redis_client, 77)["value"] == "5527939700884757"
    # The next job was not started, so it is still waiting in the queue.
    assert status(redis_client, 78) == {}
    queued = fib_queue(redis_client).job_ids
    assert [contract.index_of_job(job_id) for job_id in queued] == [78]


def test_worker_waits_for_redis_instead_of_crashing(tmp_path: Path, services_env: dict[str, str]) -> None:
    from stack.servers import RedisServer

    later = RedisServer(tmp_path)
    worker = start_worker(services_env | later.env(), tmp_path / "worker.log")
    try:
        wait_until(lambda: b"waiting for Redis" in (tmp_path / "worker.log").read_bytes())
        assert worker.poll() is None
        later.start()
        client = Redis(port=later.port)
        enqueue(client, 12)
        wait_until(lambda: status(client, 12).get("value") == "144")
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
