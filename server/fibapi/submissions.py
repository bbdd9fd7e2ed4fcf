"""Accepting a submission: queued in Redis, recorded in Postgres, announced; in groups.

Concurrent submissions to one API process share each step (groupcommit.py):
one queueing script for the whole group (admission still index by index,
queue_index.lua), one INSERT of all its rows (Database.record_submissions),
committed once, and one round trip to announce it and read the statuses.
Each caller's 202 is still sent only after its own index is queued and its
row committed; a refused index is neither queued nor recorded.

The order of each write is the one a single submission always had: a working
Postgres connection first, then queue, then record. If Redis fails, nothing
is recorded (503); if Postgres fails after all, the indexes are computed but
not listed, which is harmless. Never the other way round: a recorded index
that was never queued would show "Nothing yet!" for ever.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flask import Flask, current_app

from . import metrics, tracing
from .db import get_db
from .groupcommit import GroupCommit
from .store import OverCapacity, Queueing, get_store


class Accepted(NamedTuple):
    queued: bool  # False: pending or computed already (deduplicated)
    status: dict[str, Any]


class Submissions:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.group_commit: GroupCommit[Queueing, Accepted] = GroupCommit(self._write)

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
        with database.connection() as conn:
            outcomes = store.request_computations(group)
            accepted = [
                queueing.index
                for queueing, outcome in zip(group, outcomes, strict=True)
                if not isinstance(outcome, OverCapacity)
            ]
            if accepted:
                database.record_submissions(conn, accepted)
        statuses = {}
        if accepted:
            # Committed: this process's kept lists go at once (read your writes);
            # the others' when the entry that submitted() appends reaches them.
            self.app.extensions["fibstack.listcache"].invalidate()
            statuses = store.submitted(accepted)
        return [
            outcome if isinstance(outcome, OverCapacity) else Accepted(outcome, statuses[queueing.index])
            for queueing, outcome in zip(group, outcomes, strict=True)
        ]


def get_submissions() -> Submissions:
    submissions: Submissions = current_app.extensions["fibstack.submissions"]
    return submissions


def init_app(app: Flask) -> Submissions:
    submissions = Submissions(app)
    app.extensions["fibstack.submissions"] = submissions
    return submissions
