"""parse_submission: every way a body can be wrong, and the accepted forms."""

from __future__ import annotations

import json

import pytest
from fibapi.errors import APIError
from fibapi.validation import parse_submission

MAX = 10_000_000
JSON = "application/json"


def body(value: object) -> bytes:
    return json.dumps({"index": value}).encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (body("10"), 10),
        (body(10), 10),
        (body("0"), 0),
        (body(" 7 "), 7),  # surrounding whitespace is accepted (documented)
        (body("\t42\n"), 42),
        (body("007"), 7),
        (body(str(MAX)), MAX),
        (b'{"index": 10000000}', MAX),
    ],
)
def test_accepted(raw: bytes, expected: int) -> None:
    assert parse_submission(raw, JSON, MAX) == expected


def test_charset_parameter_is_accepted() -> None:
    assert parse_submission(body("3"), "application/json; charset=utf-8", MAX) == 3


BAD = [
    (body("abc"), 422, "invalid_index"),
    (body("3.5"), 422, "invalid_index"),
    (b'{"index": 3.5}', 422, "invalid_index"),
    (b'{"index": 3.0}', 422, "invalid_index"),
    (body("-1"), 422, "invalid_index"),
    (b'{"index": -1}', 422, "invalid_index"),
    (body("1e3"), 422, "invalid_index"),
    (b'{"index": 1e3}', 422, "invalid_index"),
    (body("1 0"), 422, "invalid_index"),
    (body("+5"), 422, "invalid_index"),
    (body("0x10"), 422, "invalid_index"),
    (body("٣"), 422, "invalid_index"),  # a non-ASCII digit
    (body(""), 422, "invalid_index"),
    (body("   "), 422, "invalid_index"),
    (body(None), 422, "invalid_index"),
    (body(True), 422, "invalid_index"),
    (body([1]), 422, "invalid_index"),
    (body({"n": 1}), 422, "invalid_index"),
    (b'{"index": NaN}', 422, "invalid_index"),
    (b'{"index": Infinity}', 422, "invalid_index"),
    (body(str(MAX + 1)), 422, "index_too_large"),
    (body("9" * 5000), 422, "index_too_large"),
    (b'{"index": ' + b"9" * 100_000 + b"}", 422, "index_too_large"),
    (body("0" * 50 + "9" * 5000), 422, "index_too_large"),
    (b"[1, 2]", 422, "invalid_body"),
    (b'"10"', 422, "invalid_body"),
    (b"10", 422, "invalid_body"),
    (b"null", 422, "invalid_body"),
    (b"{}", 422, "missing_index"),
    (b'{"value": "10"}', 422, "missing_index"),
    (b'{"index": "10", "extra": 1}', 422, "unexpected_field"),
    (b'{"index": "1", "index": "2"}', 422, "duplicate_field"),
    (b'{"index": "1", "x": {"a": 1, "a": 2}}', 422, "duplicate_field"),
    (b"", 400, "invalid_json"),
    (b"{index: 10}", 400, "invalid_json"),
    (b'{"index": "10"', 400, "invalid_json"),
    (b'{"index": "\xff\xfe"}', 400, "invalid_encoding"),
]


@pytest.mark.parametrize(("raw", "status", "code"), BAD)
def test_refused(raw: bytes, status: int, code: str) -> None:
    with pytest.raises(APIError) as info:
        parse_submission(raw, JSON, MAX)
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.message  # a sentence a person can act on


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_wrong_content_type(content_type: str | None) -> None:
    with pytest.raises(APIError) as info:
        parse_submission(body("10"), content_type, MAX)
    assert info.value.status == 415


def test_max_index_is_configurable() -> None:
    assert parse_submission(body("50"), JSON, 50) == 50
    with pytest.raises(APIError):
        parse_submission(body("51"), JSON, 50)
