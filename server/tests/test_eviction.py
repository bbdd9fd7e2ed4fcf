"""Values past their memory budget are dropped and recomputed on demand; nothing else ever is."""

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
    monkeypatch.setenv("VALUES_MAX_BYTES", str(BUDGET))  # the worker's, as drain() runs it
    app = create_app(Settings.from_env(services_env))
    yield app.test_client()
    app.extensions["fibstack.db"].close()


def submit_and_compute(client: FlaskClient, redis_server: RedisServer) -> None:
    for index in LARGE:
        assert client.post("/api/values", json={"index": index}).status_code == 202
    drain(redis_server.port)


def test_values_stay_within_their_budget_and_statuses_all_stay(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit_and_compute(client, redis_server)
    kept = [n for n in LARGE if redis_client.exists(contract.decimal_key(n))]
    stored = sum(redis_client.memory_usage(contract.decimal_key(n)) for n in kept)
    assert stored == int(redis_client.get(contract.VALUES_BYTES))
    assert stored <= BUDGET
    assert 5 <= len(kept) < len(LARGE)
    assert kept == LARGE[-len(kept) :]  # the least recently used went first
    # Every status is still there, with its digits: the page's lists need nothing else.
    assert all(redis_client.hget(contract.status_key(n), "status") == b"done" for n in LARGE)
    assert int(redis_client.info("stats")["evicted_keys"]) == 0  # Redis itself dropped nothing


def test_reading_the_lists_never_makes_work(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    """The thrash of the fault campaign: every read of the list re-queued dropped values, for ever."""
    submit_and_compute(client, redis_server)
    queue = f"rq:queue:{contract.QUEUE_NAME}"
    for _ in range(30):  # the page, read again and again
        for path in ("/api/values/current", "/api/values/recent"):
            assert client.get(path).status_code == 200
        assert redis_client.llen(queue) == 0, "reading a list queued work"
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
    assert int(redis_client.get(contract.VALUES_BYTES)) <= BUDGET


def test_a_download_keeps_its_value_from_being_dropped_next(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit_and_compute(client, redis_server)
    oldest_kept = next(n for n in LARGE if redis_client.exists(contract.decimal_key(n)))
    assert client.get(f"/api/values/{oldest_kept}/decimal").status_code == 200  # now the most recently used
    assert client.post("/api/values", json={"index": 1_000_100}).status_code == 202
    drain(redis_server.port)
    assert redis_client.exists(contract.decimal_key(oldest_kept))
