"""The Redis side of a recorded result: its cached status (and value), and its event.

Only ever after Postgres has it (recorder.py): the cache and the events are
copies of what Postgres says, never the other way round.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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

    def fields(self) -> dict[str, str]:
        """Its status hash (contract.done_fields), as Postgres records it and the cache keeps it."""
        return contract.done_fields(self.decimal, self.compute_ms)


@dataclass(frozen=True, slots=True)
class Result:
    """A computation and the job that made it, as the recorder takes it."""

    job_id: str
    computed: Computed


# Puts entries into the cache and keeps it within its budget (cache.lua; the API carries a copy).
CACHE_PUT = Path(__file__).with_name("cache.lua").read_text()


def announce(pipe: Pipeline | Redis, index: int, fields: dict[str, str], job_id: str, started: float) -> None:
    """Queue an event carrying the same object as GET /api/values/{n} (and telling the API its lists changed).

    Stamped with the job and when its computation started and ended, for the
    system page's timelines (contract.EVENT_STAMPS): what this entry costs anyway.
    """
    entry = _redis_mapping(contract.event_entry(index, fields, job_id, started, time.time()))
    pipe.xadd(contract.EVENTS_STREAM, entry, maxlen=contract.EVENTS_MAXLEN, approximate=True)


def cache_and_announce_done(connection: Redis, results: Sequence[Result], cache_max_bytes: int) -> list[str]:
    """Cache each result's status (and its value if too long for the status) and announce it, in one
    transaction, one round trip; the cache's keys dropped to make room."""
    entries = []
    for result in results:
        computed = result.computed
        entries.append(contract.status_entry(computed.index, computed.fields()))
        if len(computed.decimal) > contract.SHORT_VALUE_MAX_DIGITS:
            entries.append((contract.CACHE_STRING, contract.decimal_key(computed.index), [computed.decimal]))
    with connection.pipeline(transaction=True) as pipe:
        _cache_put(pipe, entries, cache_max_bytes)
        for result in results:
            computed = result.computed
            announce(pipe, computed.index, computed.fields(), result.job_id, computed.started)
        replies = pipe.execute()
    return [key.decode() for key in replies[0]]


def cache_and_announce_failed(
    connection: Redis, indexes: Sequence[int], error: str, job_id: str, started: float, cache_max_bytes: int
) -> None:
    """The failed statuses Postgres recorded, cached and announced, in one transaction."""
    fields = contract.failed_fields(error)
    with connection.pipeline(transaction=True) as pipe:
        _cache_put(pipe, [contract.status_entry(index, fields) for index in indexes], cache_max_bytes)
        for index in indexes:
            announce(pipe, index, fields, job_id, started)
        pipe.execute()


def _cache_put(pipe: Pipeline, entries: list[tuple[str, str, list[str]]], cache_max_bytes: int) -> None:
    keys, args = contract.cache_put(entries, time.time(), cache_max_bytes)
    # EVAL, not EVALSHA: in a pipeline redis-py would ask SCRIPT EXISTS on
    # every execute, a round trip more; Redis caches the compiled script by
    # its hash either way.
    pipe.eval(CACHE_PUT, len(keys), *keys, *args)


def _redis_mapping(fields: dict[str, str]) -> dict[Any, Any]:
    # redis-py's stubs type hset's mapping with union keys, which a dict[str, str]
    # (dict keys are invariant) does not match although Redis accepts it.
    return fields
