"""Run the fib queue to completion inside a test, with the real worker code."""

from __future__ import annotations

import os

from fibworker import jobs, recorder
from fibworker.config import Settings
from fibworker.database import Database
from fibworker.jobqueue import FibJob, fib_queue
from redis import Redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer


def drain(port: int) -> None:
    """Process every queued job now (RQ burst mode), and record every result, then return.

    Postgres is the one in the environment (conftest.py's services_env puts it
    there), as the worker reads it; Redis the one on `port`.
    """
    os.environ.setdefault("REDIS_HOST", "127.0.0.1")
    jobs._settings.cache_clear()
    jobs._database.cache_clear()
    settings = Settings.from_env(os.environ | {"REDIS_PORT": str(port)})
    connection = Redis(port=port)
    database = Database(settings.postgres)
    recording = recorder.Recorder(database, connection, settings.cache_max_bytes)
    recording.start()
    recorder.install(recording)
    try:
        worker = SimpleWorker(
            [fib_queue(connection)], connection=connection, job_class=FibJob, serializer=JSONSerializer
        )
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
    finally:
        recording.stop()
        recorder.install(None)
        database.close()
