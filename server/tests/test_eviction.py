"""The cache stays within its budget, the least recently used giving way; nothing is lost with what it drops."""

from __future__ import annotations

from collections.abc import Iterator

import gmpy2
import pytest
from fibapi import contract, create_app
from fibapi.config import Settings
from flask.testing import FlaskClient
from queue_runner import drain
from redis import Redis

from stack.servers import PostgresServer, RedisServer

LARGE = list(range(1_000_000, 1_000_030))  # 30 values of ~209 KB: 6 MB in all
BUDGET = 2 * 1024 * 1024  # room for about 10 of them


@pytest.fixture
def client(
    postgres: PostgresServer, redis_server: RedisServer, services_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[FlaskClient]:
    monkeypatch.setenv("CACHE_MAX_BYTES", str(BUDGET))  # the worker's, as drain() runs it
    app = create_app(Settings.from_env(services_env))
    yield app.test_client()
    app.extensions["fibstack.db"].close()


def submit_and_compute(client: FlaskClient, redis_server: RedisServer) -> None:
    for index in LARGE:
        assert client.post("/api/values", json={"index": index}).status_code == 202
    drain(redis_server.port)


def cached_keys(redis_client: Redis) -> list[str]:
    return [key.decode() for key in redis_client.zrange(contract.CACHE_BY_USE, 0, -1)]


def test_the_cache_stays_within_its_budget_the_least_recently_used_going_first(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit_and_compute(client, redis_server)
    keys = cached_keys(redis_client)
    sizes = {key: redis_client.memory_usage(key) + contract.CACHE_ENTRY_OVERHEAD_BYTES for key in keys}
    assert sum(sizes.values()) == int(redis_client.get(contract.CACHE_BYTES))  # counted right
    assert sum(sizes.values()) <= BUDGET
    kept = [n for n in LARGE if redis_client.exists(contract.decimal_key(n))]
    assert 5 <= len(kept) < len(LARGE)
    assert kept == LARGE[-len(kept) :]  # the least recently used went first
    assert all(redis_client.exists(key) for key in keys)  # what is recorded is there
    assert int(redis_client.info("stats")["evicted_keys"]) == 0  # Redis itself dropped nothing
    # Every status is still known, with its digits: Postgres has it, whatever the cache dropped.
    for n in LARGE:
        status = client.get(f"/api/values/{n}").get_json()
        assert (status["status"], status["digits"]) == ("done", len(gmpy2.fib(n).digits()))


def test_reading_the_lists_never_makes_work(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    """The thrash of the fault campaign: every read of the list re-queued dropped values, for ever."""
    submit_and_compute(client, redis_server)
    queue = f"rq:queue:{contract.QUEUE_NAME}"
    for _ in range(30):  # the page, read again and again
        for path in ("/api/values/current", "/api/values/recent"):
            assert client.get(path).status_code == 200
        for n in LARGE[:3]:
            assert client.get(f"/api/values/{n}").status_code == 200
        assert redis_client.llen(queue) == 0, "reading made work"
    recent = client.get("/api/values/recent").get_json()
    assert {status["status"] for status in recent} == {"done"}
    assert all(status["digits"] == len(gmpy2.fib(status["index"]).digits()) for status in recent)


def test_a_dropped_value_is_computed_again_once_when_asked_for(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit_and_compute(client, redis_server)
    index = LARGE[0]
    assert not redis_client.exists(contract.decimal_key(index))
    for _ in range(5):  # several people, or one impatient one
        response = client.get(f"/api/values/{index}/decimal")
        assert response.status_code == 409
        assert response.get_json()["code"] == "recomputing"
        assert response.headers["Retry-After"]
    assert redis_client.llen(f"rq:queue:{contract.QUEUE_NAME}") == 1  # single flight
    assert client.get(f"/api/values/{index}").get_json()["status"] == "done"  # digits, head, tail still known
    drain(redis_server.port)
    response = client.get(f"/api/values/{index}/decimal")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == gmpy2.fib(index).digits()
    assert int(redis_client.get(contract.CACHE_BYTES)) <= BUDGET


def test_a_download_keeps_its_value_from_being_dropped_next(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit_and_compute(client, redis_server)
    oldest_kept = next(n for n in LARGE if redis_client.exists(contract.decimal_key(n)))
    assert client.get(f"/api/values/{oldest_kept}/decimal").status_code == 200  # now the most recently used
    assert client.post("/api/values", json={"index": 1_000_100}).status_code == 202
    drain(redis_server.port)
    assert redis_client.exists(contract.decimal_key(oldest_kept))


def test_a_status_read_back_from_postgres_is_put_back_within_the_budget(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit_and_compute(client, redis_server)
    dropped = [n for n in LARGE if not redis_client.exists(contract.status_key(n))]
    assert dropped, "the budget should have dropped some statuses too"
    for n in dropped:
        assert client.get(f"/api/values/{n}").get_json()["status"] == "done"
    assert all(redis_client.exists(contract.status_key(n)) for n in dropped)  # read through, and kept
    assert int(redis_client.get(contract.CACHE_BYTES)) <= BUDGET  # others gave way for them
