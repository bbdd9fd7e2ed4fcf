"""Writing results and status changes to Redis, and announcing them."""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.client import Pipeline

from . import contract


def announce(pipe: Pipeline | Redis, index: int, fields: dict[str, str]) -> None:
    """Queue an event carrying the same object as GET /api/values/{n}."""
    entry = _redis_mapping(contract.event_entry(index, fields))
    pipe.xadd(contract.EVENTS_STREAM, entry, maxlen=contract.EVENTS_MAXLEN, approximate=True)


def store_done(connection: Redis, index: int, decimal: str, compute_ms: float, ttl_seconds: int) -> dict[str, Any]:
    """Store a computed value and announce it, atomically (MULTI/EXEC)."""
    fields = contract.done_fields(decimal, compute_ms)
    with connection.pipeline(transaction=True) as pipe:
        # The value goes in first: a reader that sees "done" can always stream it.
        pipe.set(contract.decimal_key(index), decimal, ex=ttl_seconds)
        pipe.delete(contract.status_key(index))
        pipe.hset(contract.status_key(index), mapping=_redis_mapping(fields))
        # Only done results expire: with maxmemory-policy volatile-lru, Redis
        # evicts these (recomputable) keys and never the queue or pending marks.
        pipe.expire(contract.status_key(index), ttl_seconds)
        pipe.zrem(contract.PENDING_SINCE, str(index))
        announce(pipe, index, fields)
        pipe.execute()
    return contract.public_status(index, fields)


def store_failed(connection: Redis, index: int, error: str) -> None:
    fields = contract.failed_fields(error)
    with connection.pipeline(transaction=True) as pipe:
        pipe.delete(contract.status_key(index))
        pipe.hset(contract.status_key(index), mapping=_redis_mapping(fields))
        pipe.zrem(contract.PENDING_SINCE, str(index))
        announce(pipe, index, fields)
        pipe.execute()


def _redis_mapping(fields: dict[str, str]) -> dict[Any, Any]:
    # redis-py's stubs type hset's mapping with union keys, which a dict[str, str]
    # (dict keys are invariant) does not match although Redis accepts it.
    return fields
