"""The RQ job functions. The API enqueues them by the dotted paths in contract.py.

A job computes; the recorder (recorder.py) records each result in Postgres,
then caches and announces it in Redis.
"""

from __future__ import annotations

import logging
import time
from functools import cache
from typing import Any

import psycopg
from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job

from . import contract, fib, metrics, recorder, results, tracing
from .config import Settings
from .database import Database

log = logging.getLogger(__name__)


@cache
def _settings() -> Settings:
    return Settings.from_env()


@cache
def _database() -> Database:
    """The jobs' own connection (a batch's question, a failure's record): never the recorder's,
    which may be waiting on Postgres while the jobs go on."""
    return Database(_settings().postgres)


def _recorder(connection: Redis) -> recorder.Recorder:
    """This process's recorder; in a worker started some other way (RQ's own), one writing at once."""
    found = recorder.current()
    if found is None:
        settings = _settings()
        found = recorder.install(recorder.Recorder(Database(settings.postgres), connection, settings.cache_max_bytes))
        assert found is not None
    return found


def _compute(index: int) -> results.Computed:
    """F(index) in decimal, how long it took (counted in the metrics) and when it began."""
    began, started = time.time(), time.perf_counter()
    decimal = fib.to_decimal(fib.fibonacci(index))
    seconds = time.perf_counter() - started
    metrics.computed(seconds, len(decimal))
    return results.Computed(index, decimal, seconds * 1000, began)


def compute_fibonacci(index: int) -> None:
    """Compute F(index) and hand it to the recorder."""
    job = get_current_job()
    assert job is not None, "compute_fibonacci runs inside an RQ worker"
    with tracing.job_span("fibstack.compute", job.meta, **{"fibstack.index": index}):
        computed = _compute(index)
        # Not RQ's job result: RQ's results are per job and expire with it; the
        # API reads results by index, from Postgres and the cache.
        _recorder(job.connection).record([results.Result(job.id, computed)])
    digits, compute_ms = len(computed.decimal), round(computed.compute_ms, 3)
    log.info("computed", extra={"index": index, "digits": digits, "compute_ms": compute_ms})


# A batch hands its results to the recorder this many at a time, or sooner
# once they add up to BATCH_STORE_BYTES of digits.
BATCH_STORE_COUNT = 200
BATCH_STORE_BYTES = 8 * 1024 * 1024


def compute_batch(indexes: list[int]) -> None:
    """Compute each of `indexes` still pending for this job in Postgres (queued by queueing.py or reconcile.py)."""
    job = get_current_job()
    assert job is not None, "compute_batch runs inside an RQ worker"
    recording = _recorder(job.connection)
    mine = _database().pending_for(indexes, job.id)
    computed: list[results.Result] = []
    size = 0
    for index in mine:
        computed.append(results.Result(job.id, _compute(index)))
        size += len(computed[-1].computed.decimal)
        if len(computed) >= BATCH_STORE_COUNT or size >= BATCH_STORE_BYTES:
            recording.record(computed)
            computed, size = [], 0
    if computed:
        recording.record(computed)
    log.info("computed a batch", extra={"indexes": len(indexes), "computed": len(mine), "first": indexes[:1]})


def record_failure(job: Job, connection: Any, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ failure callback: make the failure visible to users instead of pending forever.

    Postgres first, for those of the job's indexes still pending for it;
    then the cache and the events. If Postgres cannot be reached, nothing is
    said: the indexes stay pending, and the reconcile pass queues them again.
    """
    if job.func_name not in contract.JOB_FUNCTIONS:
        return  # a refused job (jobqueue.py): its arguments are not ours to act on
    (arg,) = job.args
    indexes = arg if isinstance(arg, list) else [arg]
    error = f"{exc_type.__name__}: {exc_value}".strip().rstrip(":")[:500]
    started = job.started_at.timestamp() if job.started_at else time.time()
    recording = _recorder(connection)
    try:
        failed = _database().record_failed(indexes, error, job.id)
    except psycopg.Error as exc:
        log.error("job failed, and Postgres too", extra={"indexes": indexes[:20], "error": error, "db": str(exc)})
        return
    try:
        results.cache_and_announce_failed(connection, failed, error, job.id, started, recording.cache_max_bytes)
    except RedisError as exc:
        log.warning("failure recorded; Redis failed after", extra={"error": str(exc)})
    metrics.JOBS.labels("failed").inc(len(failed))
    log.error("job failed", extra={"indexes": failed[:20], "count": len(failed), "error": error})
