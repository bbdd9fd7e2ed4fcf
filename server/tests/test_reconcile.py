"""Redis flushed or restarted empty: every recorded index is computed again."""

from __future__ import annotations

import time

import gmpy2
import psycopg
import pytest
from fibapi import contract
from fibapi.reconcile import reconcile
from flask import Flask
from flask.testing import FlaskClient
from queue_runner import drain
from redis import Redis

from stack.servers import RedisServer


def run_reconcile(app: Flask) -> int | None:
    return reconcile(app.extensions["fibstack.db"], app.extensions["fibstack.store"])


def test_fresh_install_has_nothing_to_queue(app: Flask, redis_client: Redis) -> None:
    assert run_reconcile(app) == 0
    assert redis_client.exists(contract.RECONCILED_MARKER)
    assert run_reconcile(app) is None  # marker present: nothing to do


def test_flush_requeues_every_recorded_index(
    app: Flask, client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    run_reconcile(app)
    for index in (3, 4, 4, 30):
        client.post("/api/values", json={"index": index})
    drain(redis_server.port)
    redis_client.flushall()

    assert run_reconcile(app) == 3  # each distinct index once
    assert client.get("/api/values/current").get_json() == {
        "30": "Nothing yet!",
        "4": "Nothing yet!",
        "3": "Nothing yet!",
    }
    drain(redis_server.port)
    assert client.get("/api/values/current").get_json() == {"30": "832040", "4": "3", "3": "2"}


def test_reconcile_skips_what_is_already_queued_or_done(
    app: Flask, client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    client.post("/api/values", json={"index": 8})
    drain(redis_server.port)
    client.post("/api/values", json={"index": 9})  # queued, not run
    assert run_reconcile(app) == 0
    assert redis_client.llen(f"rq:queue:{contract.QUEUE_NAME}") == 1


@pytest.mark.parametrize("holder", ["another process"])
def test_only_one_process_reconciles_at_a_time(app: Flask, redis_client: Redis, holder: str) -> None:
    redis_client.set(f"{contract.PREFIX}:reconcile-lock", holder)
    assert run_reconcile(app) is None
    assert not redis_client.exists(contract.RECONCILED_MARKER)


def test_an_index_resubmitted_as_its_last_job_is_cleaned_up_still_finishes(
    app: Flask, client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    """The race that left an index pending for ever, replayed step by step."""
    from fibworker import results
    from rq.job import Job

    store = app.extensions["fibstack.store"]
    assert client.post("/api/values", json={"index": "7"}).status_code == 202
    first_job = redis_client.hget(contract.status_key(7), "job").decode()
    # The worker runs the job: the value and "done" are written first...
    redis_client.lpop(f"rq:queue:{contract.QUEUE_NAME}")
    results.store_done(redis_client, first_job, results.Computed(7, "13", 0.01, time.time()), 3600)
    # ...then, before RQ deletes the finished job's hash, the value is dropped
    # and someone downloads it: a new job is queued.
    redis_client.delete(contract.decimal_key(7))
    assert store.recompute(7)
    # Now RQ's clean-up of the first job runs. With one id per index it
    # deleted the new job's hash, and the value never came back.
    redis_client.delete(Job.key_for(first_job))
    drain(redis_server.port)
    assert client.get("/api/values/7").get_json()["status"] == "done"
    assert redis_client.get(contract.decimal_key(7)) == b"13"
    assert redis_client.zcard(contract.PENDING_SINCE) == 0


def test_the_sweeper_requeues_an_index_whose_job_is_gone_and_nothing_else(
    app: Flask, client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    from fibapi.reconcile import sweep_stuck
    from rq.job import Job

    store = app.extensions["fibstack.store"]
    for index in (8, 9):
        assert client.post("/api/values", json={"index": str(index)}).status_code == 202
    lost = redis_client.hget(contract.status_key(8), "job").decode()
    redis_client.delete(Job.key_for(lost))  # however it happened, 8 has no job left
    redis_client.lrem(f"rq:queue:{contract.QUEUE_NAME}", 0, lost)
    assert sweep_stuck(store, older_than_seconds=3600) == []  # too recent to judge
    assert sweep_stuck(store, older_than_seconds=0) == [8]  # 9's job is still queued
    assert sweep_stuck(store, older_than_seconds=0) == []  # and 8 has one again
    drain(redis_server.port)
    assert [client.get(f"/api/values/{i}").get_json()["status"] for i in (8, 9)] == ["done", "done"]
    assert sweep_stuck(store, older_than_seconds=0) == []
    assert redis_client.zcard(contract.PENDING_SINCE) == 0


def test_recovery_queues_batches_not_one_job_per_index(
    app: Flask, client: FlaskClient, redis_client: Redis, redis_server: RedisServer, pg_conn: psycopg.Connection
) -> None:
    client.post("/api/values", json={"index": 0})  # creates the tables
    pg_conn.execute("INSERT INTO indexes (number) SELECT generate_series(1, 2499)")
    redis_client.flushall()
    client.post("/api/values", json={"index": 2000})  # queued on its own before the recovery

    assert run_reconcile(app) == 2499
    assert redis_client.llen(f"rq:queue:{contract.QUEUE_NAME}") == 1 + 3  # 1,000 per batch at most
    drain(redis_server.port)
    statuses = [redis_client.hget(contract.status_key(index), "status") for index in range(2500)]
    assert statuses == [b"done"] * 2500
    assert redis_client.get(contract.decimal_key(2499)) == gmpy2.fib(2499).digits().encode()
    assert redis_client.zcard(contract.PENDING_SINCE) == 0


def test_a_batch_is_bounded_by_its_work_too() -> None:
    from fibapi.reconcile import BATCH_MAX_WORK, batches

    big = BATCH_MAX_WORK // 2 + 1
    assert list(batches([1, 2, big, big, 3])) == [[1, 2, big], [big, 3]]
    assert [len(batch) for batch in batches(range(2500))] == [1000, 1000, 500]
