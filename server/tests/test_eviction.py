"""Redis under memory pressure: values are evicted and recomputed, jobs never."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gmpy2
import pytest
from fibapi import contract, create_app
from fibapi.config import Settings
from flask.testing import FlaskClient
from queue_runner import drain
from redis import Redis

from stack.servers import PostgresServer, RedisServer

LARGE = list(range(1_000_000, 1_000_030))  # 30 values of ~209 KB: 6 MB in all


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, maxmemory="4mb")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(postgres: PostgresServer, small_redis: RedisServer, services_env: dict[str, str]) -> Iterator[FlaskClient]:
    app = create_app(Settings.from_env(services_env | small_redis.env()))
    yield app.test_client()
    app.extensions["fibstack.db"].close()


def test_values_are_evicted_and_recomputed_but_jobs_are_not(client: FlaskClient, small_redis: RedisServer) -> None:
    redis_client = Redis(port=small_redis.port)
    for index in LARGE:
        assert client.post("/api/values", json={"index": index}).status_code == 202
    drain(small_redis.port)
    evicted = [n for n in LARGE if not redis_client.exists(contract.decimal_key(n))]
    assert evicted, "6 MB of values fit in 4 MB: nothing was evicted"

    # An evicted value is computed again when asked for, and is exact.
    index = evicted[0]
    assert client.get(f"/api/values/{index}/decimal").status_code == 404
    assert redis_client.llen(f"rq:queue:{contract.QUEUE_NAME}") == 1
    drain(small_redis.port)
    response = client.get(f"/api/values/{index}/decimal")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == gmpy2.fib(index).digits()

    # With memory full of values, new jobs are still queued and marked, none lost.
    fresh = range(2_000_000, 2_000_020)
    for index in fresh:
        assert client.post("/api/values", json={"index": index}).status_code == 202
    assert redis_client.llen(f"rq:queue:{contract.QUEUE_NAME}") == len(fresh)
    assert all(redis_client.hget(contract.status_key(n), "status") == b"pending" for n in fresh)
