"""Run the fib queue to completion inside a test, with the real worker code."""

from __future__ import annotations

import os

from fibworker import contract, jobs
from redis import Redis
from rq import Queue, SimpleWorker


def drain(port: int) -> None:
    """Process every queued job now (RQ burst mode), then return."""
    os.environ.setdefault("REDIS_HOST", "127.0.0.1")
    jobs._settings.cache_clear()
    connection = Redis(port=port)
    queue = Queue(contract.QUEUE_NAME, connection=connection)
    SimpleWorker([queue], connection=connection).work(burst=True, with_scheduler=False, logging_level="WARNING")
