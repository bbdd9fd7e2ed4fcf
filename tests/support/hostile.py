"""What a hostile client tries against the router, as checks that any running stack must pass.

    python tests/support/hostile.py BASE_URL [CHECK ...]     (scripts/docker-check.sh, tests/support/pods.py)

Each check takes the router's base URL (http://127.0.0.1:<port>) and raises
AssertionError with what it saw. tests/test_router.py runs them against the
local router; the container checks run them against Compose and the pods.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

# Spellings of the submit path that nginx or the API normalises, decodes or
# may once have served: each one is limited like /api/values, or refused.
SUBMIT_SPELLINGS = (
    "/api/values/",
    "/api/values%2F",
    "/api/values%2f",
    "/api//values",
    "//api/values",
    "/api/./values",
    "/api/values/.",
    "/api/x/../values",
    "/%61pi/values",
    "/api/%76alues",
    "/api/values?x=1",
    "/api/values;x",
)

# Those of them that the API itself reads as /api/values (percent-decoding,
# a query, Werkzeug's dropping of leading slashes): submissions, limited.
SAME_PATH = ("//api/values", "/%61pi/values", "/api/%76alues", "/api/values?x=1")


def raw_request(
    base: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """One request with `path` sent exactly as written (HTTP clients normalise it); status, headers, body."""
    parts = urlsplit(base)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.hostname}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in found.items()}, payload


def submit_raw(base: str, path: str, index: int) -> tuple[int, dict[str, str], bytes]:
    return raw_request(base, "POST", path, json.dumps({"index": index}).encode())


def check_every_submit_spelling_is_limited(base: str) -> None:
    """Once a client is over its submission limit, no other spelling of the path gets through."""
    statuses = [submit_raw(base, "/api/values", 7)[0] for _ in range(30)]
    assert 429 in statuses, f"30 quick POSTs to /api/values were never limited: {statuses}"
    for path in SUBMIT_SPELLINGS:
        answers = [submit_raw(base, path, 7) for _ in range(3)]
        # The bucket refills at 10 a second: of three quick tries, one may find a token.
        limited = [status for status, _, _ in answers if status == 429]
        assert len(limited) >= 2, f"POST {path} is not limited with /api/values: {[a[0] for a in answers]}"
        for status, headers, body in answers:
            assert headers.get("content-type") == "application/json", f"POST {path}: {status} {body[:200]!r}"
            assert "code" in json.loads(body), f"POST {path}: {body[:200]!r}"
    time.sleep(2.5)  # the limit's bucket full again, for whatever runs next


def check_other_spellings_never_submit(base: str) -> None:
    """Only /api/values records a submission; any other spelling is a JSON 4xx (or the limit's 429)."""
    for path in SUBMIT_SPELLINGS:
        status, headers, body = submit_raw(base, path, 7)
        assert headers.get("content-type") == "application/json", f"POST {path}: {status} {body[:200]!r}"
        if path not in SAME_PATH:
            assert status in (404, 405, 429), f"POST {path} was answered {status}: {body[:200]!r}"
        time.sleep(0.15)  # under the rate, so the limit is not what answers


CHECKS: dict[str, Callable[[str], None]] = {
    "submit-spellings": check_every_submit_spelling_is_limited,
    "other-spellings": check_other_spellings_never_submit,
}


def main(argv: list[str]) -> int:
    base, *names = argv
    for name in names or list(CHECKS):
        CHECKS[name](base)
        print(f"hostile: {name}: passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
