"""What a hostile client tries against the router, as checks that any running stack must pass.

    python tests/support/hostile.py BASE_URL [CHECK ...]     (scripts/docker-check.sh, tests/support/pods.py)

Each check takes the router's base URL (http://127.0.0.1:<port>) and raises
AssertionError with what it saw. tests/test_router.py runs them against the
local router; the container checks run them against Compose and the pods.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
        # Four at once: the bucket refills at 10 a second, so one may find a token.
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda _: submit_raw(base, path, 7), range(4)))  # noqa: B023
        limited = [status for status, _, _ in answers if status == 429]
        assert len(limited) >= 3, f"POST {path} is not limited with /api/values: {[a[0] for a in answers]}"
        for status, headers, body in answers:
            assert headers.get("content-type") == "application/json", f"POST {path}: {status} {body[:200]!r}"
            if status == 202:  # the one that found a token: a submission only if the API reads /api/values
                assert path in SAME_PATH, f"POST {path} was accepted: {body[:200]!r}"
            else:
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


# A request whose body stops after its first byte.
HALF_A_BODY = b"POST /api/values HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"


def connect(base: str, source: str | None = None, timeout: float = 10) -> socket.socket:
    parts = urlsplit(base)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    return socket.create_connection(address, timeout=timeout, source_address=(source, 0) if source else None)


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read up to the end of a response's headers; status, headers, and what came after them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the headers ended: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in found.items()}, rest


def open_stream(base: str, source: str | None = None) -> tuple[int, dict[str, str], bytes, socket.socket]:
    """GET /api/events, left open; its status, headers, first bytes, and the open socket."""
    sock = connect(base, source)
    sock.sendall(
        f"GET /api/events HTTP/1.1\r\nHost: {urlsplit(base).hostname}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    status, headers, rest = read_head(sock)
    return status, headers, rest, sock


def hold_streams(base: str, count: int, source: str | None = None) -> list[socket.socket]:
    """`count` event streams from one address, each answered 200; then one more must be refused."""
    held = []
    for n in range(count):
        status, _, _, sock = open_stream(base, source)
        assert status == 200, f"stream {n + 1} of {count} was refused ({status}): the cap is lower than {count}"
        held.append(sock)
    status, headers, body, sock = open_stream(base, source)
    try:
        while len(body) < int(headers.get("content-length", "0")):
            body += sock.recv(65536)
    finally:
        sock.close()
    assert status == 503, f"stream {count + 1} from one address was answered {status}, not refused"
    assert headers.get("content-type") == "application/json", headers
    assert headers.get("retry-after"), headers
    assert json.loads(body)["code"] == "too_many_streams", body[:200]
    return held


def check_other_clients_keep_working(base: str, source: str | None = None) -> None:
    """What another client does while one is at its caps: a stream opens, the page's reads answer."""
    status, _, _, sock = open_stream(base, source)
    sock.close()
    assert status == 200, f"another client's stream was refused ({status})"
    for path in ("/api/values/current", "/api/values/all", "/"):
        connection = connect(base, source)
        try:
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            status, _, _ = read_head(connection)
        finally:
            connection.close()
        assert status == 200, f"another client's GET {path} was answered {status}"


def hold_requests(base: str, count: int, source: str | None = None) -> list[socket.socket]:
    """`count` requests in progress from one address (bodies that never come); one more gets a 429.

    GETs with a body: POSTs would meet the submissions' rate limit first.
    """
    held = []
    for _ in range(count):
        sock = connect(base, source)
        sock.sendall(HALF_A_BODY.replace(b"POST /api/values", b"GET /api/values/all"))
        held.append(sock)
    time.sleep(0.5)  # each is counted once nginx has read its headers
    status, headers, body = raw_request(base, "GET", "/api/values/all")
    assert status == 429, f"request {count + 1} in progress from one address was answered {status}"
    assert headers.get("content-type") == "application/json", headers
    assert json.loads(body)["code"] == "too_many_requests"
    return held


def check_one_client_at_its_cap(
    base: str, hold: Callable[[str, int, str | None], list[socket.socket]], cap: int, source: str, other: str
) -> None:
    """Local check (two loopback addresses): `source` holds `cap` streams or requests, `other` is unaffected."""
    held = hold(base, cap, source)
    try:
        check_other_clients_keep_working(base, other)
    finally:
        for sock in held:
            sock.close()


def check_slow_clients_are_cut_off(base: str, header_timeout: float = 10, keepalive: float = 15) -> None:
    """Connections that send nothing, half a request, or half a body, and idle keep-alive ones, all end."""
    started = time.monotonic()
    attempts = {
        "nothing": b"",
        "half the headers": b"GET /api/values/all HTTP/1.1\r\nHost: x\r\n",
        "half the body": HALF_A_BODY,
        "idle after a request": b"GET /nginx-health HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    socks = {}
    for what, data in attempts.items():
        sock = connect(base, timeout=keepalive + header_timeout + 10)
        sock.sendall(data)
        socks[what] = sock
    for what, sock in socks.items():
        try:
            while sock.recv(65536):
                pass  # what nginx sends (the answer, a 408) before it closes
        except ConnectionResetError:
            pass  # reset_timedout_connection: closed without a goodbye
        except TimeoutError:
            raise AssertionError(f"{what}: still open after {time.monotonic() - started:.0f} s") from None
        finally:
            sock.close()
        limit = (keepalive if what == "idle after a request" else header_timeout) + 5
        assert time.monotonic() - started < limit, f"{what}: the router kept it {time.monotonic() - started:.0f} s"


def check_caps_while_another_is_served(base: str, other_client: Callable[[], None], cap: int = 100) -> None:
    """This machine holds one address's cap of streams, then of requests; `other_client` (another address) is served.

    For the container checks: the host reaches the router through Docker's
    proxy (one address), `other_client` runs this file's other-client check
    from inside the stack's network.
    """
    for hold in ("hold-streams", "hold-requests"):
        holder = subprocess.Popen(
            [sys.executable, __file__, base, hold, str(cap)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None
            line = holder.stdout.readline()
            assert "holding" in line, f"{hold}: {line or 'the holder failed'}"
            other_client()
        finally:
            holder.communicate(timeout=30)
        print(f"hostile: one client at its cap ({hold.removeprefix('hold-')}: {cap}), another served", flush=True)


def check_system_page_flood_is_one_read_a_second(base: str, requests: int = 400, threads: int = 16) -> None:
    """Many GET /api/system at once: each API process makes its answer about once a second, and a
    submission meanwhile is still accepted."""
    import requests as http  # only this check needs more than sockets

    def one(_: int) -> tuple[int, str]:
        answer = http.get(f"{base}/api/system", timeout=10)
        return answer.status_code, answer.text

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        flood = pool.map(one, range(requests))
        submitted = http.post(f"{base}/api/values", json={"index": 77}, timeout=10)
        answers = list(flood)
    seconds = time.monotonic() - started
    assert submitted.status_code == 202, f"a submission during the flood was answered {submitted.status_code}"
    codes = {code for code, _ in answers}
    assert codes <= {200, 429}, f"GET /api/system answered {codes}"
    bodies = {body for code, body in answers if code == 200}
    counts = [(json.loads(body)["api"] or {}).get("processes") or 1 for body in bodies]
    processes = max(counts, default=1)
    made = len(bodies)
    assert made <= (seconds + 2) * processes, f"{made} answers made in {seconds:.1f} s by {processes} processes"
    print(f"hostile: {requests} GET /api/system in {seconds:.1f} s, {made} made", flush=True)


def _serve_forever() -> None:
    """Hold what was opened until stdin closes (the container checks run a holder, then another client)."""
    sys.stdin.read()


CHECKS: dict[str, Callable[[str], None]] = {
    "submit-spellings": check_every_submit_spelling_is_limited,
    "other-spellings": check_other_spellings_never_submit,
    "slow-clients": check_slow_clients_are_cut_off,
    "other-client": check_other_clients_keep_working,
    "system-flood": check_system_page_flood_is_one_read_a_second,
}


def main(argv: list[str]) -> int:
    """BASE CHECK...; or BASE hold-streams N / hold-requests N: hold them, say so, wait for stdin to close."""
    base, *names = argv
    if names and names[0] in ("hold-streams", "hold-requests"):
        hold = hold_streams if names[0] == "hold-streams" else hold_requests
        held = hold(base, int(names[1]))
        print(f"hostile: holding {len(held)} ({names[0]}); the next one was refused", flush=True)
        _serve_forever()
        return 0
    for name in names or list(CHECKS):
        CHECKS[name](base)
        print(f"hostile: {name}: passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
