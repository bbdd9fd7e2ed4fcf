"""Writing results and status changes to Redis, and announcing them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from redis.client import Pipeline

from . import contract


@dataclass(frozen=True, slots=True)
class Computed:
    index: int
    decimal: str
    compute_ms: float
    started: float  # Unix seconds: when its computation began (the system page's "started")


def announce(pipe: Pipeline | Redis, index: int, fields: dict[str, str], job_id: str, started: float) -> None:
    """Queue an event carrying the same object as GET /api/values/{n} (and telling the API its lists changed).

    Stamped with the job and when its computation started and ended, for the
    system page's timelines (contract.EVENT_STAMPS): what this entry costs anyway.
    """
    entry = _redis_mapping(contract.event_entry(index, fields, job_id, started, time.time()))
    pipe.xadd(contract.EVENTS_STREAM, entry, maxlen=contract.EVENTS_MAXLEN, approximate=True)


# Stores a value and drops the least recently used ones past the budget (values.lua).
STORE_VALUE = Path(__file__).with_name("values.lua").read_text()

# What the values leave free of Redis's maxmemory: room for the results of
# the work already accepted (the API stops accepting new work well before,
# ADMISSION_MEMORY_PERCENT), RQ's own writes, a stored value's copy in flight
# (a transaction holds it until it runs), and clients' buffers. Without a
# maxmemory, Redis would grow until the machine ran out: the values then take
# at most VALUES_BYTES_WITHOUT_MAXMEMORY.
VALUES_RESERVE_PERCENT = 10
VALUES_RESERVE_MIN_BYTES = 8 * 1024 * 1024
VALUES_BYTES_WITHOUT_MAXMEMORY = 128 * 1024 * 1024


def store_done(connection: Redis, job_id: str, computed: Computed, values_max_bytes: int) -> list[int]:
    """Store a computed value and announce it, atomically (MULTI/EXEC); the indexes whose values were dropped."""
    return store_many_done(connection, job_id, [computed], values_max_bytes)


def store_many_done(connection: Redis, job_id: str, computed: list[Computed], values_max_bytes: int) -> list[int]:
    """store_done for each of `computed` (all by the job `job_id`), in one transaction: one round trip for them all."""
    with connection.pipeline(transaction=True) as pipe:
        scripts = []  # where each values.lua reply will be among the transaction's replies
        for one in computed:
            scripts.append(len(pipe.command_stack))
            _store_done_in(pipe, job_id, one, values_max_bytes)
        replies = pipe.execute()
    return [int(member) for position in scripts for member in replies[position]]


def _store_done_in(pipe: Pipeline, job_id: str, computed: Computed, values_max_bytes: int) -> None:
    index, decimal = computed.index, computed.decimal
    fields = contract.done_fields(decimal, computed.compute_ms)
    keys = [contract.decimal_key(index), contract.VALUES_BY_USE, contract.VALUES_SIZES, contract.VALUES_BYTES]
    # The value goes in first: a reader that sees "done" can always stream it.
    # EVAL, not EVALSHA: in a pipeline redis-py would ask SCRIPT EXISTS on
    # every execute, a round trip more per job; Redis caches the compiled
    # script by its hash either way.
    args = (
        decimal,
        index,
        time.time(),
        values_max_bytes,
        contract.DECIMAL_KEY_PREFIX,
        VALUES_RESERVE_PERCENT,
        VALUES_RESERVE_MIN_BYTES,
        VALUES_BYTES_WITHOUT_MAXMEMORY,
    )
    pipe.eval(STORE_VALUE, len(keys), *keys, *args)
    pipe.delete(contract.status_key(index))
    # No expiry on the small status: lists need only it, and a status that
    # could vanish made every read of the list queue its index again.
    pipe.hset(contract.status_key(index), mapping=_redis_mapping(fields))
    pipe.zrem(contract.PENDING_SINCE, str(index))
    announce(pipe, index, fields, job_id, computed.started)


def pending_for(connection: Redis, indexes: list[int], job_id: str) -> list[int]:
    """Those of `indexes` still pending for the job `job_id` (a batch skips any another job took over)."""
    with connection.pipeline(transaction=False) as pipe:
        for index in indexes:
            pipe.hmget(contract.status_key(index), "status", "job")
        replies = pipe.execute()
    wanted = [contract.PENDING.encode(), job_id.encode()]
    return [index for index, reply in zip(indexes, replies, strict=True) if reply == wanted]


def store_failed(connection: Redis, index: int, error: str, job_id: str, started: float) -> None:
    fields = contract.failed_fields(error)
    with connection.pipeline(transaction=True) as pipe:
        pipe.delete(contract.status_key(index))
        pipe.hset(contract.status_key(index), mapping=_redis_mapping(fields))
        pipe.zrem(contract.PENDING_SINCE, str(index))
        announce(pipe, index, fields, job_id, started)
        pipe.execute()


def _redis_mapping(fields: dict[str, str]) -> dict[Any, Any]:
    # redis-py's stubs type hset's mapping with union keys, which a dict[str, str]
    # (dict keys are invariant) does not match although Redis accepts it.
    return fields
