"""Group commit: concurrent callers in one process share one write.

A caller that finds no write in flight writes at once, alone: a lone
submission waits for nothing. One that arrives while a write is in flight
waits for it to end; then the first of those waiting writes for all of them
(up to MAX_GROUP), as one group, and hands on to the next waiting caller if
more arrived meanwhile. So under load each write carries what arrived
during the last one, and no timer ever delays anyone.

Each caller returns only when its own part of a write is done: the value the
write gave it, or the exception it gave it (a refusal of that one item), or
the exception the whole write raised. The leader writes in its own request;
it never waits for groups after its own.

threading's primitives, which gunicorn's gevent worker patches into gevent's:
the same code waits cooperatively there and in threads elsewhere (tests).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Bounds one write's size (one statement, one script): past it, the rest wait
# for the next write, which starts as soon as this one ends.
MAX_GROUP = 256


class _Turn(Generic[Item, Result]):
    __slots__ = ("item", "leads", "outcome", "ready")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.ready = threading.Event()
        self.leads = False
        self.outcome: Result | BaseException = RuntimeError("the write for this item never ran")


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        write: Callable[[list[Item]], list[Result | Exception]],
        max_group: int = MAX_GROUP,
    ) -> None:
        """`write` takes a group of items and returns, for each in order, its result or the exception to raise."""
        self._write = write
        self._max_group = max_group
        self._lock = threading.Lock()
        self._waiting: list[_Turn[Item, Result]] = []
        self._writing = False
        self.groups = 0  # writes so far (tests, benchmarks)

    def __call__(self, item: Item) -> Result:
        turn: _Turn[Item, Result] = _Turn(item)
        with self._lock:
            self._waiting.append(turn)
            turn.leads = not self._writing
            self._writing = True
        if not turn.leads:
            turn.ready.wait()
        if turn.leads:  # first, or handed on to by the write before
            self._lead()
        if isinstance(turn.outcome, BaseException):
            raise turn.outcome
        return turn.outcome

    def waiting(self) -> int:
        """How many callers wait for the next write (which, if any do, starts as soon as this one ends)."""
        with self._lock:
            return len(self._waiting)

    def _lead(self) -> None:
        with self._lock:
            group = self._waiting[: self._max_group]
            del self._waiting[: self._max_group]
        self.groups += 1
        outcomes: list[Result | Exception] | None = None
        try:
            outcomes = self._write([turn.item for turn in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"the write answered {len(outcomes)} of {len(group)} items")
        except Exception as exc:
            outcomes = [exc] * len(group)
        finally:
            # Also when this greenlet is killed mid-write: nobody is left waiting.
            for index, turn in enumerate(group):
                if outcomes is not None:
                    turn.outcome = outcomes[index]
                turn.leads = False
                turn.ready.set()
            self._hand_on()

    def _hand_on(self) -> None:
        with self._lock:
            if self._waiting:
                following = self._waiting[0]
                following.leads = True
                following.ready.set()
            else:
                self._writing = False
