"""Admission control: past its bounds the API refuses new work cleanly, and all it accepted is computed.

Against real Redis servers with a small maxmemory and noeviction, as production runs them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import gmpy2
import psycopg
import pytest
from fibapi import contract, create_app, queueing
from fibapi.config import Settings
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from queue_runner import drain
from redis import Redis

from stack.servers import RedisServer


@pytest.fixture
def small_redis() -> Iterator[RedisServer]:
    """A Redis of its own, maxmemory 32 MB, so the tests can fill it."""
    server = RedisServer(Path(tempfile.mkdtemp(prefix="fibstack-redis-small-")), maxmemory="32mb")
    server.start()
    yield server
    server.stop()


def make_app(env: dict[str, str], **settings: str) -> Flask:
    return create_app(Settings.from_env(env | settings))


@pytest.fixture
def app_env(services_env: dict[str, str], small_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.delenv("CACHE_MAX_BYTES", raising=False)  # the worker's, as drain() runs it
    return services_env | small_redis.env()


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        app.extensions["fibstack.db"].close()


def client_for(apps: list[Flask], env: dict[str, str], **settings: str) -> FlaskClient:
    app = make_app(env, **settings)
    apps.append(app)
    return app.test_client()


def recorded(pg_conn: psycopg.Connection) -> set[int]:
    return {number for (number,) in pg_conn.execute("SELECT number FROM submissions")}


def refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("fibstack_api_admission_refused_total", {"reason": reason}) or 0.0


def assert_over_capacity(response: object) -> None:
    assert response.status_code == 503  # type: ignore[attr-defined]
    assert response.get_json()["code"] == "over_capacity"  # type: ignore[attr-defined]
    assert int(response.headers["Retry-After"]) > 0  # type: ignore[attr-defined]


def fill(redis: Redis, megabytes: int) -> None:
    """Someone else's data in Redis, a megabyte at a time (one big write would not fit beside its copy)."""
    for n in range(megabytes):
        redis.set(f"someone-elses-data:{n}", b"x" * (1024 * 1024 - 64))  # a 1 MiB allocation each


def statuses(pg_conn: psycopg.Connection, indexes: set[int]) -> dict[int, str]:
    """Each index's status as Postgres records it ("" for one never recorded)."""
    found = dict(pg_conn.execute("SELECT number, status FROM indexes WHERE number = ANY(%s)", (list(indexes),)))
    return {index: found.get(index, "") for index in indexes}


def test_new_indexes_are_refused_past_the_queue_bound_and_known_ones_still_answer(
    apps: list[Flask], app_env: dict[str, str], small_redis: RedisServer, pg_conn: psycopg.Connection
) -> None:
    client = client_for(apps, app_env, ADMISSION_QUEUE_MAX="5")
    before = refusals("queue")
    answers = {index: client.post("/api/values", json={"index": index}) for index in range(100, 108)}
    accepted = {index for index, response in answers.items() if response.status_code == 202}
    assert accepted == set(range(100, 105))
    for index in range(105, 108):
        assert_over_capacity(answers[index])
    assert refusals("queue") - before == 3
    # An index already queued costs nothing: still a 202, and recorded like any submission.
    assert client.post("/api/values", json={"index": 100}).status_code == 202
    assert recorded(pg_conn) == accepted  # nothing refused was recorded

    drain(small_redis.port)
    assert set(statuses(pg_conn, accepted).values()) == {"done"}
    assert client.post("/api/values", json={"index": 105}).status_code == 202  # room again


def test_new_indexes_are_refused_while_redis_is_nearly_full(
    apps: list[Flask], app_env: dict[str, str], small_redis: RedisServer, pg_conn: psycopg.Connection
) -> None:
    client = client_for(apps, app_env)
    redis = Redis(port=small_redis.port)
    assert client.post("/api/values", json={"index": 7}).status_code == 202
    fill(redis, 24)  # over 70% of 32 MB, and not values
    before = refusals("memory")
    assert_over_capacity(client.post("/api/values", json={"index": 8}))
    assert refusals("memory") - before == 1
    assert client.post("/api/values", json={"index": 7}).status_code == 202  # known: answered at once
    assert recorded(pg_conn) == {7}
    redis.delete(*redis.keys("someone-elses-data:*"))
    assert client.post("/api/values", json={"index": 8}).status_code == 202


def test_everything_accepted_while_redis_filled_up_is_computed_once_the_worker_is_back(
    apps: list[Flask], app_env: dict[str, str], small_redis: RedisServer, pg_conn: psycopg.Connection
) -> None:
    """The issue's run: the worker stopped, distinct submissions until Redis is nearly full."""
    client = client_for(apps, app_env)
    redis = Redis(port=small_redis.port)
    # Most of the way there already, so that the test need not send tens of thousands.
    fill(redis, 20)
    accepted: set[int] = set()
    refused: set[int] = set()
    for index in range(1000, 8000):
        response = client.post("/api/values", json={"index": index})
        if response.status_code == 202:
            accepted.add(index)
        else:
            assert_over_capacity(response)
            refused.add(index)
        if len(refused) >= 50:
            break
    assert len(accepted) > 100
    assert len(refused) == 50
    assert recorded(pg_conn) == accepted

    drain(small_redis.port)  # the worker is back
    assert set(statuses(pg_conn, accepted).values()) == {"done"}, "some accepted work did not end done"
    assert not any(statuses(pg_conn, refused).values())  # nothing of what was refused is there
    assert redis.info("memory")["used_memory"] < 32 * 1024 * 1024
    assert redis.info("stats")["evicted_keys"] == 0


def test_values_give_way_within_the_servers_real_maxmemory(
    apps: list[Flask], app_env: dict[str, str], small_redis: RedisServer, pg_conn: psycopg.Connection
) -> None:
    """40 values of about 2 MB each into a Redis of 30 MB: every one is stored, older ones give way."""
    small_redis.stop()
    small_redis.maxmemory = "30mb"
    small_redis.start()
    client = client_for(apps, app_env)
    large = list(range(9_500_000, 9_500_040))
    for index in large:
        assert client.post("/api/values", json={"index": index}).status_code == 202
    drain(small_redis.port)
    redis = Redis(port=small_redis.port)
    assert set(statuses(pg_conn, set(large)).values()) == {"done"}, "some large index failed"
    kept = [index for index in large if redis.exists(contract.decimal_key(index))]
    assert 4 <= len(kept) < len(large)
    assert kept == large[-len(kept) :]  # the least recently used gave way
    assert redis.info("memory")["used_memory"] < 30 * 1024 * 1024
    # The newest one streams whole.
    assert client.get(f"/api/values/{large[-1]}/decimal").data == gmpy2.fib(large[-1]).digits().encode()


def test_recomputes_of_dropped_values_are_bounded_overall(
    apps: list[Flask], app_env: dict[str, str], small_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queueing, "RECOMPUTES_MAX", 3)
    client = client_for(apps, app_env)
    redis = Redis(port=small_redis.port)
    indexes = list(range(5000, 5006))  # too long for their statuses: in the cache only
    for index in indexes:
        client.post("/api/values", json={"index": index})
    drain(small_redis.port)
    for index in indexes:
        redis.delete(contract.decimal_key(index))  # as if dropped to make room
    answers = [client.get(f"/api/values/{index}/decimal") for index in indexes]
    assert [response.status_code for response in answers] == [409, 409, 409, 503, 503, 503]
    for response in answers[3:]:
        assert_over_capacity(response)
    assert redis.llen(f"rq:queue:{contract.QUEUE_NAME}") == 3
    # Each one asked again: still a single flight per index, no new job.
    assert client.get(f"/api/values/{indexes[0]}/decimal").status_code == 409
    assert redis.llen(f"rq:queue:{contract.QUEUE_NAME}") == 3
