"""A zero-timeout select.poll() under gevent that asks the OS, not the event loop.

redis-py (8.x) checks, each time it takes a connection from its pool, that
nothing unread is waiting on it: `select.poll()` with a timeout of 0
(redis/_parsers/hiredis.py, _socket_can_read and _socket_is_closed). Under
gevent's monkey-patching that poll is gevent's cooperative one, which for any
timeout, 0 included, starts an io watcher per descriptor and waits on an
Event, which means a round trip through the hub: a greenlet switch and a
timer. Profiled (cProfile, 20,000 GETs on one connection): about 60 µs of a
GET's 115 µs of CPU, where redis-py 5.x, whose check was a non-blocking
recv, spent 50 µs on the whole call.

A poll with a timeout of 0 never blocks, so the operating system's own
poll() answers it at once and no other greenlet can be held up by it. So
here, poll(0) goes to the OS; any other timeout still waits cooperatively,
exactly as before. Same answers (POLLIN, POLLHUP, POLLNVAL for a closed
descriptor), as tests/test_gevent_poll.py checks. This is the change we would
make upstream in gevent's select.poll.poll; until then it is applied in each
gevent worker of the API (fibapi/gunicorn_worker.py), after gevent's own
patching.
"""

from __future__ import annotations

import select
from typing import Any

from gevent import monkey
from gevent import select as green_select

_os_poll = monkey.get_original("select", "poll")


class Poll(green_select.poll):  # type: ignore[misc]  # gevent ships no type hints
    """gevent's select.poll, answering a zero timeout from the OS."""

    def poll(self, timeout: float | None = None) -> Any:
        if timeout == 0:
            poller = _os_poll()
            for fd, flags in self.fds.items():
                poller.register(fd, flags)
            return poller.poll(0)
        return super().poll(timeout)


def apply() -> None:
    """Make select.poll this Poll (after gevent's monkey-patching, which made it gevent's)."""
    select.poll = Poll  # type: ignore[misc]
