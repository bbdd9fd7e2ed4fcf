"""Probes: /api/healthz (the process answers) and /api/readyz (it can serve)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from .db import get_db
from .store import get_store

bp = Blueprint("health", __name__, url_prefix="/api")


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    checks: dict[str, str] = {}
    for name, ping in (("postgres", get_db().ping), ("redis", get_store().ping)):
        try:
            ping()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready", with the reason shown
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(result == "ok" for result in checks.values())
    return {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
