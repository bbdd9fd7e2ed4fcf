"""gunicorn's gevent worker: fair between keep-alive connections, and a shutdown that waits only for requests in flight.

At SIGTERM the stock worker stops accepting and waits, up to graceful_timeout,
for every connection it holds to finish. Two kinds never finish by themselves:
open event streams (a page holds one for as long as it is open, and browsers
reconnect to a stopping API until its listener closes), and idle keep-alive
connections from the router, each waiting up to `keepalive` seconds for a
next request. So a restart under load took the whole graceful timeout.

Here, at SIGTERM: every open event stream ends at once, and so does each one
opened until the listener closes (browsers resume by Last-Event-ID, on
another replica or after the restart); each keep-alive connection waiting for
a next request is closed; requests being answered finish as before; and
the worker exits as soon as they have, where the stock one looked once a
second (under load, requests are always in flight at that moment, so it
took two or three).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import gevent
import gevent.event
import gunicorn.http.wsgi
import gunicorn.util
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker as StockGeventWorker

# Connections taken from the kernel's queue at each turn of the loop. The
# stock worker takes 1 when there are several processes (to leave the next
# to another), but under load a turn of the loop serves every busy
# connection once, so a burst of new connections (the router opening 150
# more when its clients go from 50 to 200) waited 150 turns: p99 0.4-0.7 s
# where a warm router saw 40-60 ms. With 8 (bench, 2 processes, 50 -> 200
# connections through the router): p99 37-39 ms, connections still split
# 92 / 108 between the processes.
MAX_ACCEPT = 8

# How often, while draining, the worker looks whether its connections are done.
DRAIN_POLL_SECONDS = 0.05


class _Held:
    """Stands in for the socket while gunicorn writes a response's headers: keeps them."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def sendall(self, data: bytes) -> None:
        self.data += data


class Response(gunicorn.http.wsgi.Response):  # type: ignore[misc]
    """gunicorn's response, sending its headers with the first piece of the body in one write.

    gunicorn sends the headers, then each piece of the body: two system calls
    for a list answered from memory (A/B, same run: API CPU per GET 0.211 ->
    0.193 ms; POST unchanged). Held only until the end of the write that
    follows them, so nothing waits for a body that comes later (an event
    stream's headers still go out with its first write).
    """

    _headers_held = b""
    sock: Any  # gunicorn's: the client's socket

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        held, sock = _Held(), self.sock
        self.sock = held
        try:
            super().send_headers()
        finally:
            self.sock = sock
        self._headers_held = held.data

    def _emit_body(self, data: bytes) -> None:
        if not self._headers_held:
            super()._emit_body(data)
            return
        # gunicorn's own framing (chunked or not), after the headers.
        out, self._headers_held = _Held(self._headers_held), b""
        gunicorn.util.write(out, data, self.chunked)
        self.sock.sendall(out.data)

    def _send_held(self) -> None:
        if self._headers_held:
            head, self._headers_held = self._headers_held, b""
            self.sock.sendall(head)

    def write(self, arg: bytes) -> None:
        super().write(arg)
        self._send_held()  # no body went with them (HEAD, 304, an empty piece)

    def sendfile(self, respiter: Any) -> bool:
        self.send_headers()
        self._send_held()
        return bool(super().sendfile(respiter))

    def close(self) -> None:
        if not self.headers_sent:  # no write at all: the headers alone, before any last chunk
            self.send_headers()
        self._send_held()
        super().close()


class GeventWorker(StockGeventWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn.conf.py's worker_class: gunicorn's own gevent worker, shutting down promptly."""

    def patch(self) -> None:
        super().patch()  # gevent's monkey-patching
        from . import gevent_poll

        gevent_poll.apply()

    def init_process(self) -> None:
        # gunicorn.http.wsgi.create builds each request's response from this name.
        gunicorn.http.wsgi.Response = Response
        # The connections waiting for their next request, each with the
        # timeout that bounds the wait (gevent.Timeout, raising nothing).
        self._idle: dict[Any, gevent.Timeout] = {}
        super().init_process()

    @contextmanager
    def timeout_ctx(self) -> Iterator[None]:
        """What the stock worker does around reading each next request, also noting the wait as idle."""
        # Let every other connection with a request waiting go first. The
        # router sends a keep-alive connection's next request as soon as its
        # last answer is in, so under load that request is already there:
        # the read below succeeds without yielding, and the stock worker
        # served that one connection over and over while the others' requests
        # waited in the kernel (wrk, 10 connections: p50 0.3 ms, p99 1.2 s;
        # with this: p99 3.6 ms, tests/test_end_to_end.py).
        gevent.sleep(0)
        timeout = gevent.Timeout(self.cfg.keepalive, False)
        connection = gevent.getcurrent()
        with timeout:
            self._idle[connection] = timeout
            try:
                yield
            finally:
                self._idle.pop(connection, None)

    def run(self) -> None:
        """The stock worker's run (gunicorn.workers.ggevent), woken at once by SIGTERM and draining promptly."""
        self._stop_requested = gevent.event.Event()
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            server = StreamServer(
                listener, handle=partial(self.handle, listener), spawn=Pool(self.worker_connections), **ssl_args
            )
            server.max_accept = MAX_ACCEPT
            server.start()
            servers.append(server)
        while self.alive:
            self.notify()
            self._stop_requested.wait(1.0)

        for server in servers:
            server.close()  # no new connections; those in the kernel's queue are reset unread
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while any(server.pool.free_count() != server.pool.size for server in servers):
            if time.monotonic() > deadline:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                for server in servers:
                    server.stop(timeout=1)
                return
            # Any connection that went idle, or opened a stream, meanwhile.
            self._end_what_would_hold_shutdown()
            self.notify()
            gevent.sleep(DRAIN_POLL_SECONDS)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)  # self.alive = False
        if hasattr(self, "_stop_requested"):
            self._stop_requested.set()
        gevent.spawn(self._end_what_would_hold_shutdown)

    def _end_what_would_hold_shutdown(self) -> None:
        events = getattr(self.wsgi, "extensions", {}).get("fibstack.events")  # none in a bare app (make bench)
        if events:
            events.stop()
        loop = gevent.get_hub().loop
        for connection, timeout in list(self._idle.items()):
            loop.run_callback(self._expire, connection, timeout)

    def _expire(self, connection: Any, timeout: gevent.Timeout) -> None:
        """In the hub: end a connection's wait for its next request, as its keep-alive timeout would.

        The stock worker then closes the connection. Only if it is still
        waiting: one answering a request by now is left to finish. A request
        that was just arriving is dropped unread, so nothing of it was done
        (the router answers 502, or tries another replica for a GET).
        """
        if self._idle.get(connection) is timeout:
            connection.throw(timeout)
