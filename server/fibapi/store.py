"""Redis, from the API's side: the queue, the statuses and the values.

The key layout and payloads live in contract.py (shared with the worker).
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from flask import Flask, current_app
from redis import Redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.exceptions import RedisError, WatchError
from redis.retry import Retry
from rq import Callback, Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from . import contract, requestid, tracing
from .config import Settings

log = logging.getLogger(__name__)

# The longest any one Redis call of a request may take before it is given up.
REQUEST_TIMEOUT_SECONDS = 1.0

# Streaming chunk for /decimal: large enough to be fast, small enough that a
# 2 MB value never sits in memory twice per request.
CHUNK_BYTES = 64 * 1024

# At most one recomputation of a dropped value per index this often, and at
# most RECOMPUTES_MAX of them in that time overall: a client asking for the
# decimals of many dropped values cannot keep the workers busy.
RECOMPUTE_COOLDOWN_SECONDS = 30
RECOMPUTES_MAX = 20

# While RQ's queue holds at least this many jobs, the workers have work
# queued ahead of a new group anyway: its new indexes up to BATCH_INDEX_MAX
# go as one batch job (queue_index.lua), sparing RQ's bookkeeping per index.
# Larger ones stay a job each, so that two workers share them.
BATCH_QUEUE_DEPTH = 2
BATCH_INDEX_MAX = 100_000

# Indexes this process has seen pending or done, at most this many (the
# oldest forgotten first). Most submissions repeat an index, and recording
# the commands that would queue one (RQ's Job, serialised) was a fifth of a
# submission's CPU: for these it is skipped. Only a hint: the script still
# checks the status, and if the index needs a job after all (Redis lost its
# data, the job failed) it says so, and the commands go in a second round trip.
SETTLED_HINTS_MAX = 65_536

# RQ job states in which the job will still run (and so settle its index).
LIVE_JOB_STATUSES = (b"queued", b"started", b"deferred", b"scheduled")


# Queues indexes unless pending or done, as one atomic step (see
# request_computations), and a dropped value again (recompute), each only
# while there is room for new work (admission.lua, shared by both).
_ADMISSION = (
    f"local REFUSALS, REFUSALS_MAXLEN = '{contract.REFUSALS_STREAM}', {contract.REFUSALS_MAXLEN}\n"
    + Path(__file__).with_name("admission.lua").read_text()
)
# In place of an index's commands (queue_index.lua), and its answer if it needed them.
UNPREPARED = "unprepared"
QUEUE_INDEX = (
    _ADMISSION
    + f"local TIMELINE_FIELD = '{contract.TIMELINE_FIELD}'\n"
    + Path(__file__).with_name("queue_index.lua").read_text()
)
RECOMPUTE = _ADMISSION + Path(__file__).with_name("recompute.lua").read_text()


@dataclass(frozen=True, slots=True)
class Queueing:
    """An index and the commands that queue it (Store.prepare), for Store.request_computations.

    No commands for an index thought settled: they are recorded in `context`
    (the submitter's) if they are needed after all.
    """

    index: int
    commands: list[Any] | None
    context: contextvars.Context = field(default_factory=contextvars.copy_context)
    accepted: float = field(default_factory=time.time)  # Unix seconds (the system page's timelines)


@dataclass(frozen=True, slots=True)
class Queued:
    """What request_computations did with a group: each one's outcome, and each index's status after it.

    outcomes: True if queued now, False if not needed, OverCapacity if refused.
    statuses: the public status of each index of the group as the script left it.
    """

    outcomes: list[bool | OverCapacity]
    statuses: dict[int, dict[str, Any]]
    jobs: dict[int, str]  # the job each index is pending for, "" if none


class ListsChange(NamedTuple):
    """A lists-changes entry: committed indexes, and their stamps (contract.TIMELINE_FIELD, timeline.py)."""

    indexes: Sequence[int]
    timeline: str = ""


class OverCapacity(Exception):
    """New work refused for now: the reason is "queue", "memory" or "recomputes" (admission.lua)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ValueVanished(Exception):
    """The decimal value was dropped while it was being streamed."""


class Store:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Sized so a request touching a dead Redis is answered 503 within about
        # a second: short timeouts, and one immediate retry only (for a pooled
        # connection that went stale when Redis restarted), where redis-py's
        # default of three retries with back-off kept a POST waiting 5-28 s.
        self.redis = Redis(
            **settings.redis.client_kwargs(),
            socket_connect_timeout=REQUEST_TIMEOUT_SECONDS / 2,
            socket_timeout=REQUEST_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
            decode_responses=False,
            health_check_interval=30,
        )
        # JSON, never pickle: the worker refuses anything else (contract.JOB_SERIALIZER).
        self.queue = Queue(contract.QUEUE_NAME, connection=self.redis, serializer=JSONSerializer)
        self.process_id = secrets.token_hex(4)  # how this process is counted (presence.py): never its host's name
        self._queue_index = self.redis.register_script(QUEUE_INDEX)
        self._recompute = self.redis.register_script(RECOMPUTE)
        self._settled: dict[int, None] = {}  # SETTLED_HINTS_MAX; insertion order: the oldest first
        # For the readiness probe: one try, half-second
        # timeouts. The client above may take its 1 s read plus a retry, past
        # the probe's 0.8 s deadline; and /all, which needs only Postgres,
        # should not wait that long on a Redis that hangs.
        self._quick_redis = Redis(
            **settings.redis.client_kwargs(),
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )

    def ping(self) -> None:
        """Raise unless Redis answers within half a second."""
        self._quick_redis.ping()

    def request_computation(self, index: int, admit: bool = True) -> bool:
        """Queue F(index) unless it is pending or computed already; True if queued now.

        Raises OverCapacity, having written nothing, when the index is new
        and the queue or Redis's memory is past its bound (admission.lua);
        `admit=False` for work accepted before (a recorded index Redis lost).
        """
        return _or_raise(self.request_computations([self.prepare(index)], admit).outcomes[0])

    def prepare(self, index: int) -> Queueing:
        """What queues `index`, recorded in the caller's context (the job carries its request id and trace).

        Nothing yet for an index this process saw pending or done (SETTLED_HINTS_MAX).
        """
        return Queueing(index, None if index in self._settled else self._queue_commands(index))

    def _queue_commands(self, index: int) -> list[Any]:
        return self._recorded(lambda pipe: self._queue_in(pipe, index))

    def request_computations(
        self, group: list[Queueing], admit: bool = True, announce: ListsChange | None = None
    ) -> Queued:
        """Queue each of `group` unless it is pending or computed already, in one round trip.

        Check and enqueue are one Lua script (queue_index.lua), so two API
        replicas receiving the same index at once queue it only once, and a
        crash can never leave an index marked pending without a job. The
        commands it runs are RQ's own enqueue (and our pending mark),
        recorded by a pipeline that is never sent: one round trip where a
        WATCH/MULTI transaction took three or four, and the job is still
        exactly as RQ writes it. A "done" index whose value was dropped stays
        done: its status still answers every list, and /decimal recomputes
        the value. `announce`: committed indexes whose lists-changes entry
        the same round trip appends first (see announce()).
        """
        with tracing.span("fibstack.queue", **{"fibstack.indexes": len(group)}):
            outcomes, raws = self._queue_group(group, admit, announce)
            unprepared = [at for at, outcome in enumerate(outcomes) if outcome is None]
            if unprepared:
                # Thought settled but not (any more): their commands, recorded as each submitter would have.
                again = [
                    replace(q, commands=q.context.run(self._queue_commands, q.index))
                    for q in (group[at] for at in unprepared)
                ]
                again_outcomes, again_raws = self._queue_group(again, admit, None)
                for at, outcome in zip(unprepared, again_outcomes, strict=True):
                    outcomes[at] = outcome
                raws |= again_raws
        answers = [_prepared(outcome) for outcome in outcomes]
        for queueing, answer in zip(group, answers, strict=True):
            if not isinstance(answer, OverCapacity):
                self._remember_settled(queueing.index)
        statuses = {index: _public(index, raw) or contract.public_status(index, {}) for index, raw in raws.items()}
        return Queued(answers, statuses, {index: raw.get(b"job", b"").decode() for index, raw in raws.items()})

    def _queue_group(
        self, group: list[Queueing], admit: bool, announce: ListsChange | None
    ) -> tuple[list[bool | OverCapacity | None], dict[int, dict[bytes, bytes]]]:
        """One run of queue_index.lua: for each of `group` as request_computations says, or None
        if it needed queueing but came without its commands; and each index's status hash after."""
        status_keys = [contract.status_key(q.index) for q in group]
        keys = [self.queue.key, contract.VALUES_BYTES, contract.LISTS_CHANGES, *status_keys]
        marks, batch_enqueue = self._batch_of(group)
        args: list[Any] = [self.settings.admission_queue_max, self.settings.admission_memory_percent, int(admit)]
        owed = announce or ListsChange(())
        args += [BATCH_QUEUE_DEPTH if marks else 0, _joined(owed.indexes), owed.timeline, contract.LISTS_CHANGES_MAXLEN]
        for queueing in group:
            if queueing.commands is None:
                args.append(UNPREPARED)
                continue
            mark = marks.get(queueing.index)
            args += [int(mark is not None), *queueing.commands, *(mark or [])]
        args += batch_enqueue
        replies, hashes = self._queue_index(keys=keys, args=args)
        outcomes = [None if reply == UNPREPARED.encode() else self._admitted(reply) for reply in replies]
        raws = {q.index: dict(zip(flat[::2], flat[1::2], strict=True)) for q, flat in zip(group, hashes, strict=True)}
        return outcomes, raws

    def _remember_settled(self, index: int) -> None:
        self._settled.pop(index, None)
        self._settled[index] = None
        if len(self._settled) > SETTLED_HINTS_MAX:
            del self._settled[next(iter(self._settled))]

    def _batch_of(self, group: list[Queueing]) -> tuple[dict[int, list[Any]], list[Any]]:
        """For a group with two indexes or more up to BATCH_INDEX_MAX: the commands marking each
        pending for one batch job, and the batch's enqueue; nothing for any other group.

        Whether the batch is used is up to the script (the queue's depth then);
        the worker computes those of its indexes pending for it only.
        """
        batchable = list(dict.fromkeys(q.index for q in group if q.index <= BATCH_INDEX_MAX and q.commands is not None))
        if len(batchable) < 2:
            return {}, []
        batch_id = contract.new_job_id(batchable[0])
        marks = {
            index: self._recorded(partial(self._mark_pending, index=index, job_id=batch_id)) for index in batchable
        }
        enqueue = self._recorded(partial(self._enqueue, contract.BATCH_JOB_FUNCTION, batchable, batch_id))
        return marks, enqueue

    def _recorded(self, write: Callable[[Pipeline], None]) -> list[Any]:
        """The commands `write` queues on a pipeline, flattened for run_recorded (admission.lua); nothing is sent."""
        recorder = self.redis.pipeline(transaction=True)
        recorder.multi()  # as RQ expects of a caller's pipeline
        write(recorder)
        commands: list[Any] = [len(recorder.command_stack)]
        for args, _options in recorder.command_stack:
            commands += [len(args), *args]
        recorder.reset()
        return commands

    @staticmethod
    def _admitted(reply: Any) -> bool | OverCapacity:
        """A queueing script's answer: True if queued now, False if not needed, OverCapacity if refused."""
        if isinstance(reply, bytes):
            return OverCapacity(reply.decode())
        return bool(reply)

    def announce(self, change: ListsChange) -> None:
        """After submissions are committed: tell every API process its lists changed.

        Only after the commit: a process that rebuilt a list before it would
        otherwise keep showing the list without the submissions. One entry
        for a whole group: what the readers need is that something changed.
        (While submissions keep coming, the next group's queueing script
        appends it instead: request_computations' `announce`.)
        """
        try:
            self.redis.xadd(
                contract.LISTS_CHANGES,
                _lists_change_entry(change),
                maxlen=contract.LISTS_CHANGES_MAXLEN,
                approximate=True,
            )
        except RedisError as exc:
            # Recorded and queued already: still a 202 (a 503 would make the
            # client submit again). Lists elsewhere catch up within
            # listcache.MAX_AGE_SECONDS.
            log.warning(
                "submissions recorded, but Redis failed after",
                extra={"indexes": list(change.indexes), "error": str(exc)},
            )

    def _queue_in(self, pipe: Pipeline, index: int) -> None:
        """Within `pipe`'s transaction: mark `index` pending and queue a new job for it."""
        job_id = contract.new_job_id(index)
        self._mark_pending(pipe, index, job_id)  # its event tells every process its lists changed
        self._enqueue(contract.JOB_FUNCTION, index, job_id, pipe)

    def queue_batch(self, indexes: list[int]) -> int:
        """Queue those of `indexes` neither pending nor done as one job; how many (recovery, reconcile.py).

        Each is marked pending with the batch job's id, and the worker
        computes those still pending for it. WATCH makes it safe against a
        submission of one of them meanwhile: then the batch is looked at again.
        """
        keys = [contract.status_key(index) for index in indexes]
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(*keys)  # type: ignore[no-untyped-call]
                    with self.redis.pipeline(transaction=False) as read:
                        for key in keys:
                            read.hget(key, "status")
                        statuses = read.execute()
                    settled = {contract.PENDING.encode(), contract.DONE.encode()}
                    wanted = [index for index, status in zip(indexes, statuses, strict=True) if status not in settled]
                    if not wanted:
                        return 0
                    job_id = contract.new_job_id(wanted[0])
                    pipe.multi()
                    for index in wanted:
                        self._mark_pending(pipe, index, job_id)
                    self._enqueue(contract.BATCH_JOB_FUNCTION, wanted, job_id, pipe)
                    pipe.execute()
                    return len(wanted)
                except WatchError:
                    continue

    def _enqueue(self, function: str, argument: int | list[int], job_id: str, pipe: Pipeline | None = None) -> None:
        request_id = requestid.current.get()
        self.queue.enqueue_call(
            function,
            args=(argument,),
            job_id=job_id,
            timeout=self.settings.job_timeout_seconds,
            # Results live in our own keys, so RQ's may go at once. Not 0: RQ
            # then deletes the job from every registry, a dozen commands more
            # per job (bench: 172 -> 254 jobs/s with 1 s).
            result_ttl=1,
            failure_ttl=7 * 24 * 3600,
            on_failure=Callback(contract.JOB_FAILURE_CALLBACK),
            # The request's id, which the worker logs with every line about
            # this job (requestid.py), and the trace context (tracing.py).
            meta=tracing.inject({contract.JOB_META_REQUEST_ID: request_id} if request_id else {}),
            pipeline=pipe,
        )

    @staticmethod
    def _mark_pending(pipe: Pipeline, index: int, job_id: str) -> None:
        """Within `pipe`'s transaction: `index` is pending, for the job `job_id`; its event says so."""
        fields = contract.pending_fields(job_id)
        pipe.delete(contract.status_key(index))
        # No expiry: a pending mark stays while its job waits.
        pipe.hset(contract.status_key(index), mapping=_redis_mapping(fields))
        pipe.zadd(contract.PENDING_SINCE, {str(index): time.time()})
        entry = _redis_mapping(contract.event_entry(index, fields))
        pipe.xadd(contract.EVENTS_STREAM, entry, maxlen=contract.EVENTS_MAXLEN, approximate=True)

    def status(self, index: int) -> dict[str, Any] | None:
        """The public status object, or None if Redis knows nothing of index."""
        return self.statuses([index])[index]

    def statuses(self, indexes: list[int]) -> dict[int, dict[str, Any] | None]:
        with self.redis.pipeline(transaction=False) as pipe:
            for index in indexes:
                pipe.hgetall(contract.status_key(index))
            replies = pipe.execute()
        return {index: _public(index, raw) for index, raw in zip(indexes, replies, strict=True)}

    def decimal_length(self, index: int) -> int:
        length: int = self.redis.strlen(contract.decimal_key(index))
        return length

    def touch_value(self, index: int) -> None:
        """Mark the value as just used: the worker drops the least recently used first."""
        self.redis.zadd(contract.VALUES_BY_USE, {str(index): time.time()}, xx=True)

    def stream_decimal(self, index: int, length: int) -> Iterator[bytes]:
        key = contract.decimal_key(index)
        for start in range(0, length, CHUNK_BYTES):
            chunk: Any = self.redis.getrange(key, start, min(start + CHUNK_BYTES, length) - 1)
            if not chunk:
                # Dropped mid-download: break the response rather than end it
                # cleanly, so the client sees a short body, not a wrong number.
                raise ValueVanished(index)
            yield chunk

    def recompute(self, index: int) -> bool:
        """Queue F(index) again because its value was dropped; True if queued now, OverCapacity if refused.

        Single flight with a cooldown: however many ask within
        RECOMPUTE_COOLDOWN_SECONDS, one job is queued, and at most
        RECOMPUTES_MAX indexes are in that time, all together; new work like
        any other, so refused past the admission bounds (recompute.lua). The
        status stays "done" (digits, head and tail are still right), so lists
        are unaffected.
        """
        commands = self._recorded(
            lambda pipe: self._enqueue(contract.JOB_FUNCTION, index, contract.new_job_id(index), pipe)
        )
        keys = [contract.recompute_key(index), contract.RECOMPUTES, self.queue.key, contract.VALUES_BYTES]
        bounds = [time.time(), RECOMPUTE_COOLDOWN_SECONDS, RECOMPUTES_MAX]
        bounds += [self.settings.admission_queue_max, self.settings.admission_memory_percent, index]
        if not _or_raise(self._admitted(self._recompute(keys=keys, args=[*bounds, *commands]))):
            return False
        log.info("value dropped earlier; computing it again", extra={"index": index})
        return True

    def requeue_if_stuck(self, index: int) -> bool:
        """Queue `index` again if it is pending with no live job behind it; True if it was.

        A job is behind it while RQ still holds it queued, started or deferred.
        """
        status_key = contract.status_key(index)
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(status_key)  # type: ignore[no-untyped-call]
                raw: Any = pipe.hgetall(status_key)
                fields = {key.decode(): value.decode() for key, value in raw.items()}
                if fields.get("status") != contract.PENDING:
                    pipe.multi()
                    pipe.zrem(contract.PENDING_SINCE, str(index))
                    pipe.execute()
                    return False
                job_id = fields.get("job", "")
                if job_id and pipe.hget(Job.key_for(job_id), "status") in LIVE_JOB_STATUSES:
                    return False
                pipe.multi()
                self._queue_in(pipe, index)
                pipe.execute()
            except WatchError:
                return False  # it changed meanwhile: someone is dealing with it
        log.warning("re-queued an index left pending with no job", extra={"index": index, "lost_job": job_id})
        return True

    def pending_since_before(self, cutoff: float) -> list[int]:
        """Indexes marked pending before Unix time `cutoff`."""
        members: Any = self.redis.zrangebyscore(contract.PENDING_SINCE, 0, cutoff)
        return [int(member) for member in members]

    def is_reconciled(self) -> bool:
        return bool(self.redis.exists(contract.RECONCILED_MARKER))


def get_store() -> Store:
    store: Store = current_app.extensions["fibstack.store"]
    return store


def init_app(app: Flask, settings: Settings) -> Store:
    store = Store(settings)
    app.extensions["fibstack.store"] = store
    return store


def _joined(indexes: Sequence[int]) -> str:
    """A lists-changes entry's `indexes` field: the distinct ones, comma-separated."""
    return ",".join(map(str, dict.fromkeys(indexes)))


def _lists_change_entry(change: ListsChange) -> dict[Any, Any]:
    entry = {"indexes": _joined(change.indexes)}
    if change.timeline:
        entry[contract.TIMELINE_FIELD] = change.timeline
    return entry


def _prepared(outcome: bool | OverCapacity | None) -> bool | OverCapacity:
    if outcome is None:  # queue_index.lua's second run always has the commands
        raise RuntimeError("an index was still without its commands")
    return outcome


def _or_raise(outcome: bool | OverCapacity) -> bool:
    """A queueing script's answer for one index, a refusal raised."""
    if isinstance(outcome, OverCapacity):
        raise outcome
    return outcome


def _public(index: int, raw: dict[bytes, bytes]) -> dict[str, Any] | None:
    """The public status from a status hash as Redis returns it; None if there is none."""
    if not raw:
        return None
    return contract.public_status(index, {key.decode(): value.decode() for key, value in raw.items()})


def _redis_mapping(fields: dict[str, str]) -> dict[Any, Any]:
    # redis-py's stubs type hset's mapping with union keys, which a dict[str, str]
    # (dict keys are invariant) does not match although Redis accepts it.
    return fields
