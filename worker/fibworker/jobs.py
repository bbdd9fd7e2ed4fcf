"""The RQ job functions. The API enqueues them by the dotted paths in contract.py."""

from __future__ import annotations

import logging
import time
from functools import cache
from typing import Any

from rq import get_current_job
from rq.job import Job

from . import fib, results
from .config import Settings

log = logging.getLogger(__name__)


@cache
def _settings() -> Settings:
    return Settings.from_env()


def compute_fibonacci(index: int) -> None:
    """Compute F(index), store its decimal form and announce it."""
    job = get_current_job()
    assert job is not None, "compute_fibonacci runs inside an RQ worker"
    started = time.perf_counter()
    decimal = fib.to_decimal(fib.fibonacci(index))
    compute_ms = (time.perf_counter() - started) * 1000
    # The result is stored here rather than as the RQ job result: RQ results are
    # pickled per job and expire with the job, and the API must read them by index.
    dropped = results.store_done(job.connection, index, decimal, compute_ms, _settings().values_max_bytes)
    if dropped:
        log.info(
            "values dropped to stay within VALUES_MAX_BYTES", extra={"indexes": dropped[:20], "count": len(dropped)}
        )
    log.info("computed", extra={"index": index, "digits": len(decimal), "compute_ms": round(compute_ms, 3)})


def record_failure(job: Job, connection: Any, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ failure callback: make the failure visible to users instead of pending forever."""
    (index,) = job.args
    error = f"{exc_type.__name__}: {exc_value}".strip().rstrip(":")
    results.store_failed(connection, index, error)
    log.error("job failed", extra={"index": index, "error": error})
