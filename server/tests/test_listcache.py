"""Lists answered from memory: never stale, on any replica, and really from memory."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fibapi import contract, create_app
from fibapi.config import Settings
from flask import Flask
from flask.testing import FlaskClient
from queue_runner import drain
from redis import Redis

from stack.servers import RedisServer

LISTS = ("/api/values/current", "/api/values/all", "/api/values/recent")


@pytest.fixture
def replica(settings: Settings) -> Iterator[FlaskClient]:
    """A second API process on the same Postgres and Redis, with its own memory."""
    other: Flask = create_app(settings)
    yield other.test_client()
    other.extensions["fibstack.db"].close()


def test_every_list_is_current_on_another_replica_at_once(
    client: FlaskClient, replica: FlaskClient, redis_server: RedisServer
) -> None:
    for path in LISTS:
        assert replica.get(path).status_code == 200  # the replica keeps them now
    assert client.post("/api/values", json={"index": "12"}).status_code == 202
    assert replica.get("/api/values/current").get_json() == {"12": contract.NOTHING_YET}
    assert replica.get("/api/values/all").get_json() == [{"number": 12}]
    assert replica.get("/api/values/recent").get_json()[0]["status"] == "pending"
    drain(redis_server.port)  # the worker's result, written straight to Redis
    assert replica.get("/api/values/current").get_json() == {"12": "144"}
    assert replica.get("/api/values/recent").get_json()[0]["value"] == "144"
    assert client.post("/api/values", json={"index": "12"}).status_code == 202  # a repeat: no new status
    assert replica.get("/api/values/all").get_json() == [{"number": 12}, {"number": 12}]


def test_an_unchanged_list_is_answered_from_memory(client: FlaskClient, pg_conn: psycopg.Connection) -> None:
    assert client.post("/api/values", json={"index": "3"}).status_code == 202
    assert client.get("/api/values/all").get_json() == [{"number": 3}]
    # Changed behind the app's back, without a new lists version: the kept answer stands.
    pg_conn.execute("DELETE FROM submissions")
    assert client.get("/api/values/all").get_json() == [{"number": 3}]


def test_a_browser_revalidating_gets_304_until_something_changes(client: FlaskClient) -> None:
    first = client.get("/api/values/recent")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    again = client.get("/api/values/recent", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert client.post("/api/values", json={"index": "4"}).status_code == 202
    changed = client.get("/api/values/recent", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.get_json()[0]["index"] == 4


def test_redis_losing_its_data_is_noticed(client: FlaskClient, redis_client: Redis) -> None:
    assert client.post("/api/values", json={"index": "5"}).status_code == 202
    assert client.get("/api/values/current").get_json() == {"5": contract.NOTHING_YET}
    redis_client.flushall()
    redis_client.hset(contract.status_key(5), mapping=contract.failed_fields("lost"))
    assert client.get("/api/values/current").get_json() == {"5": "Failed: lost"}
