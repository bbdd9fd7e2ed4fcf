"""Re-queue every recorded index when Redis comes back empty, and any index stuck pending.

Postgres is the durable record; Redis holds the queue and the values. If Redis
is flushed or restarts without its data, the marker key below is gone, and
the first API process to notice re-queues every recorded index (already
queued or computed ones are skipped, so running it twice is harmless).
Each API process under gunicorn checks at start-up and then every
RECONCILE_INTERVAL_SECONDS (gunicorn.conf.py starts the loop).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator

import psycopg
import psycopg_pool
from flask import Flask
from redis.exceptions import RedisError

from . import contract
from .db import Database
from .store import Store

log = logging.getLogger(__name__)

LOCK_KEY = f"{contract.PREFIX}:reconcile-lock"
LOCK_SECONDS = 300

# Recovery queues recorded indexes as batch jobs (contract.BATCH_JOB_FUNCTION)
# of at most this many, whose indexes add up to at most BATCH_MAX_WORK: about
# the work of one F(10^7), so a batch fits the timeout of a single job.
BATCH_MAX_INDEXES = 1000
BATCH_MAX_WORK = 10_000_000
PROGRESS_EVERY = 20  # batches between two progress lines in the log


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


def reconcile(db: Database, store: Store) -> int | None:
    """Re-queue recorded indexes if Redis lost them; the number queued, or None if not needed."""
    if store.is_reconciled():
        return None
    # One process does the work; the lock expires by itself if that process dies.
    if not store.redis.set(LOCK_KEY, "1", nx=True, ex=LOCK_SECONDS):
        return None
    try:
        queued = jobs = 0
        started = time.monotonic()
        with db.connection() as conn:
            for number, batch in enumerate(batches(Database.all_indexes(conn)), start=1):
                count = store.queue_batch(batch)
                queued += count
                jobs += count > 0
                if number % PROGRESS_EVERY == 0:  # a long recovery says how far it got
                    log.info("reconciling", extra={"queued": queued, "jobs": jobs, "up_to_index": batch[-1]})
        store.redis.set(contract.RECONCILED_MARKER, str(time.time()))
        log.info("reconciled", extra={"queued": queued, "jobs": jobs, "seconds": round(time.monotonic() - started, 2)})
        return queued
    finally:
        store.redis.delete(LOCK_KEY)


def sweep_stuck(store: Store, older_than_seconds: float) -> list[int]:
    """Re-queue every index pending for longer than `older_than_seconds` with no job left behind it.

    Nothing should leave one (jobs have fresh ids, and a dead worker's job is
    re-queued by the others), but a job lost any other way would otherwise
    keep its index "calculating" for ever.
    """
    cutoff = time.time() - older_than_seconds
    return [index for index in store.pending_since_before(cutoff) if store.requeue_if_stuck(index)]


def start_background(app: Flask, interval: float) -> threading.Thread:
    """Check now and then every `interval` seconds, for as long as the process lives."""

    def loop() -> None:
        db: Database = app.extensions["fibstack.db"]
        store: Store = app.extensions["fibstack.store"]
        while True:
            try:
                reconcile(db, store)
                # Longer than any job may run (it is stopped then), plus RQ's own bookkeeping.
                sweep_stuck(store, store.settings.job_timeout_seconds + 60)
            except (RedisError, psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
                log.info("reconcile postponed: a backing service is down", extra={"error": str(exc)})
            except Exception:
                log.exception("reconcile failed")
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="reconcile", daemon=True)
    thread.start()
    return thread
