"""Prometheus metrics of the API, added up across gunicorn's processes.

prometheus-client's multiprocess mode: each process writes its samples to
files in PROMETHEUS_MULTIPROC_DIR, and the metrics server that gunicorn's
master runs (gunicorn.conf.py) adds them up, on METRICS_PORT: a port of its
own, which the router never proxies. Without that variable (tests, the flask
CLI) the metrics simply live in the process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Where the route template of a request is noted, by Flask (before_request) or
# by listcache.py for what it answers itself.
ROUTE_KEY = "fibstack.route"
METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})

REQUESTS = Counter(
    "fibstack_api_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "fibstack_api_request_duration_seconds",
    "Time to the response's headers (event streams: to the stream's start), by route template",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SUBMISSIONS = Counter(
    "fibstack_api_submissions",
    "POST /api/values by outcome: accepted (queued now), deduplicated (pending or done already), "
    "refused (code: the error's code)",
    ["outcome", "code"],
)
SUBMISSION_GROUPS = Histogram(
    "fibstack_api_submission_group_size",
    "Submissions written together (one queueing script, one INSERT, one commit: submissions.py)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
ADMISSION_REFUSED = Counter(
    "fibstack_api_admission_refused",
    "New work refused with 503 over_capacity, by reason: queue (too deep), memory (Redis nearly full), "
    "recomputes (too many dropped values asked for at once)",
    ["reason"],
)
DEPENDENCY_UNAVAILABLE = Counter(
    "fibstack_api_dependency_unavailable", "Answers of 503 because a backing service failed", ["dependency"]
)
HEALED = Counter(
    "fibstack_api_healed",
    "Pending indexes whose job Redis had lost, queued again by the reconcile pass (reconcile.py)",
)
HEAL_DELAY = Histogram(
    "fibstack_api_heal_delay_seconds",
    "How long an index healed by the reconcile pass had been pending since its job was queued",
    buckets=(10, 15, 20, 30, 45, 60, 120, 300, 900, 3600, 86400),
)
CACHE_READS = Counter(
    "fibstack_api_cache_reads",
    "Statuses read through the cache in Redis (cache.py), by result: hit, or miss (read from Postgres)",
    ["result"],
)
EVENT_STREAMS = Gauge("fibstack_api_event_streams", "Open GET /api/events streams", multiprocess_mode="livesum")


class Instrument:
    """WSGI middleware counting every answer by route template, method and status, and timing it."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        # Each label set's counter and histogram, looked up once: .labels()
        # takes a lock and builds keys on every call.
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def _observers(self, route: str, method: str, status: str) -> tuple[Any, Any]:
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (REQUESTS.labels(route, method, status), LATENCY.labels(route))
        return series

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()

        def observe(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            method = environ.get("REQUEST_METHOD", "")
            count, latency = self._observers(
                environ.get(ROUTE_KEY, "unmatched"), method if method in METHODS else "other", status[:3]
            )
            count.inc()
            latency.observe(time.perf_counter() - started)
            return start_response(status, headers, exc_info)

        return self.app(environ, observe)


def submission(queued: bool) -> None:
    SUBMISSIONS.labels("accepted" if queued else "deduplicated", "").inc()


def healed(pending_seconds: list[float]) -> None:
    HEALED.inc(len(pending_seconds))
    for seconds in pending_seconds:
        HEAL_DELAY.observe(seconds)


def cache_reads(hits: int, misses: int) -> None:
    if hits:
        CACHE_READS.labels("hit").inc(hits)
    if misses:
        CACHE_READS.labels("miss").inc(misses)


def submission_group(size: int) -> None:
    SUBMISSION_GROUPS.observe(size)


def refused(code: str) -> None:
    """Count an error answer: as a refused submission if it answers one, as a dependency's failure if a 503."""
    if request.endpoint == "values.submit":
        SUBMISSIONS.labels("refused", code).inc()
    dependency = {"postgres_unavailable": "postgres", "redis_unavailable": "redis", "redis_full": "redis"}.get(code)
    if dependency:
        DEPENDENCY_UNAVAILABLE.labels(dependency).inc()


def init_app(app: Flask) -> None:
    @app.before_request
    def note_route() -> None:
        request.environ[ROUTE_KEY] = request.url_rule.rule if request.url_rule else "unmatched"
