"""Nothing is lost when a worker dies mid-job (kill -9, OOM, power loss).

RQ records a running job in the queue's StartedJobRegistry. Left alone, RQ
only notices that a job's worker is gone after the job's timeout plus a minute,
and then marks the job failed. Instead, every worker here keeps a short-lived
"alive" key fresh from a background thread; any worker re-queues, at start-up
and every few seconds, the started jobs whose worker's key has expired.
Re-running a job is harmless: F(n) is deterministic and the result is simply
written again.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue
from rq.executions import Execution

from . import contract, metrics

log = logging.getLogger(__name__)

REAPER_LOCK = f"{contract.PREFIX}:reaper-lock"


def requeue_orphans(queue: Queue) -> list[str]:
    """Re-queue every started job whose worker is no longer alive; return their ids."""
    connection = queue.connection
    # One reaper at a time, so two workers never re-queue the same job twice.
    if not connection.set(REAPER_LOCK, "1", nx=True, ex=30):
        return []
    requeued: list[str] = []
    try:
        registry = queue.started_job_registry
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            job = queue.fetch_job(job_id)
            entry = f"{job_id}:{execution_id}"
            if job is None:
                connection.zrem(registry.key, entry)
                continue
            worker = running_worker(connection, job_id, execution_id) or job.worker_name
            if worker and connection.exists(contract.worker_alive_key(worker)):
                continue
            with connection.pipeline() as pipe:
                pipe.multi()
                pipe.zrem(registry.key, entry)
                queue.enqueue_job(job, pipeline=pipe, at_front=True)
                pipe.execute()
            requeued.append(job_id)
            metrics.REQUEUED.inc()
            log.warning("re-queued job of a dead worker", extra={"job_id": job_id, "worker": worker})
    finally:
        connection.delete(REAPER_LOCK)
    return requeued


def running_worker(connection: Redis, job_id: str, execution_id: str) -> str:
    """The worker running this execution of a job ("" if unknown).

    From RQ's execution record, which RQ writes in the same transaction as
    the started registry's entry. The job's own worker_name is set a moment
    later, as the job begins: read alone, a job just taken would look
    orphaned, and be run twice.
    """
    name = connection.hget(Execution(execution_id, job_id, connection).key, "worker_name")
    return name.decode() if isinstance(name, bytes) else ""


class Liveness:
    """Keeps this worker's alive key fresh and reaps dead workers' jobs."""

    def __init__(self, queue: Queue, worker_name: str, ttl_seconds: int, interval: float) -> None:
        self.queue = queue
        self.key = contract.worker_alive_key(worker_name)
        self.ttl_seconds = ttl_seconds
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)

    @property
    def connection(self) -> Redis:
        return self.queue.connection

    def beat(self) -> None:
        self.connection.set(self.key, "1", ex=self.ttl_seconds)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        # If Redis is gone too, the key simply expires by itself.
        with contextlib.suppress(RedisError):
            self.connection.delete(self.key)

    def _run(self) -> None:
        beats = 0
        while not self._stop.wait(self.interval):
            try:
                self.beat()
                beats += 1
                # Reaping is cheap but need not run at every beat.
                if beats % 2 == 0:
                    requeue_orphans(self.queue)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # RQ's own loop reports and retries the lost connection.
                log.debug("liveness beat failed", extra={"error": str(exc)})
            except Exception:
                log.exception("liveness check failed")
