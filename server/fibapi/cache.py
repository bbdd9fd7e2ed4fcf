"""Statuses and values read through Redis's cache, Postgres behind it (docs/state.md).

A done or failed status is read from the cache (fib:v2:status:{n}); one not
there is read from Postgres and put back, unless something newer was put
there meanwhile (cache.lua's hash-if-absent). A pending one is never cached:
it is always read from Postgres, so no cached "pending" can outlive its
computation. Every read marks its entries as used, so the least recently
used give way first. While Redis is down, statuses come from Postgres alone.

A value of up to contract.SHORT_VALUE_MAX_DIGITS digits is in its status;
a longer one only in the cache (fib:v2:decimal:{n}), streamed from there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from redis.exceptions import RedisError

from . import contract, metrics
from .db import Database
from .errors import ValueVanished
from .store import Store

log = logging.getLogger(__name__)

# Streaming chunk for /decimal: large enough to be fast, small enough that a
# 2 MB value never sits in memory twice per request.
CHUNK_BYTES = 64 * 1024


def statuses(store: Store, database: Database, indexes: Sequence[int]) -> dict[int, dict[str, Any] | None]:
    """The public status of each of `indexes`, or None for one never submitted: the cache first, then Postgres."""
    found: dict[int, dict[str, Any] | None] = {}
    try:
        cached = _cached_fields(store, indexes)
    except RedisError as exc:
        log.info("status cache unavailable: reading Postgres", extra={"error": str(exc)})
        cached = {}
    missed = [index for index in indexes if index not in cached]
    metrics.cache_reads(hits=len(indexes) - len(missed), misses=len(missed))
    if missed:
        with database.connection() as conn:
            states = {index: database.state(conn, index) for index in missed}
        _put_back(store, {index: fields for index, fields in states.items() if fields})
        cached |= {index: fields for index, fields in states.items() if fields}
    for index in indexes:
        fields = cached.get(index)
        found[index] = contract.public_status(index, fields) if fields else None
    return found


def status(store: Store, database: Database, index: int) -> dict[str, Any] | None:
    return statuses(store, database, [index])[index]


def _cached_fields(store: Store, indexes: Sequence[int]) -> dict[int, dict[str, str]]:
    """The cached status hashes of `indexes` (those there), each marked as just used."""
    now = time.time()
    with store.redis.pipeline(transaction=False) as pipe:
        for index in indexes:
            pipe.hgetall(contract.status_key(index))
            pipe.zadd(contract.CACHE_BY_USE, {contract.status_key(index): now}, xx=True)
        replies = pipe.execute()
    return {
        index: {key.decode(): value.decode() for key, value in raw.items()}
        for index, raw in zip(indexes, replies[::2], strict=True)
        if raw
    }


def _put_back(store: Store, states: dict[int, dict[str, str]]) -> None:
    """Cache the done and failed ones of `states` read from Postgres, unless newer ones are there already."""
    entries = [
        contract.status_entry(index, fields, contract.CACHE_HASH_IF_ABSENT)
        for index, fields in states.items()
        if fields["status"] != contract.PENDING
    ]
    if not entries:
        return
    keys, args = contract.cache_put(entries, time.time(), store.settings.cache_max_bytes)
    try:
        store.cache_script(keys=keys, args=args)
    except RedisError as exc:
        log.info("status read from Postgres, not cached", extra={"error": str(exc)})


def decimal_length(store: Store, index: int) -> int:
    """The cached value's length in digits; 0 if it is not in the cache. Marks it as just used."""
    with store.redis.pipeline(transaction=False) as pipe:
        pipe.strlen(contract.decimal_key(index))
        pipe.zadd(contract.CACHE_BY_USE, {contract.decimal_key(index): time.time()}, xx=True)
        length, _ = pipe.execute()
    return int(length)


def stream_decimal(store: Store, index: int, length: int) -> Iterator[bytes]:
    key = contract.decimal_key(index)
    for start in range(0, length, CHUNK_BYTES):
        chunk: Any = store.redis.getrange(key, start, min(start + CHUNK_BYTES, length) - 1)
        if not chunk:
            # Dropped mid-download: break the response rather than end it
            # cleanly, so the client sees a short body, not a wrong number.
            raise ValueVanished(index)
        yield chunk
