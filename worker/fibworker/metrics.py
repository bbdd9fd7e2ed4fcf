"""Prometheus metrics of the worker, served on METRICS_PORT.

Each worker reports its own jobs. The queue's length and the age of its
oldest job come from Redis and are the same for every worker, so only one
worker reports them at a time (whichever holds REPORTER_KEY; another takes
over within REPORTER_SECONDS if it goes): summed or averaged across replicas
they still mean what they say.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job

from . import contract

JOBS = Counter("fibstack_worker_jobs", "Indexes computed, by outcome (done, failed)", ["outcome"])
COMPUTE_SECONDS = Histogram(
    "fibstack_worker_compute_seconds",
    "Time to compute F(n) and its decimal form",
    buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0),
)
DIGITS = Counter("fibstack_worker_digits", "Decimal digits produced")
REQUEUED = Counter("fibstack_worker_requeued_jobs", "Jobs of dead workers put back in the queue")
RECORDED_GROUPS = Histogram(
    "fibstack_worker_recorded_group_size",
    "Results recorded together (one UPDATE and one commit in Postgres, one Redis transaction: recorder.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 200),
)

REPORTER_KEY = f"{contract.PREFIX}:queue-metrics-reporter"
REPORTER_SECONDS = 30


def recorded(size: int) -> None:
    RECORDED_GROUPS.observe(size)


def computed(seconds: float, digits: int) -> None:
    JOBS.labels("done").inc()
    COMPUTE_SECONDS.observe(seconds)
    DIGITS.inc(digits)


class QueueCollector(Collector):
    """fibstack_queue_jobs and fibstack_queue_oldest_job_age_seconds, read from Redis at scrape time."""

    def __init__(self, queue: Queue, worker_name: str) -> None:
        self.queue = queue
        self.worker_name = worker_name

    def collect(self) -> Iterator[GaugeMetricFamily]:
        connection: Redis = self.queue.connection
        try:
            reporter = connection.set(REPORTER_KEY, self.worker_name, nx=True, ex=REPORTER_SECONDS, get=True)
            if reporter not in (None, self.worker_name.encode()):
                return  # another worker reports the queue
            connection.expire(REPORTER_KEY, REPORTER_SECONDS)
            length = connection.llen(self.queue.key)
            oldest_id: Any = connection.lindex(self.queue.key, 0)
            enqueued: Any = connection.hget(Job.key_for(oldest_id.decode()), "enqueued_at") if oldest_id else None
        except RedisError:
            return  # Redis down: no figure rather than a wrong one
        yield GaugeMetricFamily("fibstack_queue_jobs", "Jobs waiting in the queue", value=length)
        age = 0.0
        if enqueued:
            age = max(0.0, time.time() - _timestamp(enqueued.decode()))
        yield GaugeMetricFamily(
            "fibstack_queue_oldest_job_age_seconds", "How long the oldest waiting job has waited (0: none)", value=age
        )


def _timestamp(rq_time: str) -> float:
    """RQ's UTC time format (e.g. 2026-11-27T04:19:29.710280Z) as a Unix time."""
    from datetime import UTC, datetime

    return datetime.strptime(rq_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def serve(port: int, queue: Queue, worker_name: str) -> None:
    """Start the metrics server (a thread); raise OSError if the port is taken."""
    REGISTRY.register(QueueCollector(queue, worker_name))
    start_http_server(port)
