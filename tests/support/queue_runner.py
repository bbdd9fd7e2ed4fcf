"""Run the fib queue to completion inside a test, with the real worker code."""

from __future__ import annotations

import os

from fibworker import jobs
from fibworker.jobqueue import FibJob, fib_queue
from redis import Redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer


def drain(port: int) -> None:
    """Process every queued job now (RQ burst mode), then return."""
    os.environ.setdefault("REDIS_HOST", "127.0.0.1")
    jobs._settings.cache_clear()
    connection = Redis(port=port)
    worker = SimpleWorker([fib_queue(connection)], connection=connection, job_class=FibJob, serializer=JSONSerializer)
    worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
