"""The RQ job functions. The API enqueues them by the dotted paths in contract.py."""

from __future__ import annotations

import logging
import time
from functools import cache
from typing import Any

from rq import get_current_job
from rq.job import Job

from . import contract, fib, metrics, results, tracing
from .config import Settings

log = logging.getLogger(__name__)


@cache
def _settings() -> Settings:
    return Settings.from_env()


def _compute(index: int) -> results.Computed:
    """F(index) in decimal, how long it took (counted in the metrics) and when it began."""
    began, started = time.time(), time.perf_counter()
    decimal = fib.to_decimal(fib.fibonacci(index))
    seconds = time.perf_counter() - started
    metrics.computed(seconds, len(decimal))
    return results.Computed(index, decimal, seconds * 1000, began)


def compute_fibonacci(index: int) -> None:
    """Compute F(index), store its decimal form and announce it."""
    job = get_current_job()
    assert job is not None, "compute_fibonacci runs inside an RQ worker"
    with tracing.job_span("fibstack.compute", job.meta, **{"fibstack.index": index}):
        computed = _compute(index)
        # The result is stored here rather than as the RQ job result: RQ results are
        # pickled per job and expire with the job, and the API must read them by index.
        dropped = results.store_done(job.connection, job.id, computed, _settings().values_max_bytes)
    if dropped:
        log.info(
            "values dropped to stay within VALUES_MAX_BYTES", extra={"indexes": dropped[:20], "count": len(dropped)}
        )
    digits, compute_ms = len(computed.decimal), round(computed.compute_ms, 3)
    log.info("computed", extra={"index": index, "digits": digits, "compute_ms": compute_ms})


# A batch stores its results this many at a time (one round trip each time),
# or sooner once they add up to BATCH_STORE_BYTES of digits.
BATCH_STORE_COUNT = 200
BATCH_STORE_BYTES = 8 * 1024 * 1024


def compute_batch(indexes: list[int]) -> None:
    """Compute each of `indexes` still pending for this job (recovery: the API's reconcile queues these)."""
    job = get_current_job()
    assert job is not None, "compute_batch runs inside an RQ worker"
    mine = results.pending_for(job.connection, indexes, job.id)
    computed: list[results.Computed] = []
    size = 0
    for index in mine:
        computed.append(_compute(index))
        size += len(computed[-1].decimal)
        if len(computed) >= BATCH_STORE_COUNT or size >= BATCH_STORE_BYTES:
            results.store_many_done(job.connection, job.id, computed, _settings().values_max_bytes)
            computed, size = [], 0
    if computed:
        results.store_many_done(job.connection, job.id, computed, _settings().values_max_bytes)
    log.info("computed a batch", extra={"indexes": len(indexes), "computed": len(mine), "first": indexes[:1]})


def record_failure(job: Job, connection: Any, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ failure callback: make the failure visible to users instead of pending forever."""
    if job.func_name not in contract.JOB_FUNCTIONS:
        return  # a refused job (jobqueue.py): its arguments are not ours to act on
    (arg,) = job.args
    # A batch: those of its indexes not computed yet failed with it.
    indexes = results.pending_for(connection, arg, job.id) if isinstance(arg, list) else [arg]
    error = f"{exc_type.__name__}: {exc_value}".strip().rstrip(":")
    started = job.started_at.timestamp() if job.started_at else time.time()
    for index in indexes:
        results.store_failed(connection, index, error, job.id, started)
    metrics.JOBS.labels("failed").inc(len(indexes))
    log.error("job failed", extra={"indexes": indexes[:20], "count": len(indexes), "error": error})
