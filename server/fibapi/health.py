"""Probes: /api/healthz (the process answers) and /api/readyz (it can serve).

Kubernetes and load balancers call /api/readyz with a timeout of about a
second. A probe that times out tells them nothing, so each check has its own
short timeouts, the checks run side by side, and the answer goes out after
CHECK_DEADLINE_SECONDS at most, naming any check that has not finished.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from flask import Blueprint

from .db import get_db
from .store import get_store

bp = Blueprint("health", __name__, url_prefix="/api")

CHECK_DEADLINE_SECONDS = 0.8

# Created on first use, after gunicorn's gevent worker has patched threading,
# so under gevent these are greenlets and a stuck check blocks nothing else.
_executor: ThreadPoolExecutor | None = None


def _checks_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readyz")
    return _executor


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    results = checks()
    ready = all(result == "ok" for result in results.values())
    return {"status": "ok" if ready else "unavailable", "checks": results}, 200 if ready else 503


def checks() -> dict[str, str]:
    """Each dependency's readiness ("ok" or why not), within CHECK_DEADLINE_SECONDS (also GET /api/system)."""
    pings: dict[str, Callable[[], None]] = {"postgres": get_db().ping, "redis": get_store().ping}
    executor = _checks_executor()
    futures = {name: executor.submit(ping) for name, ping in pings.items()}
    wait(futures.values(), timeout=CHECK_DEADLINE_SECONDS)
    return {name: _outcome(future) for name, future in futures.items()}


def _outcome(future: Future[None]) -> str:
    if not future.done():
        return f"unavailable: no answer within {CHECK_DEADLINE_SECONDS} s"
    exc = future.exception()
    # Any failure means "not ready"; the reason is shown, never a traceback.
    return "ok" if exc is None else f"unavailable: {type(exc).__name__}"
