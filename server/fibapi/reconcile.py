"""The reconcile pass: every index Postgres has pending gets a live job, whatever Redis lost (docs/state.md).

Postgres is the truth; Redis may lose any part of what it holds (a flush, a
restart without its file, a failover to a replica that lagged, an older
snapshot, a key deleted by hand). Every RECONCILE_INTERVAL_SECONDS, one API
process at a time (a Postgres advisory lock: it holds whatever Redis loses)
walks the pending indexes by number, a page at a time, and asks RQ whether
each one's job is still live: queued (and in the queue's list, which is
what the workers take from), started by a worker that is alive, or
finished within RECORDING_SECONDS (its results being recorded: a worker
records them from a thread of its own, after RQ has called the job done). Those whose job is not
get a fresh job id in Postgres (a compare-and-set, so a result or a
submission that came meanwhile wins) and are queued again, in batch jobs,
whatever the load (they were accepted before). An index is looked at only
once it has been pending for a grace, so a submission being queued at
that moment is left to finish (RECONCILE_GRACE_SECONDS).

Each API process under gunicorn runs the loop (gunicorn.conf.py starts it).
It also removes, once, the keys an older version of fibstack left in Redis
(contract.OLD_PREFIXES), which nothing reads any more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import psycopg
import psycopg_pool
from flask import Flask
from redis.exceptions import RedisError
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.registry import FinishedJobRegistry

from . import contract, metrics, queueing
from .db import Database
from .store import Store

log = logging.getLogger(__name__)

# Any fixed 64-bit number (not the migration's): one pass at a time, over every API process.
LOCK_ID = 0x66696272636E  # "fibrcn"
# Pending indexes read from Postgres at a time.
PAGE = 1000
# A healed index's job is a batch (contract.BATCH_JOB_FUNCTION) of at most this
# many, whose indexes add up to at most BATCH_MAX_WORK: about the work of one
# F(10^7), so a batch fits the timeout of a single job.
BATCH_MAX_INDEXES = 1000
BATCH_MAX_WORK = 10_000_000
PROGRESS_EVERY = 20  # pages between two progress lines in the log
# A job RQ finished this recently is left to its worker's recorder (_recording); past it, a
# result still not in Postgres was lost with its worker, and its index is queued again.
RECORDING_SECONDS = 20
OLD_KEYS_CLEARED = f"{contract.PREFIX}:old-keys-cleared"


@dataclass(frozen=True, slots=True)
class Pass:
    """What one pass did: pending indexes looked at, how many of them were queued again, and in how long."""

    pending: int
    healed: int
    seconds: float


def batches(indexes: Iterable[int]) -> Iterator[list[int]]:
    batch: list[int] = []
    work = 0
    for index in indexes:
        if batch and (len(batch) >= BATCH_MAX_INDEXES or work + index > BATCH_MAX_WORK):
            yield batch
            batch, work = [], 0
        batch.append(index)
        work += index
    if batch:
        yield batch


def reconcile(db: Database, store: Store, grace_seconds: float | None = None) -> Pass | None:
    """One pass (see the module's text); None if another process is making one.

    `grace_seconds`: RECONCILE_GRACE_SECONDS unless given.
    """
    grace = store.settings.reconcile_grace_seconds if grace_seconds is None else grace_seconds
    with db.connection() as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,)).fetchone()
        if not (row and row[0]):
            return None
        try:
            done = _pass(conn, store, grace)
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
            except psycopg.Error:
                conn.close()  # the lock ends with its session: the pool replaces the connection
    _report(store, done)
    return done


def _pass(conn: psycopg.Connection, store: Store, grace_seconds: float) -> Pass:
    started = time.monotonic()
    in_queue = _listed(store)
    after, pending, healed, pages = -1, 0, 0, 0
    while True:
        rows = Database.pending_after(conn, after, PAGE, grace_seconds)
        if not rows:
            break
        after, pending, pages = rows[-1][0], pending + len(rows), pages + 1
        live = _live(store, {job for _, job, _ in rows if job}, in_queue)
        lost = {index: (job, age) for index, job, age in rows if job not in live}
        for batch in batches(lost):
            healed += _heal(conn, store, [(index, *lost[index]) for index in batch])
        if pages % PROGRESS_EVERY == 0:  # a long pass says how far it got
            log.info("reconciling", extra={"pending": pending, "healed": healed, "up_to_index": after})
    done = Pass(pending, healed, round(time.monotonic() - started, 3))
    if healed:
        log.warning("reconciled: queued again indexes whose jobs Redis had lost", extra=asdict(done))
    return done


def _live(store: Store, job_ids: set[str], in_queue: set[bytes]) -> set[str]:
    """Those of `job_ids` RQ will still run (or is recording): queued and in the queue's list, started by a
    worker that is alive, or finished a moment ago (its key still there, or in the finished registry)."""
    ordered = sorted(job_ids)
    with store.redis.pipeline(transaction=False) as pipe:
        for job_id in ordered:
            pipe.hmget(Job.key_for(job_id), "status", "worker_name")
        states = pipe.execute()
    started = [(job_id, worker) for job_id, (status, worker) in zip(ordered, states, strict=True)
               if status == b"started" and worker]  # fmt: skip
    with store.redis.pipeline(transaction=False) as pipe:
        for _, worker in started:
            pipe.exists(contract.worker_alive_key(worker.decode()))
        alive = dict(zip((job_id for job_id, _ in started), pipe.execute(), strict=True))
    queued = {job_id for job_id, (status, _) in zip(ordered, states, strict=True) if status == b"queued"}
    if any(job_id.encode() not in in_queue for job_id in queued):
        # Queued (or taken by a worker) since the lists were read at the pass's start: read them again.
        in_queue |= _listed(store)
    live = {job_id for job_id in queued if job_id.encode() in in_queue}
    for job_id, (status, _) in zip(ordered, states, strict=True):
        if status == b"finished" or alive.get(job_id):
            live.add(job_id)
    return live | _recording(store, [job_id for job_id in ordered if job_id not in live])


def _listed(store: Store) -> set[bytes]:
    """The job ids in RQ's queue, and in its intermediate list: taken by a worker, not yet started."""
    with store.redis.pipeline(transaction=False) as pipe:
        pipe.lrange(store.queue.key, 0, -1)
        pipe.lrange(IntermediateQueue.get_intermediate_queue_key(store.queue.key), 0, -1)
        waiting, taken = pipe.execute()
    return set(waiting) | set(taken)


def _recording(store: Store, job_ids: list[str]) -> set[str]:
    """Those of `job_ids` RQ finished within RECORDING_SECONDS: their results may still be on their way.

    A worker records a job's results in Postgres from a thread of its own,
    after RQ has called the job finished; RQ forgets a finished job a second
    later (result_ttl), but its finished registry keeps the job's id, scored
    by that second, until RQ's next clean-up.
    """
    if not job_ids:
        return set()
    registry = FinishedJobRegistry(contract.QUEUE_NAME, connection=store.redis)
    with store.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.zscore(registry.key, job_id)
        scores = pipe.execute()
    since = time.time() - RECORDING_SECONDS
    return {job_id for job_id, score in zip(job_ids, scores, strict=True) if score is not None and score >= since}


def _heal(conn: psycopg.Connection, store: Store, lost: Sequence[tuple[int, str, float]]) -> int:
    """Give `lost` (index, its job, how long pending) a fresh batch job: in Postgres, then in RQ's queue."""
    job_id = contract.new_job_id(lost[0][0])
    requeued = Database.requeue(conn, [(index, job) for index, job, _ in lost], job_id)
    if requeued:
        # Should Redis fail now, Postgres names a job RQ never had: the next pass heals them again.
        queueing.queue(store, [queueing.Job(job_id, requeued, batch=True)], admit=False)
        ages = {index: age for index, _, age in lost}
        metrics.healed([ages[index] for index in requeued])
    return len(requeued)


def _report(store: Store, done: Pass) -> None:
    """The pass's figures for the system page (contract.RECONCILE_REPORT)."""
    with store.redis.pipeline(transaction=True) as pipe:
        settings = store.settings
        # The promise the page shows: a lost job is found within a grace and an interval.
        within = settings.reconcile_grace_seconds + settings.reconcile_interval_seconds
        mapping = {"at": int(time.time() * 1000), "pending": done.pending, "healed": done.healed, "within": within}
        pipe.hset(contract.RECONCILE_REPORT, mapping=mapping)  # type: ignore[arg-type]
        pipe.hincrby(contract.RECONCILE_REPORT, "healed_total", done.healed)
        pipe.execute()


def forget_old_keys(store: Store) -> int:
    """Remove the keys older versions of fibstack left (contract.OLD_PREFIXES), once per Redis; how many."""
    if store.redis.exists(OLD_KEYS_CLEARED):
        return 0
    removed = 0
    for prefix in contract.OLD_PREFIXES:
        batch: list[bytes] = []
        for key in store.redis.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += store.redis.unlink(*batch)
                batch = []
        if batch:
            removed += store.redis.unlink(*batch)
    store.redis.set(OLD_KEYS_CLEARED, str(time.time()))
    if removed:
        log.info("removed the keys an older fibstack left in Redis", extra={"keys": removed})
    return removed


def start_background(app: Flask, interval: float) -> threading.Thread:
    """A pass now and then every `interval` seconds, for as long as the process lives."""

    def loop() -> None:
        db: Database = app.extensions["fibstack.db"]
        store: Store = app.extensions["fibstack.store"]
        while True:
            try:
                forget_old_keys(store)
                reconcile(db, store)
            except (RedisError, psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
                log.info("reconcile postponed: a backing service is down", extra={"error": str(exc)})
            except Exception:
                log.exception("reconcile failed")
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="reconcile", daemon=True)
    thread.start()
    return thread
