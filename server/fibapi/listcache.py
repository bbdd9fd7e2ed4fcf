"""GET /api/values/current, /all and /recent from memory while nothing they show has changed.

Every change to what the lists show sets contract.LISTS_VERSION to a fresh
random token: the API when it queues an index and after a submission is
committed, the worker in the same transaction as a result. Each API process
keeps the last answer of each list with the token it was built under. A
request reads the token (one Redis GET, the request's only I/O) and, while it
is unchanged, gets the kept answer: no Postgres, no status reads, no JSON
encoding, not even Flask's routing (this is WSGI middleware in front of the
Flask app). The token is read on every request, so an answer is as current
as one built afresh, on every replica. It is also the answer's ETag: a
browser revalidating (Cache-Control: no-cache) gets a bodiless 304.

Anything else (another path or method, Redis unavailable) goes to the Flask
app as before; so does the request that builds a list, whose answer is kept
if it was a 200.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from .metrics import ROUTE_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .store import Store

PATHS = frozenset({"/api/values/current", "/api/values/all", "/api/values/recent"})

# A kept answer is rebuilt at least this often, whatever the token says: it
# bounds how stale a list can be if an API process died between committing a
# submission and setting the token (its client got no 202 then).
MAX_AGE_SECONDS = 2.0


@dataclass(frozen=True)
class Kept:
    version: bytes
    etag: str
    headers: list[tuple[str, str]]
    body: bytes
    built_at: float


class ListCache:
    def __init__(self, app: WSGIApplication, store: Store) -> None:
        self.app = app
        self.store = store
        self._kept: dict[str, Kept] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in PATHS or environ["REQUEST_METHOD"] != "GET":
            return self.app(environ, start_response)
        try:
            version = self.store.lists_version()
        except RedisError:
            return self.app(environ, start_response)  # /all still answers from Postgres alone
        kept = self._kept.get(path)
        if kept and kept.version == version and time.monotonic() - kept.built_at < MAX_AGE_SECONDS:
            environ[ROUTE_KEY] = path
            if environ.get("HTTP_IF_NONE_MATCH") == kept.etag:
                start_response("304 Not Modified", [("ETag", kept.etag), ("Cache-Control", "no-cache")])
                return []
            start_response("200 OK", kept.headers)
            return [kept.body]
        return self._build(path, version, environ, start_response)

    def _build(
        self, path: str, version: bytes, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        etag = f'"{version.decode()}"'
        built_at = time.monotonic()
        answered: list[tuple[str, list[tuple[str, str]]]] = []

        def keep_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            if status.startswith("200 "):
                headers = [*headers, ("ETag", etag), ("Cache-Control", "no-cache")]
            answered.append((status, headers))
            return start_response(status, headers, exc_info)

        chunks = self.app(environ, keep_headers)
        if not answered or not answered[0][0].startswith("200 "):
            return chunks
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        self._kept[path] = Kept(version, etag, answered[0][1], body, built_at)
        return [body]
