"""Every error the API returns is JSON: {"error": <message>, "code": <slug>}; and the API's own exceptions.

Never a stack trace or an HTML page, whatever went wrong.
"""

from __future__ import annotations

import logging

import psycopg
import psycopg_pool
import redis.exceptions
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from . import metrics

log = logging.getLogger(__name__)


class NotMigrated(Exception):
    """Postgres answers, but without the tables (or columns) this version needs: the migration step has not run."""


class OverCapacity(Exception):
    """New work refused for now: the reason is "queue", "memory" or "recomputes" (admission.lua)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ValueVanished(Exception):
    """A decimal value was dropped from the cache while it was being streamed."""


# Why new work is refused (OverCapacity), what the client is told, and
# when it should try again (seconds).
OVER_CAPACITY = {
    "queue": ("The workers are behind, so new indexes are refused for now; try again in a moment.", 10),
    "memory": ("Redis is nearly full, so new indexes are refused for now; try again later.", 30),
    "recomputes": ("Too many dropped values are being computed again; try again in a moment.", 10),
}


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def error_response(status: int, code: str, message: str) -> Response:
    metrics.refused(code)
    response = jsonify(error=message, code=code)
    response.status_code = status
    return response


def unavailable(exc: Exception, code: str, message: str, retry_after: int = 5) -> Response:
    """503 for a backing service that is down: the client should simply retry."""
    log.warning(code, extra={"error": str(exc)})
    response = error_response(503, code, message)
    response.headers["Retry-After"] = str(retry_after)
    return response


def register(app: Flask) -> None:
    @app.errorhandler(APIError)
    def api_error(exc: APIError) -> Response:
        response = error_response(exc.status, exc.code, exc.message)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value  # e.g. Allow on a 405
        return response

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(psycopg_pool.PoolTimeout)
    def postgres_down(exc: Exception) -> Response:
        return unavailable(
            exc, "postgres_unavailable", "The database (Postgres) is unavailable; try again in a moment."
        )

    @app.errorhandler(NotMigrated)
    def not_migrated(exc: Exception) -> Response:
        return unavailable(
            exc,
            "database_not_migrated",
            "The database lacks the tables this version needs: run the migration step (python -m fibapi.migrate).",
            retry_after=10,
        )

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    @app.errorhandler(redis.exceptions.BusyLoadingError)
    def redis_down(exc: Exception) -> Response:
        return unavailable(exc, "redis_unavailable", "The queue (Redis) is unavailable; try again in a moment.")

    @app.errorhandler(redis.exceptions.OutOfMemoryError)
    def redis_full(exc: Exception) -> Response:
        # Should not happen: admission control (admission.lua) refuses new
        # work well before Redis is full, and the values make room for new
        # ones. Redis itself evicts nothing (noeviction), so a Redis full
        # anyway (someone else's data) refuses writes instead.
        return unavailable(exc, "redis_full", "The queue (Redis) is full; try again later.", retry_after=30)

    @app.errorhandler(OverCapacity)
    def over_capacity(exc: OverCapacity) -> Response:
        metrics.ADMISSION_REFUSED.labels(exc.reason).inc()
        message, retry_after = OVER_CAPACITY[exc.reason]
        response = error_response(503, "over_capacity", message)
        response.headers["Retry-After"] = str(retry_after)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side.")
