"""GET /api/events: every status change, as Server-Sent Events.

Workers and the API append events to a capped Redis stream (contract.py). Each
API process runs one reader that follows the stream and hands each event to
every open connection, so a thousand open pages cost one Redis connection,
not a thousand. The same reader follows contract.LISTS_CHANGES, and tells
its watchers (listcache.py) at each entry of either stream that the lists
changed. Under gunicorn's gevent worker each open stream is a
greenlet waiting on a queue, which is why open streams do not hold up the
other routes (`make bench` measures it).

Each event's SSE id is its stream id: a reconnecting browser sends it back as
Last-Event-ID and first receives what it missed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request, stream_with_context
from redis import Redis
from redis.exceptions import RedisError

from . import contract, metrics
from .config import Settings

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__, url_prefix="/api")

KEEPALIVE_SECONDS = 15.0  # a comment line now and then keeps proxies from closing idle streams
RETRY_MS = 3000  # how soon browsers reconnect after the stream drops
REPLAY_LIMIT = 1000  # at most this many missed events are replayed on reconnect
SUBSCRIBER_BACKLOG = 1000  # a client this far behind is dropped and reconnects

Event = tuple[str, str]  # (stream id, JSON payload)


# The reader counts as in step with Redis while it has been able to read
# within this long (XREAD blocks for at most 5 s, its socket times out at 30 s).
IN_STEP_SECONDS = 35.0
STREAMS = (contract.EVENTS_STREAM, contract.LISTS_CHANGES)


class Broadcaster:
    """Follows the events stream and fans each event out to subscriber queues; tells watchers of every change."""

    def __init__(self, settings: Settings) -> None:
        # A client of its own: XREAD BLOCK holds its connection while it waits.
        self.redis = Redis(**settings.redis.client_kwargs(), socket_connect_timeout=2, socket_timeout=30)
        self._subscribers: set[queue.Queue[Event | None]] = set()
        self._watchers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # When the reader last issued or finished a read without an error (monotonic); None: not in step.
        self._last_read: float | None = None

    def watch(self, on_change: Callable[[], None]) -> None:
        """Call `on_change` at every entry of either stream, and whenever the reader loses Redis; follow for good."""
        with self._lock:
            self._watchers.append(on_change)
        self._ensure_following()

    @property
    def in_step(self) -> bool:
        """Whether every change so far will reach the watchers: the reader follows the streams, without a gap."""
        last = self._last_read
        return last is not None and time.monotonic() - last < IN_STEP_SECONDS

    def subscribe(self) -> queue.Queue[Event | None]:
        inbox: queue.Queue[Event | None] = queue.Queue(maxsize=SUBSCRIBER_BACKLOG)
        if self._stopping.is_set():
            # Shutting down: the stream ends at once, and the browser
            # reconnects (after RETRY_MS) to a replica that is not.
            inbox.put_nowait(None)
            return inbox
        with self._lock:
            self._subscribers.add(inbox)
        self._ensure_following()
        return inbox

    def _ensure_following(self) -> None:
        with self._lock:
            following = self._thread is not None and self._thread.is_alive()
        if following:
            return
        # Where the reader starts, fixed now, before this subscriber's
        # response goes out: an event appended after this point (its page
        # may submit at once) must reach it, however late the new reader
        # thread gets to run (a TLS handshake to Redis takes a while).
        start = {stream: self._newest_id(stream) for stream in STREAMS}
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._follow, args=(start,), name="events", daemon=True)
                self._thread.start()

    def _newest_id(self, stream: str) -> str:
        """The id of the stream's newest entry ("0-0" if none; "$" if Redis cannot say now)."""
        try:
            newest: Any = self.redis.xrevrange(stream, count=1)
        except RedisError:
            return "$"  # resolved by the reader once Redis answers; nothing can be appended meanwhile
        return str(newest[0][0].decode()) if newest else "0-0"

    def unsubscribe(self, inbox: queue.Queue[Event | None]) -> None:
        with self._lock:
            self._subscribers.discard(inbox)

    def stop(self) -> None:
        """End every open stream (on shutdown), so the server can exit promptly."""
        self._stopping.set()
        with self._lock:
            for inbox in self._subscribers:
                with contextlib.suppress(queue.Full):
                    inbox.put_nowait(None)

    def replay(self, after: str) -> list[Event]:
        """Events after the id a reconnecting client last saw."""
        entries: Any = self.redis.xrange(contract.EVENTS_STREAM, min=f"({after}", count=REPLAY_LIMIT)
        return [_event(entry) for entry in entries]

    def _follow(self, last_ids: dict[str, str]) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if not self._subscribers and not self._watchers:
                    self._thread = None
                    return
            try:
                unresolved = [stream for stream, last_id in last_ids.items() if last_id == "$"]
                if unresolved:
                    # Resolve "$" once, so nothing between two reads is skipped.
                    for stream in unresolved:
                        last_ids[stream] = self._newest_id(stream)
                    if "$" in last_ids.values():
                        time.sleep(1)
                    continue
                self._last_read = time.monotonic()
                replies: Any = self.redis.xread(dict(last_ids), block=5000, count=500)  # type: ignore[arg-type]
                self._last_read = time.monotonic()
            except RedisError as exc:
                self._last_read = None  # changes meanwhile may never be told: not in step
                self._changed()
                log.warning("events: Redis unavailable, retrying", extra={"error": str(exc)})
                time.sleep(1)
                continue
            if replies:
                self._changed()
            for stream, entries in replies or []:
                name = stream.decode()
                for entry in entries:
                    last_ids[name] = entry[0].decode()
                    if name == contract.EVENTS_STREAM:
                        self._publish(_event(entry))

    def _changed(self) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for on_change in watchers:
            on_change()

    def _publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for inbox in subscribers:
            try:
                inbox.put_nowait(event)
            except queue.Full:
                # Too slow to keep up: drop it; its browser reconnects and replays.
                self.unsubscribe(inbox)
                try:
                    inbox.get_nowait()
                    inbox.put_nowait(None)
                except (queue.Empty, queue.Full):
                    pass


def _event(entry: Any) -> Event:
    """A Redis stream entry (id, {b"data": payload}) as (id, payload)."""
    entry_id, fields = entry
    return entry_id.decode(), fields[b"data"].decode()


def format_event(event: Event) -> str:
    event_id, payload = event
    return f"id: {event_id}\nevent: status\ndata: {payload}\n\n"


def get_broadcaster() -> Broadcaster:
    broadcaster: Broadcaster = current_app.extensions["fibstack.events"]
    return broadcaster


@bp.get("/events")
def events() -> Response:
    broadcaster = get_broadcaster()
    last_event_id = request.headers.get("Last-Event-ID", "").strip()
    inbox = broadcaster.subscribe()
    # Replay after subscribing: an event arriving in between is sent twice at
    # worst (harmless: each carries the whole status), never lost.
    missed: list[Event] = []
    if last_event_id:
        try:
            missed = broadcaster.replay(last_event_id)
        except RedisError:
            missed = []  # the client refetches current state when it sees no replay
    sent = {event_id for event_id, _ in missed}

    def stream() -> Iterator[str]:
        metrics.EVENT_STREAMS.inc()
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n"
            for event in missed:
                yield format_event(event)
            while True:
                try:
                    received = inbox.get(timeout=KEEPALIVE_SECONDS)
                except queue.Empty:
                    yield ": keep-alive\n\n"
                    continue
                if received is None:
                    return
                if received[0] in sent:
                    continue
                yield format_event(received)
        finally:
            metrics.EVENT_STREAMS.dec()
            broadcaster.unsubscribe(inbox)

    return Response(
        stream_with_context(stream()),
        mimetype="text/event-stream",
        headers={
            "Cache-Control": "no-cache",
            # Tells nginx not to buffer this response (the router also says so).
            "X-Accel-Buffering": "no",
        },
    )


def init_app(app: Flask, settings: Settings) -> Broadcaster:
    broadcaster = Broadcaster(settings)
    app.extensions["fibstack.events"] = broadcaster
    app.register_blueprint(bp)
    return broadcaster
