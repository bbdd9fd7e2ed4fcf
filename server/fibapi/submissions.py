"""Accepting a submission: queued in Redis, recorded in Postgres, announced; in groups.

Concurrent submissions to one API process share each step (groupcommit.py):
one queueing script for the whole group (admission still index by index,
queue_index.lua; it also answers each index's status), one INSERT of all its
rows (Database.record_submissions), committed once, and one lists-changes
entry to tell the other API processes. Each caller's 202 is still sent only
after its own index is queued and its row committed; a refused index is
neither queued nor recorded.

The entry goes out after the commit (a process that rebuilt its lists before
it would keep them without the new rows). When more submissions are already
waiting, the next group's queueing script, which starts at once, appends it
first: one round trip fewer per group under load. A lone group appends it
itself. Either way before this process takes anything else, and this
process's own kept lists are dropped before the 202s (read your writes).

The order of each write is the one a single submission always had: a working
Postgres connection first, then queue, then record. If Redis fails, nothing
is recorded (503); if Postgres fails after all, the indexes are computed but
not listed, which is harmless. Never the other way round: a recorded index
that was never queued would show "Nothing yet!" for ever.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from flask import Flask, current_app

from . import metrics, timeline, tracing
from .db import get_db
from .groupcommit import GroupCommit
from .store import ListsChange, OverCapacity, Queueing, get_store


class Accepted(NamedTuple):
    queued: bool  # False: pending or computed already (deduplicated)
    status: dict[str, Any]


class Submissions:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.group_commit: GroupCommit[Queueing, Accepted] = GroupCommit(self._write)
        # Committed, lists-changes entry not appended yet: the next group's script appends it.
        self._owed: ListsChange | None = None

    def submit(self, index: int) -> Accepted:
        """Queue and record one submission of `index`; OverCapacity if refused, as it was alone."""
        # Recorded here, in the submitter's context: its job carries its own
        # request id, and its trace continues under this span, whichever
        # request writes the group (fibstack.queue is that write's).
        with tracing.span("fibstack.submission", **{"fibstack.index": index}):
            return self.group_commit(get_store().prepare(index))

    def _write(self, group: list[Queueing]) -> list[Accepted | Exception]:
        store, database = get_store(), get_db()
        metrics.submission_group(len(group))
        owed, self._owed = self._owed, None
        try:
            with database.connection() as conn:
                queued = store.request_computations(group, announce=owed)
                queued_at = time.time()
                owed = None
                accepted = [
                    queueing.index
                    for queueing, outcome in zip(group, queued.outcomes, strict=True)
                    if not isinstance(outcome, OverCapacity)
                ]
                if accepted:
                    database.record_submissions(conn, accepted)
        finally:
            if owed:  # this group's script never ran
                store.announce(owed)
        if accepted:
            # Committed: this process's kept lists go at once (read your writes).
            self.app.extensions["fibstack.listcache"].invalidate()
            change = ListsChange(accepted, timeline.stamps(group, queued, queued_at, time.time()))
            if self.group_commit.waiting():
                self._owed = change  # the next write starts as this one returns
            else:
                store.announce(change)
        return [
            outcome if isinstance(outcome, OverCapacity) else Accepted(outcome, queued.statuses[queueing.index])
            for queueing, outcome in zip(group, queued.outcomes, strict=True)
        ]


def get_submissions() -> Submissions:
    submissions: Submissions = current_app.extensions["fibstack.submissions"]
    return submissions


def init_app(app: Flask) -> Submissions:
    submissions = Submissions(app)
    app.extensions["fibstack.submissions"] = submissions
    return submissions
