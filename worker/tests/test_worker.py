"""The worker class (fibworker.__main__.FibWorker): RQ's bookkeeping once a second, not several times a job."""

from __future__ import annotations

from pathlib import Path

import pytest
from fibworker import contract, jobs
from fibworker.__main__ import FibWorker
from fibworker.jobqueue import FibJob, fib_queue
from redis import Redis
from redis.connection import AbstractConnection
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

JOBS = 60


@pytest.fixture(autouse=True)
def worker_settings(monkeypatch: pytest.MonkeyPatch, redis_client: Redis) -> None:
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    jobs._settings.cache_clear()


def queue_small_jobs(redis: Redis, first: int) -> None:
    queue = fib_queue(redis)
    for index in range(first, first + JOBS):
        queue.enqueue_call(contract.JOB_FUNCTION, args=(index,), job_id=contract.new_job_id(index), result_ttl=1)


def round_trips_for_jobs(redis: Redis, worker: SimpleWorker, first: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Round trips to Redis (each send of a command or a pipeline) to run JOBS small jobs (burst)."""
    queue_small_jobs(redis, first)
    sent = [0]
    send = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        sent[0] += 1
        send(self, command, check_health)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(AbstractConnection, "send_packed_command", counting)
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    done = [redis.hget(contract.status_key(index), "status") for index in range(first, first + JOBS)]
    assert done == [b"done"] * JOBS
    return sent[0]


def test_the_worker_makes_far_fewer_round_trips_per_job_than_rqs_own(
    redis_client: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = fib_queue(redis_client)
    ours = FibWorker([queue], connection=redis_client, heartbeat_file=tmp_path / "beat")
    rqs = SimpleWorker([queue], connection=redis_client, job_class=FibJob, serializer=JSONSerializer)
    theirs = round_trips_for_jobs(redis_client, rqs, 1000, monkeypatch)
    mine = round_trips_for_jobs(redis_client, ours, 2000, monkeypatch)
    # Per job, RQ sends 3 heartbeats of 2 round trips, 1 suspension check and 1
    # repeated state: 8 that are now sent about once a second. (The count
    # itself is higher in a process that ran other tests before: compare the two.)
    assert (theirs - mine) / JOBS >= 7, f"{mine / JOBS:.1f} round trips per job against RQ's {theirs / JOBS:.1f}"
    assert (tmp_path / "beat").exists()  # the probe's file is still touched


def test_rq_suspend_still_stops_the_worker_before_its_next_job(redis_client: Redis, tmp_path: Path) -> None:
    queue_small_jobs(redis_client, 3000)
    suspend(redis_client)
    try:
        worker = FibWorker([fib_queue(redis_client)], connection=redis_client, heartbeat_file=tmp_path / "beat")
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")  # burst: suspended means exit
        assert redis_client.llen(fib_queue(redis_client).key) == JOBS  # none run
    finally:
        resume(redis_client)
