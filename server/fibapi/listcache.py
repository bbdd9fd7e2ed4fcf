"""GET /api/values/current, /all and /recent from memory, until something they show changes.

Every change to what the lists show is an entry of a Redis stream: a status
change is an event (contract.EVENTS_STREAM, appended by the API when it
queues and by the worker with each result), and each committed submission
appends to contract.LISTS_CHANGES. Each API process already follows both
with one reader (events.py), which tells this cache at every entry: the kept
answers are dropped, and the next request builds them again. Until then a
request is answered from memory with no I/O at all, not even a Redis round
trip: no Postgres, no status reads, no JSON encoding, not even Flask's
routing (this is WSGI middleware in front of the Flask app).

How current an answer is:
- on the process that took a submission: at once (it drops its answers
  itself after the commit, before the 202 goes out: read your writes);
- on every other process: as soon as the stream's entry reaches it, a
  millisecond or so (server/tests/test_listcache.py holds it to 0.5 s);
- a change made behind fibstack's back (Redis flushed or edited by hand),
  which appends no entry: within MAX_AGE_SECONDS;
- while the reader is not in step with Redis (starting, or Redis lost),
  nothing is kept: every request builds its answer, as without this cache.

One build per list at a time: while a request builds a list, others for it
wait and take its answer (gevent greenlets; a list is built in a few ms). A
build that a change overtook is answered but not kept. The ETag is a hash of
the body, so a browser revalidating (Cache-Control: no-cache) gets a
bodiless 304 from any replica while the content is the same.

Anything else (another path or method) goes to the Flask app as before.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .metrics import ROUTE_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .events import Broadcaster

PATHS = frozenset({"/api/values/current", "/api/values/all", "/api/values/recent"})

# A kept answer is rebuilt at least this often, whatever the streams say: it
# bounds how stale a list can be after a change that appended no entry (Redis
# flushed, or an API process that died between a commit and its entry; its
# client got no 202 then).
MAX_AGE_SECONDS = 2.0


@dataclass(frozen=True)
class Kept:
    generation: int
    etag: str
    headers: list[tuple[str, str]]
    body: bytes
    built_at: float


class ListCache:
    def __init__(self, app: WSGIApplication, changes: Broadcaster) -> None:
        self.app = app
        self.changes = changes
        self._kept: dict[str, Kept] = {}
        # Bumped at every change: a kept answer counts only under the generation it was built in.
        self._generation = 0
        self._building = {path: threading.Lock() for path in PATHS}
        self._watching = False

    def invalidate(self) -> None:
        """Something the lists show changed: drop every kept answer."""
        self._generation += 1
        self._kept.clear()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in PATHS or environ["REQUEST_METHOD"] != "GET":
            return self.app(environ, start_response)
        if not self._watching:
            self._watching = True
            self.changes.watch(self.invalidate)
        kept = self._current(path)
        if kept is None:
            # One build at a time: the others wait for it, then take what it kept.
            with self._building[path]:
                kept = self._current(path)
                if kept is None:
                    return self._build(path, environ, start_response)
        environ[ROUTE_KEY] = path
        if environ.get("HTTP_IF_NONE_MATCH") == kept.etag:
            start_response("304 Not Modified", [("ETag", kept.etag), ("Cache-Control", "no-cache")])
            return []
        start_response("200 OK", kept.headers)
        return [kept.body]

    def _current(self, path: str) -> Kept | None:
        kept = self._kept.get(path)
        if kept and kept.generation == self._generation and time.monotonic() - kept.built_at < MAX_AGE_SECONDS:
            return kept
        return None

    def _build(self, path: str, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Only in step with the streams can a kept answer be trusted to be dropped in time.
        generation, in_step, built_at = self._generation, self.changes.in_step, time.monotonic()
        answered: list[tuple[str, list[tuple[str, str]]]] = []

        def hold_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            answered.append((status, headers))
            return lambda data: None  # the body is returned whole, below

        chunks = self.app(environ, hold_headers)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        status, headers = answered[0]
        if status.startswith("200 "):
            etag = f'"{hashlib.blake2b(body, digest_size=8).hexdigest()}"'
            headers = [*headers, ("ETag", etag), ("Cache-Control", "no-cache")]
            if in_step and generation == self._generation:  # no change overtook the build
                self._kept[path] = Kept(generation, etag, headers, body, built_at)
            if environ.get("HTTP_IF_NONE_MATCH") == etag:
                start_response("304 Not Modified", [("ETag", etag), ("Cache-Control", "no-cache")])
                return []
        start_response(status, headers)
        return [body]
