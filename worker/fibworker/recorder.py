"""Recording results: in Postgres first, then cached and announced in Redis; grouped, off the job's thread.

A job hands its results to the recorder and goes on (the worker takes its
next job). The recorder's thread writes whatever has arrived as one group:
one UPDATE and one commit in Postgres (database.record_done), then one Redis
transaction that caches the statuses and values and appends their events
(results.py). So, as with the API's group commit, a busy worker pays one
commit for many results, and a result is never announced, nor cached,
before Postgres has it.

If the worker dies with results not yet recorded, their indexes are still
pending in Postgres with no live job behind them, and the API's reconcile
pass queues them again (docs/state.md): F(n) is deterministic, so computing
it twice costs only time. While Postgres is down the recorder keeps trying,
holding at most BACKLOG_MAX results; past that a job waits for room (and
the worker's heartbeat still beats: restarting it would not bring Postgres
back).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import heartbeat, metrics, results
from .database import Database
from .results import Result

log = logging.getLogger(__name__)

# At most this many results, or this many digits, in one write (but at
# least one result): about one F(10^7), since Redis holds a transaction's
# values twice while it runs it, within the cache's reserve.
GROUP_MAX = 200
GROUP_MAX_DIGITS = 2 * 1024 * 1024
# At most this many results (or digits) waiting; a job handing in more waits.
BACKLOG_MAX = 2000
BACKLOG_MAX_DIGITS = 64 * 1024 * 1024
RETRY_MAX_SECONDS = 5.0


class Recorder:
    def __init__(
        self, database: Database, redis: Redis, cache_max_bytes: int, heartbeat_file: Path | None = None
    ) -> None:
        self.database = database
        self.redis = redis
        self.cache_max_bytes = cache_max_bytes
        self.heartbeat_file = heartbeat_file
        self._waiting: list[Result] = []
        self._digits = 0
        self._writing = False
        self._changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Record from a thread of its own from now on (until then, record() writes at once, in the caller's)."""
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def record(self, found: Sequence[Result]) -> None:
        """Record `found`: handed to the thread (waiting while the backlog is full), or written now if none runs."""
        if self._thread is None:
            self._write(list(found))
            return
        digits = sum(len(result.computed.decimal) for result in found)
        with self._changed:
            while self._waiting and self._full(len(found), digits) and self._thread.is_alive():
                self._changed.wait(timeout=1.0)
                if self.heartbeat_file:
                    heartbeat.touch(self.heartbeat_file)  # waiting for Postgres is not being stuck
            self._waiting += found
            self._digits += digits
            self._changed.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything handed in is recorded; False if that took longer than `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._waiting or self._writing:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return not (self._waiting or self._writing)
                self._changed.wait(timeout=left)
        return True

    def stop(self, timeout: float = 20.0) -> None:
        """Record what is waiting (for at most `timeout` seconds), then end the thread."""
        if not self.flush(timeout):
            log.warning("results left unrecorded at exit: the reconcile pass queues them again",
                        extra={"count": len(self._waiting)})  # fmt: skip
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _full(self, count: int, digits: int) -> bool:
        return len(self._waiting) + count > BACKLOG_MAX or self._digits + digits > BACKLOG_MAX_DIGITS

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._stopping:
                    self._changed.wait()
                if self._stopping and not self._waiting:
                    return
                group = self._take()
                self._writing = True
            try:
                self._write_until_done(group)
            except Exception:
                # Not a passing outage (those are retried): these stay pending in Postgres, without
                # a live job, and the reconcile pass queues them again.
                log.exception("results not recorded", extra={"count": len(group)})
            finally:
                with self._changed:
                    self._writing = False
                    self._changed.notify_all()

    def _take(self) -> list[Result]:
        """The oldest results waiting, up to GROUP_MAX of them or GROUP_MAX_DIGITS (at least one)."""
        size, digits = 0, 0
        for result in self._waiting:
            if size and (size >= GROUP_MAX or digits + len(result.computed.decimal) > GROUP_MAX_DIGITS):
                break
            size += 1
            digits += len(result.computed.decimal)
        group, self._waiting = self._waiting[:size], self._waiting[size:]
        self._digits -= digits
        return group

    def _write_until_done(self, group: list[Result]) -> None:
        delay, recorded = 0.1, False
        while True:
            try:
                if not recorded:
                    self.database.record_done([(r.computed.index, r.computed.fields()) for r in group])
                    recorded = True
                self._cache_and_announce(group)
                return
            except ResponseError as exc:
                # Redis answered, and refused (full of someone else's data: noeviction): trying again
                # would not help. Postgres has the results, and every read finds them there.
                log.warning("results recorded, not cached or announced: Redis refused", extra={"error": str(exc)})
                return
            except (psycopg.OperationalError, RedisConnectionError, RedisTimeoutError) as exc:
                if self._stopping:
                    log.warning("gave up recording at exit", extra={"count": len(group), "error": str(exc)})
                    return
                where = "Redis" if recorded else "Postgres"
                log.warning(f"recording results: {where} failed, retrying", extra={"error": str(exc)})
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _write(self, group: list[Result]) -> None:
        """Record `group` now, in this thread: Postgres, then Redis (raising what either raises)."""
        self.database.record_done([(r.computed.index, r.computed.fields()) for r in group])
        self._cache_and_announce(group)

    def _cache_and_announce(self, group: list[Result]) -> None:
        dropped = results.cache_and_announce_done(self.redis, group, self.cache_max_bytes)
        metrics.recorded(len(group))
        if dropped:
            log.debug("cache entries dropped to make room", extra={"keys": dropped[:20], "count": len(dropped)})


_current: Recorder | None = None


def current() -> Recorder | None:
    """The recorder this process's jobs hand their results to (install() sets it)."""
    return _current


def install(recorder: Recorder | None) -> Recorder | None:
    global _current
    _current = recorder
    return recorder
