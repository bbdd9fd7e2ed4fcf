"""The job functions, run by a real RQ worker against a real Redis."""

from __future__ import annotations

import json

import gmpy2
import pytest
from fibworker import contract, jobs
from fibworker.jobqueue import fib_queue
from queue_runner import drain
from redis import Redis
from rq import Callback

from stack.servers import RedisServer


def enqueue(redis_client: Redis, index: int, job_id: str = "", batch: list[int] | None = None) -> str:
    """What the API does (see fibapi.store), minus the pending mark; the job's id.

    With `batch`: the recovery's job for those indexes (`index` names it).
    """
    job_id = job_id or contract.new_job_id(index)
    fib_queue(redis_client).enqueue_call(
        contract.BATCH_JOB_FUNCTION if batch else contract.JOB_FUNCTION,
        args=(batch or index,),
        job_id=job_id,
        result_ttl=0,
        on_failure=Callback(contract.JOB_FAILURE_CALLBACK),
    )
    return job_id


def status(redis_client: Redis, index: int) -> dict[str, str]:
    raw = redis_client.hgetall(contract.status_key(index))
    return {key.decode(): value.decode() for key, value in raw.items()}


def test_job_stores_value_status_and_event(redis_client: Redis, redis_server: RedisServer) -> None:
    job_id = enqueue(redis_client, 300)
    drain(redis_server.port)
    expected = gmpy2.fib(300).digits()
    assert redis_client.get(contract.decimal_key(300)) == expected.encode()
    fields = status(redis_client, 300)
    assert fields["status"] == "done"
    assert fields["digits"] == str(len(expected))
    assert fields["value"] == expected
    ((_, event),) = redis_client.xrange(contract.EVENTS_STREAM)
    assert json.loads(event[b"data"]) == contract.public_status(300, fields)
    # Nothing expires: the worker keeps values within their budget; the job leaves nothing behind.
    assert redis_client.ttl(contract.decimal_key(300)) == -1
    assert redis_client.ttl(contract.status_key(300)) == -1
    # What the value's key takes of Redis's memory, not only its digits.
    assert int(redis_client.get(contract.VALUES_BYTES)) == redis_client.memory_usage(contract.decimal_key(300))
    assert not redis_client.exists(f"rq:job:{job_id}")


def test_long_value_is_not_copied_into_the_status(redis_client: Redis, redis_server: RedisServer) -> None:
    enqueue(redis_client, 10_000)
    drain(redis_server.port)
    fields = status(redis_client, 10_000)
    assert fields["value"] == ""
    assert int(fields["digits"]) == 2090
    event = json.loads(redis_client.xrange(contract.EVENTS_STREAM)[-1][1][b"data"])
    assert event["value"] is None
    assert len(json.dumps(event)) < 400


def test_failure_is_recorded_and_announced(
    redis_client: Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(n: int) -> None:
        raise MemoryError("out of memory")

    monkeypatch.setattr(jobs.fib, "fibonacci", broken)
    enqueue(redis_client, 5)
    drain(redis_server.port)
    fields = status(redis_client, 5)
    assert fields["status"] == "failed"
    assert fields["error"] == "MemoryError: out of memory"
    event = json.loads(redis_client.xrange(contract.EVENTS_STREAM)[-1][1][b"data"])
    assert (event["status"], event["error"]) == ("failed", "MemoryError: out of memory")


def enqueue_batch(redis_client: Redis, indexes: list[int]) -> str:
    """What the API's recovery does (fibapi.store.Store.queue_batch): pending for one job, then the job."""
    job_id = contract.new_job_id(indexes[0])
    for index in indexes:
        redis_client.hset(contract.status_key(index), mapping=contract.pending_fields(job_id))
    return enqueue(redis_client, indexes[0], job_id, batch=indexes)


def test_batch_computes_what_is_still_its_own(redis_client: Redis, redis_server: RedisServer) -> None:
    enqueue_batch(redis_client, [10, 11, 12])
    # 11 was taken over by a job of its own meanwhile: the batch leaves it alone.
    redis_client.hset(contract.status_key(11), "job", "fib-11-another")
    drain(redis_server.port)
    assert status(redis_client, 10)["value"] == "55"
    assert status(redis_client, 12)["value"] == "144"
    assert status(redis_client, 11)["status"] == "pending"
    assert redis_client.xlen(contract.EVENTS_STREAM) == 2


def test_a_failed_batch_fails_its_unfinished_indexes(
    redis_client: Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue_batch(redis_client, [20, 21])
    monkeypatch.setattr(jobs.fib, "fibonacci", lambda n: 1 // 0)
    drain(redis_server.port)
    assert [status(redis_client, index)["status"] for index in (20, 21)] == ["failed", "failed"]
    assert "ZeroDivisionError" in status(redis_client, 21)["error"]
