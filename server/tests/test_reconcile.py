"""Redis flushed or restarted empty: every recorded index is computed again."""

from __future__ import annotations

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
