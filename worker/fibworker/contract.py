"""The contract between the API (server/) and the worker (worker/).

Each image carries its own copy of this file (server/fibapi/contract.py and
worker/fibworker/contract.py), because each service is built from its own
folder. tests/test_contract.py fails when the two copies differ, so edit one and
copy it over. docs/contract.md explains the data flow in prose.

Only the standard library is imported here, so both services can load it.
Postgres holds each index's state; Redis the queue, the event streams and a
cache of statuses and values (docs/state.md).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any, Final

# Bump the version when a key layout or payload changes incompatibly, so that
# old and new services never read each other's data by mistake.
# v2: statuses in Redis are a cache of Postgres's (done or failed only), within
# the cache's budget; v1 kept every status there, pending ones included, for good.
PREFIX: Final = "fib:v2"
# Keys of an older version, which the API removes (reconcile.py): nothing reads them.
OLD_PREFIXES: Final = ("fib:v1",)

# The database's schema this version needs (server/fibapi/migrations/: the
# number of the newest file). The API and the worker check for it before
# they serve, and say to run the migration step if the database is older.
SCHEMA_VERSION: Final = 2

# RQ queue and job. The API enqueues by dotted path so it never imports the worker.
QUEUE_NAME: Final = "fib"
JOB_FUNCTION: Final = "fibworker.jobs.compute_fibonacci"
JOB_FAILURE_CALLBACK: Final = "fibworker.jobs.record_failure"
# One job for many indexes, each recorded pending in Postgres with that job's
# id: how the API queues a group of small new indexes at a deep queue
# (queueing.py), and re-queues those Redis lost (reconcile.py), so that a
# recovery is a few hundred jobs, not one per index.
BATCH_JOB_FUNCTION: Final = "fibworker.jobs.compute_batch"
# The only functions a worker runs (fibworker/jobqueue.py refuses any other).
JOB_FUNCTIONS: Final = (JOB_FUNCTION, BATCH_JOB_FUNCTION)
# Jobs are written with RQ's JSONSerializer, never pickled: a worker that
# unpickled what it found in Redis would run whatever was put there.
JOB_SERIALIZER: Final = "rq.serializers.JSONSerializer"
# In a job's RQ meta: the X-Request-ID of the request that queued it, which
# the worker adds to its log lines about the job.
JOB_META_REQUEST_ID: Final = "request_id"

# Values with more digits than this are never sent whole in JSON or events;
# clients get head/tail/digits and download the rest from /decimal.
SHORT_VALUE_MAX_DIGITS: Final = 1000
HEAD_TAIL_DIGITS: Final = 20

# The events stream is capped (approximately) so it never grows without bound.
EVENTS_STREAM: Final = f"{PREFIX}:events"
EVENTS_MAXLEN: Final = 10_000

PENDING: Final = "pending"
DONE: Final = "done"
FAILED: Final = "failed"
STATUSES: Final = (PENDING, DONE, FAILED)

NOTHING_YET: Final = "Nothing yet!"  # the course's display string for a pending index


def new_job_id(index: int) -> str:
    """A fresh RQ job id for each attempt at an index.

    Never one id per index: RQ deletes a finished job's hash after the job has
    already written its result, so the next attempt at the same index, if it
    reused the id, could have its own hash deleted and stay pending for ever.
    That an index is queued only once is the status hash's job (the API checks
    and queues in one atomic step), not the id's.
    """
    return f"fib-{index}-{secrets.token_hex(6)}"


def index_of_job(job_id: str) -> int:
    """The index a job id (from new_job_id) names: a batch's first."""
    return int(job_id.split("-")[1])


def status_key(index: int) -> str:
    """Cached hash with the fields listed in STATUS_FIELDS, of a done or failed index (never a pending one)."""
    return f"{PREFIX}:status:{index}"


def decimal_key(index: int) -> str:
    """Cached string with the whole decimal value, if over SHORT_VALUE_MAX_DIGITS (a shorter one is in its status)."""
    return f"{PREFIX}:decimal:{index}"


# The cache (cache.lua; statuses and values alike): a sorted set of its keys,
# scored by last use (Unix seconds), each one's size (a hash: the memory its
# key takes by MEMORY USAGE, plus CACHE_ENTRY_OVERHEAD_BYTES for these
# records of it), and their total. Kept within what Redis's maxmemory leaves
# once everything else is counted, dropping the least recently used; Redis
# itself evicts nothing (maxmemory-policy noeviction), so the queue and RQ's
# own keys are never at risk. The API's admission bound (admission.lua)
# counts everything but the cache.
CACHE_BY_USE: Final = f"{PREFIX}:cache-by-use"
CACHE_SIZES: Final = f"{PREFIX}:cache-sizes"
CACHE_BYTES: Final = f"{PREFIX}:cache-bytes"
CACHE_ENTRY_OVERHEAD_BYTES: Final = 128
# What the cache leaves free of Redis's maxmemory: room for the results of
# the work already accepted (the API stops accepting new work well before,
# ADMISSION_MEMORY_PERCENT), RQ's own writes, a value's copy in flight (a
# transaction holds it until it runs), and clients' buffers. Without a
# maxmemory, Redis would grow until the machine ran out: the cache then
# takes at most CACHE_BYTES_WITHOUT_MAXMEMORY.
CACHE_RESERVE_PERCENT: Final = 10
CACHE_RESERVE_MIN_BYTES: Final = 8 * 1024 * 1024
CACHE_BYTES_WITHOUT_MAXMEMORY: Final = 128 * 1024 * 1024


# The modes of an entry put by cache.lua (see there).
CACHE_STRING: Final = "string"
CACHE_HASH: Final = "hash"
CACHE_HASH_IF_ABSENT: Final = "hash-if-absent"


def cache_put(
    entries: list[tuple[str, str, list[str]]], now: float, cap_bytes: int = 0
) -> tuple[list[str], list[str | int | float]]:
    """KEYS and ARGV for cache.lua putting `entries` (mode, key, its value or fields and values, flat)."""
    keys = [CACHE_BY_USE, CACHE_SIZES, CACHE_BYTES]
    args: list[str | int | float] = [now, cap_bytes, CACHE_RESERVE_PERCENT, CACHE_RESERVE_MIN_BYTES]
    args += [CACHE_BYTES_WITHOUT_MAXMEMORY, CACHE_ENTRY_OVERHEAD_BYTES]
    for mode, key, payload in entries:
        keys.append(key)
        args += [mode, len(payload), *payload]
    return keys, args


def status_entry(index: int, fields: Mapping[str, str], mode: str = CACHE_HASH) -> tuple[str, str, list[str]]:
    """A cache.lua entry caching the status hash of a done or failed index."""
    return mode, status_key(index), [item for pair in fields.items() for item in pair]


def recompute_key(index: int) -> str:
    """Present while a dropped value's recomputation is queued (single flight, with a cooldown)."""
    return f"{PREFIX}:recompute:{index}"


# Sorted set: the indexes recomputed lately (scored by when), bounding how
# many dropped values are computed again in a while, all together.
RECOMPUTES: Final = f"{PREFIX}:recomputes"


# What the lists show (GET /api/values/current, /all, /recent: read from
# Postgres) changes with every entry of EVENTS_STREAM (a status changed) and
# every entry of this one: the API appends one after each group of
# submissions is committed (a new row in /all, a new order in /current), even
# for an index known already. Each API process follows both streams and
# drops the lists it keeps in memory at each entry (fibapi/listcache.py), so
# it answers them without asking Postgres again.
LISTS_CHANGES: Final = f"{PREFIX}:lists-changes"
LISTS_CHANGES_MAXLEN: Final = 1000

# The system page's timelines of the last few submissions (GET /api/system),
# from stamps the services add to entries they append anyway: no submission
# pays a write of its own for them. In a LISTS_CHANGES entry, field
# TIMELINE_FIELD is JSON {"committed": ms, "queued": ms, "submissions":
# [[index, accepted ms, state, job id], ...]} for the last TIMELINE_MAX
# accepted submissions of its group; state is "queued" (queued now),
# "pending" (queued by an earlier submission) or "done"/"failed" (computed
# before); the job id is the job that computes it ("" if none). In an
# EVENTS_STREAM entry of a computation that ended, beside "data": the job
# that ran it and when the computation started and ended (EVENT_STAMPS).
# Times are Unix milliseconds, each by the clock of the process stamping it.
TIMELINE_FIELD: Final = "timeline"
TIMELINE_MAX: Final = 8
EVENT_STAMPS: Final = ("job", "started", "done")


# Capped stream: one entry per piece of new work admission control refused
# (field "reason": "queue" or "memory"), appended by the refusing script
# itself (the API's admission.lua), so accepted work pays nothing for it.
# GET /api/system counts the recent ones.
REFUSALS_STREAM: Final = f"{PREFIX}:refusals"
REFUSALS_MAXLEN: Final = 1000


# Sorted set: each API process (a random id, never a hostname), scored by
# when it last said it was alive (Unix seconds), three times in each
# API_ALIVE_SECONDS (the API's presence.py); a process that exits cleanly
# takes itself out. GET /api/system counts those seen in the last
# API_ALIVE_SECONDS.
API_PROCESSES: Final = f"{PREFIX}:api-processes"
API_ALIVE_SECONDS: Final = 30


def worker_alive_key(worker_name: str) -> str:
    """Short-lived key a worker refreshes while it runs (see fibworker.liveness)."""
    return f"{PREFIX}:worker-alive:{worker_name}"


# The reconcile pass's last figures (a hash: reconcile.py writes it, GET
# /api/system shows it): "at" (Unix ms), "pending" (indexes it looked at),
# "healed" (of those, queued again), "healed_total" (since this Redis began).
RECONCILE_REPORT: Final = f"{PREFIX}:reconcile"


# Fields of the status hash. All values are strings in Redis; "" means unknown.
STATUS_FIELDS: Final = ("status", "digits", "head", "tail", "value", "compute_ms", "error")


def public_status(index: int, fields: Mapping[str, str]) -> dict[str, Any]:
    """The JSON object of GET /api/values/{n} and of every event, from the status hash."""
    digits = fields.get("digits") or ""
    compute_ms = fields.get("compute_ms") or ""
    return {
        "index": index,
        "status": fields.get("status") or PENDING,
        "digits": int(digits) if digits else None,
        "head": fields.get("head") or None,
        "tail": fields.get("tail") or None,
        "value": fields.get("value") or None,
        "compute_ms": float(compute_ms) if compute_ms else None,
        "error": fields.get("error") or None,
    }


def done_fields(decimal: str, compute_ms: float) -> dict[str, str]:
    """The status hash for a computed value (the worker writes it, the API reads it)."""
    return {
        "status": DONE,
        "digits": str(len(decimal)),
        "head": decimal[:HEAD_TAIL_DIGITS],
        "tail": decimal[-HEAD_TAIL_DIGITS:],
        "value": decimal if len(decimal) <= SHORT_VALUE_MAX_DIGITS else "",
        "compute_ms": f"{compute_ms:.3f}",
        "error": "",
    }


def pending_fields(job_id: str) -> dict[str, str]:
    """The status hash of a queued index (the API writes it), naming the job that will compute it."""
    return {name: "" for name in STATUS_FIELDS} | {"status": PENDING, "job": job_id}


def failed_fields(error: str) -> dict[str, str]:
    """The status hash of a failed computation (the worker writes it)."""
    return {name: "" for name in STATUS_FIELDS} | {"status": FAILED, "error": error[:500]}


def event_entry(
    index: int, fields: Mapping[str, str], job_id: str = "", started: float = 0.0, ended: float = 0.0
) -> dict[str, str]:
    """The fields of one entry of EVENTS_STREAM: the public status as compact JSON, and
    for a computation that ended, the job's id and when it started and `ended` (Unix seconds)."""
    entry = {"data": json.dumps(public_status(index, fields), separators=(",", ":"))}
    if job_id:
        entry |= dict(zip(EVENT_STAMPS, (job_id, f"{started * 1000:.1f}", f"{ended * 1000:.1f}"), strict=True))
    return entry


def display_string(status: Mapping[str, Any]) -> str:
    """What "Calculated values" shows for one index (GET /api/values/current)."""
    if status["status"] == DONE:
        if status["value"] is not None:
            return str(status["value"])
        return f"{status['head']}…{status['tail']} ({status['digits']:,} digits)"
    if status["status"] == FAILED:
        return f"Failed: {status['error'] or 'unknown error'}"
    return NOTHING_YET
