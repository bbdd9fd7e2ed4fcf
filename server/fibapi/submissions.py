"""Accepting a submission: recorded in Postgres, queued in Redis, announced; in groups (docs/state.md).

Concurrent submissions to one API process share each step (groupcommit.py):
one statement records all their rows and says which indexes need a job
(Database.record_submissions), and one script queues those jobs, applying
admission job by job, and appends the group's lists-changes entry for the
other API processes (queueing.queue). Each caller's 202 is sent only once
its row is committed and its index queued (or known). Two round trips per
group, whatever its size.

The record comes first: Postgres decides, under the row's lock, whether an
index is new, so two API processes never both queue it, and an index Redis
has forgotten is still known. If admission refuses a job, or Redis fails,
the rows of the indexes concerned are undone (Database.unrecord): a 503
records nothing. If this process dies between the two steps, an index is
left pending in Postgres with no job, and the reconcile pass queues it.
This process drops its own kept lists before the 202s (read your writes).
"""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flask import Flask, current_app
from redis.exceptions import RedisError

from . import contract, metrics, queueing, timeline, tracing
from .db import Recorded, get_db
from .errors import OverCapacity
from .groupcommit import GroupCommit
from .store import get_store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Submission:
    """One submission waiting for its group's write, in its submitter's context (its job carries its request id)."""

    index: int
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    accepted: float = field(default_factory=time.time)  # Unix seconds (the system page's timelines)


class Accepted(NamedTuple):
    queued: bool  # False: pending or computed already (deduplicated)
    status: dict[str, Any]


class Submissions:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.group_commit: GroupCommit[Submission, Accepted] = GroupCommit(self._write)

    def submit(self, index: int) -> Accepted:
        """Record and queue one submission of `index`; OverCapacity if refused, as it was alone."""
        # Made here, in the submitter's context: its job carries its own
        # request id, and its trace continues under this span, whichever
        # request writes the group.
        with tracing.span("fibstack.submission", **{"fibstack.index": index}):
            return self.group_commit(Submission(index))

    def _write(self, group: list[Submission]) -> list[Accepted | Exception]:
        store, database = get_store(), get_db()
        metrics.submission_group(len(group))
        indexes = [submission.index for submission in group]
        jobs, batch_id = queueing.job_ids(store, indexes)
        with database.connection() as conn:
            recorded = database.record_submissions(conn, indexes, jobs)
            committed_at = time.time()
            first = {s.index: s for s in reversed(group)}  # each index's first submission: its job's context
            to_queue = [(r.index, r.job, r.again) for r in recorded.values() if r.queued_now]
            queued_jobs = queueing.jobs_for(to_queue, batch_id, lambda index: first[index].context)
            change = queueing.ListsChange(indexes, timeline.stamps(group, recorded, committed_at, time.time()))
            try:
                answers = queueing.queue(store, queued_jobs, change=change)
            except RedisError:
                database.unrecord(conn, list(recorded.values()), jobs)
                raise
            refusals = {
                index: answer
                for job, answer in zip(queued_jobs, answers, strict=True)
                if isinstance(answer, OverCapacity)
                for index in job.indexes
            }
            if refusals:
                database.unrecord(conn, [recorded[index] for index in refusals], jobs)
        # Committed: this process's kept lists go at once (read your writes).
        self.app.extensions["fibstack.listcache"].invalidate()
        if refusals:
            # The script appended no entry for the group: the one for what it kept, now the rest is undone.
            kept = [s for s in group if s.index not in refusals]
            if kept:
                stamps = timeline.stamps(kept, recorded, committed_at, time.time())
                _announce(queueing.ListsChange([s.index for s in kept], stamps))
        return [refusals[s.index] if s.index in refusals else _accepted(s, first, recorded) for s in group]


def _accepted(submission: Submission, first: dict[int, Submission], recorded: dict[int, Recorded]) -> Accepted:
    """Queued if its index was queued now and this was the group's first submission of it (the others repeat it)."""
    found = recorded[submission.index]
    queued = found.queued_now and first[submission.index] is submission
    return Accepted(queued, contract.public_status(found.index, found.fields))


def _announce(change: queueing.ListsChange) -> None:
    try:
        queueing.announce(get_store(), change)
    except RedisError as exc:
        # Recorded and queued already: still a 202 (a 503 would make the
        # client submit again). Lists elsewhere catch up within
        # listcache.MAX_AGE_SECONDS.
        log.warning("submissions recorded, but Redis failed after", extra={"error": str(exc)})


def get_submissions() -> Submissions:
    submissions: Submissions = current_app.extensions["fibstack.submissions"]
    return submissions


def init_app(app: Flask) -> Submissions:
    submissions = Submissions(app)
    app.extensions["fibstack.submissions"] = submissions
    return submissions
