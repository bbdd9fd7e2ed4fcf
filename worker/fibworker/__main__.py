"""Run the worker: `python -m fibworker` (`--burst`: exit once the queue is empty).

Uses RQ's SimpleWorker (no fork per job): jobs here are short and CPU-bound, so
forking a work horse for each costs more than the work itself; `make bench`
measures both. A worker that dies mid-job is covered by liveness.py instead
of by process isolation.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from . import heartbeat, logs, metrics, recorder, tracing
from .config import ConfigError, Settings
from .database import Database, wait_until_ready
from .jobqueue import FibJob, fib_queue
from .liveness import Liveness, requeue_orphans

log = logging.getLogger("fibworker")


# RQ's loop sends its heartbeat (HSET, then EXPIRE: two round trips) three
# times per job, asks whether `rq suspend` was run (GET) once per job, and
# writes the worker's state "idle" twice between two jobs: 9 of a small
# job's 19 round trips. What they tell is about time, not about jobs: at
# most once per BOOKKEEPING_SECONDS each is plenty for the 20 s the worker's
# key lives (heartbeat.RQ_WORKER_TTL) and for `rq suspend` to take effect.
BOOKKEEPING_SECONDS = 1.0


class FibWorker(SimpleWorker):
    """RQ's SimpleWorker, reading JSON jobs that may run only fibstack's own functions (jobqueue.py),
    touching a file each time its loop turns (heartbeat.py), and sending RQ's own bookkeeping
    once a second rather than several times per job."""

    def __init__(self, *args: Any, heartbeat_file: Path, **kwargs: Any) -> None:
        self.heartbeat_file = heartbeat_file
        self._beat_at = self._suspension_checked_at = -BOOKKEEPING_SECONDS
        super().__init__(*args, **kwargs | {"job_class": FibJob, "serializer": JSONSerializer})

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        # First: the loop turning is what the probe asks about, even while
        # the Redis half of the heartbeat fails.
        heartbeat.touch(self.heartbeat_file)
        now = time.monotonic()
        # One given a timeout or a pipeline is RQ's own for a job (how long it
        # may run): always sent.
        if timeout is None and pipeline is None and now - self._beat_at < BOOKKEEPING_SECONDS:
            return
        super().heartbeat(timeout, pipeline)
        self._beat_at = now

    def check_for_suspension(self, burst: bool) -> None:
        now = time.monotonic()
        if now - self._suspension_checked_at < BOOKKEEPING_SECONDS:
            return
        super().check_for_suspension(burst)
        self._suspension_checked_at = now

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == self._state:
            return  # written already: "idle" after a job, then again before the next dequeue
        super().set_state(state, pipeline)


def wait_for_redis(connection: Redis, heartbeat_file: Path, where: str) -> None:
    delay = 0.5
    while True:
        heartbeat.touch(heartbeat_file)  # waiting is not being stuck
        try:
            connection.ping()
            return
        except RedisError as exc:
            log.warning("waiting for Redis", extra={"redis": where, "error": str(exc), "retry_in_s": delay})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fibworker", description="The fibstack worker (RQ).")
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty (benchmarks, one-off runs)")
    burst = parser.parse_args(argv).burst
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"fibworker: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    tracing.init()
    heartbeat_file = Path(settings.heartbeat_file)
    connection = Redis(**settings.redis.client_kwargs(), socket_connect_timeout=5)
    wait_for_redis(connection, heartbeat_file, settings.redis.describe())
    database = Database(settings.postgres)

    def waiting_for_postgres(why: str) -> None:
        heartbeat.touch(heartbeat_file)  # waiting is not being stuck
        log.warning("waiting for Postgres", extra={"postgres": settings.postgres.describe(), "error": why})

    # Results are recorded there before anything else: no job is taken until it answers, migrated.
    wait_until_ready(database, waiting_for_postgres)
    recording = recorder.Recorder(database, connection, settings.cache_max_bytes, heartbeat_file)
    recording.start()
    recorder.install(recording)
    queue = fib_queue(connection)
    worker = FibWorker(
        [queue],
        connection=connection,
        worker_ttl=heartbeat.RQ_WORKER_TTL,
        heartbeat_file=heartbeat_file,
    )
    if settings.metrics_port:
        try:
            metrics.serve(settings.metrics_port, queue, worker.name)
        except OSError as exc:
            print(
                f"fibworker: cannot serve metrics on port {settings.metrics_port} ({exc.strerror}): "
                "set METRICS_PORT to a free port, or to 0 to turn the metrics off",
                file=sys.stderr,
            )
            return 2
    liveness = Liveness(queue, worker.name, settings.liveness_ttl_seconds, settings.heartbeat_seconds)
    liveness.start()
    try:
        requeue_orphans(queue)
        # SIGTERM/SIGINT: RQ finishes the current job, then returns (warm shutdown).
        worker.work(burst=burst, with_scheduler=False, logging_level=settings.log_level)
    finally:
        # What the last jobs handed in is recorded before the worker says it is gone.
        recording.stop()
        liveness.stop()
        database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
