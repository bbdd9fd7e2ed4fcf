"""Queueing jobs for indexes Postgres has recorded pending: submissions, the reconcile pass, recomputations.

Postgres decides which indexes need a job (db.record_submissions: only the
statement that inserts an index, or turns it from failed to pending,
queues it) and records the job's id first; this module then puts the job in
RQ's queue, all of a group's in one Lua script (queue.lua) that applies
admission (admission.lua) job by job. RQ's own enqueue is recorded by a
pipeline that is never sent and run by the script: the job is exactly as RQ
writes it, in one round trip.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from redis.client import Pipeline
from rq import Callback

from . import contract, requestid, tracing
from .errors import OverCapacity
from .store import Store

log = logging.getLogger(__name__)

# At most one recomputation of a dropped value per index this often, and at
# most RECOMPUTES_MAX of them in that time overall: a client asking for the
# decimals of many dropped values cannot keep the workers busy.
RECOMPUTE_COOLDOWN_SECONDS = 30
RECOMPUTES_MAX = 20

# While RQ's queue holds at least this many jobs, the workers have work
# queued ahead of a new group anyway: its new indexes up to BATCH_INDEX_MAX
# go as one batch job, sparing RQ's bookkeeping per index. Larger ones stay
# a job each, so that two workers share them.
BATCH_QUEUE_DEPTH = 2
BATCH_INDEX_MAX = 100_000


@dataclass(frozen=True, slots=True)
class Job:
    """One job to queue: its id, its indexes, and whose request it is queued in.

    A batch (contract.BATCH_JOB_FUNCTION) computes those of its indexes
    Postgres still has pending for its id; any other job computes its one index.
    """

    job_id: str
    indexes: Sequence[int]
    batch: bool = False
    # The cached statuses to drop as it is queued: those of indexes queued again after they failed.
    uncache: Sequence[int] = ()
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


class ListsChange(NamedTuple):
    """A lists-changes entry: committed indexes, and their stamps (contract.TIMELINE_FIELD, timeline.py)."""

    indexes: Sequence[int]
    timeline: str = ""


def job_ids(store: Store, indexes: Sequence[int]) -> tuple[dict[int, str], str]:
    """A fresh job id for each distinct index of a group, for Postgres to record with those it queues;
    and the batch's id ("" if none), which the small ones share at a deep queue (BATCH_QUEUE_DEPTH)."""
    distinct = list(dict.fromkeys(indexes))
    ids = {index: contract.new_job_id(index) for index in distinct}
    small = [index for index in distinct if index <= BATCH_INDEX_MAX]
    if store.queue_depth < BATCH_QUEUE_DEPTH or len(small) < 2:
        return ids, ""
    batch_id = contract.new_job_id(small[0])
    return ids | dict.fromkeys(small, batch_id), batch_id


def jobs_for(
    queued: Sequence[tuple[int, str, bool]], batch_id: str, context: Callable[[int], contextvars.Context]
) -> list[Job]:
    """The jobs that queue `queued` (index, job id, queued again after failing), as Postgres recorded them:
    one per index, but one for all of those sharing `batch_id`; each in the context `context` gives its index."""
    jobs: list[Job] = []
    batched = [(index, again) for index, job_id, again in queued if batch_id and job_id == batch_id]
    for index, job_id, again in queued:
        if not (batch_id and job_id == batch_id):
            jobs.append(Job(job_id, [index], uncache=[index] if again else [], context=context(index)))
    if batched:
        indexes = [index for index, _ in batched]
        uncache = [index for index, again in batched if again]
        jobs.append(Job(batch_id, indexes, batch=True, uncache=uncache, context=context(indexes[0])))
    return jobs


def queue(
    store: Store, jobs: Sequence[Job], admit: bool = True, change: ListsChange | None = None
) -> list[bool | OverCapacity]:
    """Put each of `jobs` in RQ's queue, in one round trip; for each, True, or OverCapacity if refused.

    `change`: the group's lists-changes entry, appended by the same script
    unless a job is refused (then the caller appends it once the refused
    rows are undone). `admit=False` for work accepted before (the reconcile pass).
    """
    change = change or ListsChange(())
    rest: list[Any] = []
    for job in jobs:
        rest += [len(job.uncache), *(contract.status_key(index) for index in job.uncache)]
        rest += job.context.run(_recorded, store, lambda pipe, job=job: _queue_in(store, pipe, job))  # type: ignore[misc]
    with tracing.span("fibstack.queue", **{"fibstack.jobs": len(jobs)}):
        answers, depth = store.queue_script(
            keys={
                "queue": store.queue.key,
                "cache_bytes": contract.CACHE_BYTES,
                "lists_changes": contract.LISTS_CHANGES,
                "cache_by_use": contract.CACHE_BY_USE,
                "cache_sizes": contract.CACHE_SIZES,
            },
            args={
                "queue_max": store.settings.admission_queue_max,
                "memory_percent": store.settings.admission_memory_percent,
                "admit": int(admit),
                "entry_indexes": joined(change.indexes),
                "entry_timeline": change.timeline,
                "entry_maxlen": contract.LISTS_CHANGES_MAXLEN,
                "jobs": len(jobs),
            },
            rest=rest,
        )
    store.queue_depth = int(depth)
    return [OverCapacity(answer.decode()) if isinstance(answer, bytes) else True for answer in answers]


def announce(store: Store, change: ListsChange) -> None:
    """Tell every API process its lists changed (after a commit), when the queueing script could not."""
    entry: dict[Any, Any] = {"indexes": joined(change.indexes)}
    if change.timeline:
        entry[contract.TIMELINE_FIELD] = change.timeline
    store.redis.xadd(contract.LISTS_CHANGES, entry, maxlen=contract.LISTS_CHANGES_MAXLEN, approximate=True)


def recompute(store: Store, index: int) -> bool:
    """Queue F(index) again because its value was dropped from the cache; True if queued now.

    Single flight with a cooldown: however many ask within
    RECOMPUTE_COOLDOWN_SECONDS, one job is queued, and at most
    RECOMPUTES_MAX indexes are in that time, all together; new work like
    any other, so refused past the admission bounds (OverCapacity;
    recompute.lua). Its status stays "done" in Postgres: the worker records
    the same result again, and caches the value.
    """
    job = Job(contract.new_job_id(index), [index])
    commands = _recorded(store, lambda pipe: _enqueue(store, pipe, job))
    answer = store.recompute_script(
        keys={
            "flight": contract.recompute_key(index),
            "recomputes": contract.RECOMPUTES,
            "queue": store.queue.key,
            "cache_bytes": contract.CACHE_BYTES,
        },
        args={
            "now": time.time(),
            "window": RECOMPUTE_COOLDOWN_SECONDS,
            "recomputes_max": RECOMPUTES_MAX,
            "queue_max": store.settings.admission_queue_max,
            "memory_percent": store.settings.admission_memory_percent,
            "index": index,
        },
        rest=commands,
    )
    if isinstance(answer, bytes):
        raise OverCapacity(answer.decode())
    if answer:
        log.info("value dropped from the cache; computing it again", extra={"index": index})
    return bool(answer)


def joined(indexes: Sequence[int]) -> str:
    """A lists-changes entry's `indexes` field: the distinct ones, comma-separated."""
    return ",".join(map(str, dict.fromkeys(indexes)))


def _queue_in(store: Store, pipe: Pipeline, job: Job) -> None:
    """Within `pipe`'s transaction: RQ's enqueue of `job`, and a pending event for each of its indexes."""
    _enqueue(store, pipe, job)
    fields = contract.pending_fields(job.job_id)
    for index in job.indexes:
        entry: dict[Any, Any] = contract.event_entry(index, fields)
        pipe.xadd(contract.EVENTS_STREAM, entry, maxlen=contract.EVENTS_MAXLEN, approximate=True)


def _enqueue(store: Store, pipe: Pipeline, job: Job) -> None:
    request_id = requestid.current.get()
    store.queue.enqueue_call(
        contract.BATCH_JOB_FUNCTION if job.batch else contract.JOB_FUNCTION,
        args=(list(job.indexes) if job.batch else job.indexes[0],),
        job_id=job.job_id,
        timeout=store.settings.job_timeout_seconds,
        # Results live in Postgres and the cache, so RQ's may go at once. Not
        # 0: RQ then deletes the job from every registry, a dozen commands
        # more per job (bench: 172 -> 254 jobs/s with 1 s).
        result_ttl=1,
        failure_ttl=7 * 24 * 3600,
        on_failure=Callback(contract.JOB_FAILURE_CALLBACK),
        # The request's id, which the worker logs with every line about
        # this job (requestid.py), and the trace context (tracing.py).
        meta=tracing.inject({contract.JOB_META_REQUEST_ID: request_id} if request_id else {}),
        pipeline=pipe,
    )


def _recorded(store: Store, write: Callable[[Pipeline], None]) -> list[Any]:
    """The commands `write` queues on a pipeline, flattened for run_recorded (admission.lua); nothing is sent."""
    recorder = store.redis.pipeline(transaction=True)
    recorder.multi()  # as RQ expects of a caller's pipeline
    write(recorder)
    commands: list[Any] = [len(recorder.command_stack)]
    for args, _options in recorder.command_stack:
        commands += [len(args), *args]
    recorder.reset()
    return commands
