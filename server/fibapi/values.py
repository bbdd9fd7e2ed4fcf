"""The /api/values routes: submit an index, list what was seen, read results."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context

from . import cache, contract, metrics, queueing
from .db import get_db
from .errors import APIError
from .store import get_store
from .submissions import get_submissions
from .validation import parse_submission

bp = Blueprint("values", __name__, url_prefix="/api/values")


def _request_body() -> bytes:
    """The body, or a 413 when it is over MAX_CONTENT_LENGTH, however it was sent.

    Werkzeug refuses a too-long Content-Length up front, but a chunked body
    (no Content-Length) is only cut at the limit: reading stops there quietly,
    and only a read past it raises 413. So read once more at the limit, rather
    than parse a truncated body. (A chunked body of exactly the limit is
    refused too: the stream cannot tell it apart from a longer one.)
    """
    body = request.stream.read()
    if len(body) >= current_app.config["MAX_CONTENT_LENGTH"]:
        request.stream.read(1)
    return body


# One spelling only: the router's rate limit covers every path that reaches
# this view (it limits every POST), and a second route (the trailing slash)
# was how clients got round a limit that named the path.
@bp.post("")
def submit() -> tuple[dict[str, Any], int]:
    index = parse_submission(_request_body(), request.content_type, current_app.config["MAX_INDEX"])
    # Committed and queued (with whatever else this process was taking at
    # the same moment) before this returns; submissions.py says in what order.
    accepted = get_submissions().submit(index)
    metrics.submission(accepted.queued)
    return {"working": True, **accepted.status}, 202


@bp.get("/all")
def all_submissions() -> list[dict[str, int]]:
    """The most recent submissions, newest first (the course's shape)."""
    with get_db().connection() as conn:
        numbers = get_db().recent_submissions(conn, current_app.config["RECENT_LIMIT"])
    return [{"number": number} for number in numbers]


def _recent_statuses() -> list[dict[str, Any]]:
    """Status objects of the most recently submitted distinct indexes, newest first: Postgres alone.

    Never Redis: whatever it lost, the lists are right, and a list read
    never queues work (the reconcile pass queues what Redis lost).
    """
    with get_db().connection() as conn:
        states = get_db().recent_states(conn, current_app.config["RECENT_LIMIT"])
    return [contract.public_status(index, fields) for index, fields in states]


@bp.get("/current")
def current() -> dict[str, str]:
    """index -> display string (the course's shape), newest first."""
    return {str(status["index"]): contract.display_string(status) for status in _recent_statuses()}


@bp.get("/recent")
def recent() -> list[dict[str, Any]]:
    """The same indexes as /current, as full status objects in a list.

    A list keeps the order: JavaScript objects put integer-like keys in
    numeric order, so /current cannot tell a browser which index is newest.
    """
    return _recent_statuses()


def _status_or_404(index: int) -> dict[str, Any]:
    max_index = current_app.config["MAX_INDEX"]
    if index > max_index:
        # Never submitted, since no submission can be: answered without
        # asking Redis or Postgres (an index of 2^63 or more would reach
        # Postgres as a numeric, which cannot use the primary key).
        raise APIError(404, "not_found", f"index {index} is above the largest index, {max_index:,}")
    # The cache, else Postgres (which is the truth): never queues work; a
    # pending index Redis lost is the reconcile pass's to queue.
    status = cache.status(get_store(), get_db(), index)
    if status is None:
        raise APIError(404, "not_found", f"index {index} has never been submitted")
    return status


# How soon a client should ask again for a value being recomputed.
RECOMPUTE_RETRY_SECONDS = 2


@bp.get("/<int:index>")
def one(index: int) -> dict[str, Any]:
    return _status_or_404(index)


@bp.get("/<int:index>/decimal")
def decimal(index: int) -> Response:
    status = _status_or_404(index)
    headers = {"Content-Disposition": f'attachment; filename="fibonacci-{index}.txt"'}
    if status["value"] is not None:
        # Short enough to be in its status (Postgres has it too): no Redis needed.
        return Response(status["value"], mimetype="text/plain", headers=headers)
    store = get_store()
    length = cache.decimal_length(store, index) if status["status"] == contract.DONE else 0
    if not length and status["status"] == contract.DONE:
        # Not in the cache (dropped to make room, or Redis lost it): computed again, once however many ask.
        queueing.recompute(store, index)
        raise APIError(
            409,
            "recomputing",
            f"F({index}) was dropped to free memory and is being computed again; try again in a moment",
            retry_after=RECOMPUTE_RETRY_SECONDS,
        )
    if not length:
        raise APIError(404, "not_computed", f"F({index}) is not computed yet; try again when its status is done")
    return Response(
        stream_with_context(cache.stream_decimal(store, index, length)),
        mimetype="text/plain",
        headers={"Content-Length": str(length), **headers},
    )
