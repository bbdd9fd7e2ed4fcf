"""Turning a POST /api/values body into an index, or a clear 4xx error.

Accepted: a JSON object with exactly one field, "index", holding either a JSON
integer or a string of decimal digits (the course's client sends a string).
Surrounding whitespace in the string is ignored (people paste " 7 "); anything
else is refused: signs, decimal points, exponents, inner spaces, booleans,
floats, and numbers above MAX_INDEX however many digits they have.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import APIError

MEDIA_TYPE = "application/json"


class _IntLiteral(str):
    """A JSON integer kept as its digits, so huge literals never reach int()."""


class _FloatLiteral(str):
    """A JSON number with a fraction or exponent: never a valid index."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing repeated keys: which "index" was meant is unknowable."""
    body: dict[str, Any] = {}
    for key, value in pairs:
        if key in body:
            raise APIError(422, "duplicate_field", f'the field "{key}" appears more than once; send it once')
        body[key] = value
    return body


def _reject_constant(name: str) -> Any:
    raise APIError(422, "invalid_index", f"index must be a whole number, got {name}")


def parse_body(raw: bytes, content_type: str | None) -> Any:
    """Decode a JSON request body, refusing anything that is not UTF-8 JSON."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != MEDIA_TYPE:
        raise APIError(
            415, "unsupported_media_type", f"send the body as {MEDIA_TYPE}, got {media_type or 'no Content-Type'}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError(400, "invalid_encoding", "the body must be UTF-8 encoded JSON") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_IntLiteral,
            parse_float=_FloatLiteral,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise APIError(400, "invalid_json", f"the body is not valid JSON ({exc.msg})") from None


def parse_index(value: Any, max_index: int) -> int:
    """Check one submitted index and return it as an int."""
    if isinstance(value, bool) or not isinstance(value, str):
        # bool first: True is an int in Python but not an index.
        kind = type(value).__name__ if not isinstance(value, bool) else "boolean"
        kind = {"NoneType": "null", "dict": "object", "list": "array"}.get(kind, kind)
        raise APIError(422, "invalid_index", f"index must be a whole number, got {kind}")
    if isinstance(value, _FloatLiteral):
        raise APIError(422, "invalid_index", f"index must be a whole number, got {value}")
    digits = value.strip(" \t\r\n")
    if not digits:
        raise APIError(422, "invalid_index", "index is empty; enter a whole number")
    if not (digits.isascii() and digits.isdigit()):
        shown = digits if len(digits) <= 20 else digits[:20] + "…"
        raise APIError(422, "invalid_index", f"index must be a whole number from 0 to {max_index:,}, got {shown!r}")
    significant = digits.lstrip("0") or "0"
    # Compare lengths before converting: int() of a huge string is slow and,
    # beyond 4,300 digits, refused by CPython.
    if len(significant) > len(str(max_index)) or int(significant) > max_index:
        raise APIError(422, "index_too_large", f"index must be at most {max_index:,}")
    return int(significant)


def parse_submission(raw: bytes, content_type: str | None, max_index: int) -> int:
    body = parse_body(raw, content_type)
    if not isinstance(body, dict):
        raise APIError(422, "invalid_body", 'the body must be a JSON object like {"index": "10"}')
    if "index" not in body:
        raise APIError(422, "missing_index", 'the field "index" is required, like {"index": "10"}')
    extra = sorted(key for key in body if key != "index")
    if extra:
        raise APIError(422, "unexpected_field", f'unexpected field(s): {", ".join(extra)}; send only "index"')
    return parse_index(body["index"], max_index)
