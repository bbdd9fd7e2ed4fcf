"""GET /api/system: what the pipeline is doing now, for the client's live system page.

Read from what exists already, so it costs the submit and list paths
nothing: the readiness checks, and one pipeline of Redis reads (RQ's queue
and worker registry, the events stream the workers append to, the
lists-changes stream the API appends to after each commit, the refusals
stream admission control appends to, the API processes' heartbeats, the
reconcile pass's last figures), then
one more for the few workers, the oldest job and the events of the last few
submissions (timeline.py). Each process makes it at most once a second
(Kept). It reveals no secret, hostname or address: workers and API
processes are counted, never named.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import Job
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from . import contract, timeline
from .health import checks
from .store import get_store

bp = Blueprint("system", __name__, url_prefix="/api")

# Rates are over the last this many seconds.
WINDOW_SECONDS = 10
# At most this many entries are read from a stream, so a burst costs a
# bounded read: past it the rate says "at least" (rate_capped), and a shown
# submission's computation not among them is drawn as not reached yet.
WINDOW_ENTRIES_MAX = 2000
# RQ's registry of the queue's workers (a set of their keys), named as RQ names it.
WORKERS_KEY = WORKERS_BY_QUEUE_KEY % contract.QUEUE_NAME


# Each API process makes the answer at most once in this long, one request
# at a time (the others wait for it and share it): however many pages, or
# hostile clients, ask, each process reads Redis and Postgres for it at most
# about once a second.
KEEP_SECONDS = 1.0


class Kept:
    """The last answer and when it was made (time.monotonic())."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # gevent's under gunicorn: waiting requests yield
        self._answer: dict[str, Any] = {}
        self._made = -float("inf")

    def get(self, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._made >= KEEP_SECONDS:
                self._answer = make()
                self._made = time.monotonic()
            return self._answer


@bp.get("/system")
def system() -> dict[str, Any]:
    kept: Kept = current_app.extensions.setdefault("fibstack.system", Kept())
    return kept.get(answer)


def answer() -> dict[str, Any]:
    ready = checks()
    pipeline: dict[str, Any] = {
        "api": None,
        "queue": None,
        "workers": None,
        "rates": None,
        "refused": None,
        "recent": None,
        "reconcile": None,
    }
    if ready["redis"] == "ok":
        try:
            pipeline = snapshot(get_store().queue, time.time())
        except RedisError:
            ready["redis"] = "unavailable: RedisError"
    return {"ready": ready, **pipeline, "window_seconds": WINDOW_SECONDS}


def snapshot(queue: Queue, now: float) -> dict[str, Any]:
    """The queue, its workers and the rates, as Redis has them at `now` (Unix seconds)."""
    window_start = int((now - WINDOW_SECONDS) * 1000)  # Unix ms, as stream ids
    since = f"{window_start}-0"
    reads = queue.connection.pipeline(transaction=False)
    reads.llen(queue.key)
    reads.lindex(queue.key, 0)  # RQ appends on the right and takes from the left: the oldest
    reads.smembers(WORKERS_KEY)
    reads.xrevrange(contract.LISTS_CHANGES, min=since, count=WINDOW_ENTRIES_MAX)
    reads.xrevrange(contract.REFUSALS_STREAM, min=since, count=WINDOW_ENTRIES_MAX)
    reads.xrevrange(contract.LISTS_CHANGES, count=contract.TIMELINE_MAX)  # idle or not: the last few
    reads.zcount(contract.API_PROCESSES, now - contract.API_ALIVE_SECONDS, "+inf")
    reads.hgetall(contract.RECONCILE_REPORT)
    depth, oldest, worker_keys, changes, refusals, last_changes, api_processes, report = reads.execute()
    shown = timeline.submissions(last_changes)

    prefix = Worker.redis_worker_namespace_prefix.encode()
    details = queue.connection.pipeline(transaction=False)
    for key in worker_keys:
        details.hget(key, "state")
        details.exists(contract.worker_alive_key(key.removeprefix(prefix).decode()))
    # One read of the events, newest first, for both the window's computations and the shown
    # submissions' (the newest submissions: their computations are among the newest events).
    events_from = timeline.events_from(shown, window_start)
    details.xrevrange(contract.EVENTS_STREAM, min=f"{events_from}-0", count=WINDOW_ENTRIES_MAX)
    if oldest is not None:
        details.hget(Job.key_for(oldest.decode()), "enqueued_at")
    answers = details.execute()
    states, alive = answers[0 : 2 * len(worker_keys) : 2], answers[1 : 2 * len(worker_keys) : 2]
    events = answers[2 * len(worker_keys)]
    enqueued_at = answers[-1] if oldest is not None else None

    # A computation that ended is a worker's event, the only ones stamped with their job: counted
    # without decoding a single status.
    in_window = [fields for entry_id, fields in events if timeline.entry_ms(entry_id) >= window_start]
    computed = sum(1 for fields in in_window if timeline.JOB_FIELD in fields)
    events_capped = len(events) >= WINDOW_ENTRIES_MAX and len(in_window) == len(events)
    submitted = sum(len(fields[b"indexes"].split(b",")) for _, fields in changes if fields.get(b"indexes"))
    reasons: dict[str, int] = {}
    for _, fields in refusals:
        reason = fields.get(b"reason", b"").decode()
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "api": {"processes": api_processes},
        "queue": {"depth": depth, "oldest_age_seconds": _age(enqueued_at, now)},
        "workers": {
            "alive": sum(1 for flag in alive if flag),
            "busy": sum(1 for flag, state in zip(alive, states, strict=True) if flag and state == b"busy"),
        },
        "rates": {
            "submissions_per_second": round(submitted / WINDOW_SECONDS, 1),
            "computations_per_second": round(computed / WINDOW_SECONDS, 1),
            "refused_per_second": round(len(refusals) / WINDOW_SECONDS, 1),
            "rate_capped": events_capped or max(len(changes), len(refusals)) >= WINDOW_ENTRIES_MAX,
        },
        # Admission control's refusals in the window, by why: "queue" or "memory".
        "refused": reasons,
        "recent": timeline.drawn(shown, reversed(events), now),
        "reconcile": _reconcile(report, now),
    }


def _reconcile(report: dict[bytes, bytes], now: float) -> dict[str, Any] | None:
    """The reconcile pass's last figures (contract.RECONCILE_REPORT), or None if there are none."""
    try:
        return {
            "age_seconds": round(max(0.0, now - int(report[b"at"]) / 1000), 1),
            "pending": int(report[b"pending"]),
            "healed": int(report[b"healed"]),
            "healed_total": int(report[b"healed_total"]),
            "heal_within_seconds": int(report[b"within"]),
        }
    except (KeyError, ValueError):
        return None


def _age(enqueued_at: bytes | None, now: float) -> float | None:
    """Seconds since RQ's enqueued_at (an ISO time in UTC), or None."""
    if not enqueued_at:
        return None
    try:
        when = datetime.fromisoformat(enqueued_at.decode().replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(max(0.0, now - when.timestamp()), 3)
