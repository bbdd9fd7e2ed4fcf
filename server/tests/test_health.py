"""Probes, and what users see while Postgres or Redis is down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fibapi import create_app, listcache
from fibapi.config import Settings
from flask.testing import FlaskClient
from processes import wait_until
from redis import Redis
from schema import migrate_server

from stack.servers import PostgresServer, RedisServer


def test_healthz(client: FlaskClient) -> None:
    assert client.get("/api/healthz").get_json() == {"status": "ok"}


def test_readyz_when_all_is_up(client: FlaskClient) -> None:
    response = client.get("/api/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"postgres": "ok", "redis": "ok"}


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[tuple[PostgresServer, RedisServer]]:
    """Servers of this test's own, free to be stopped."""
    import shutil
    import tempfile

    pg_dir = Path(tempfile.mkdtemp(prefix="fibstack-outage-"))
    postgres, redis_server = PostgresServer(pg_dir), RedisServer(tmp_path)
    postgres.start()
    redis_server.start()
    migrate_server(postgres)
    yield postgres, redis_server
    postgres.stop()
    redis_server.stop()
    shutil.rmtree(pg_dir, ignore_errors=True)


@pytest.fixture
def outage_client(own_servers: tuple[PostgresServer, RedisServer]) -> Iterator[FlaskClient]:
    postgres, redis_server = own_servers
    app = create_app(Settings.from_env(postgres.env() | redis_server.env() | {"RECONCILE_INTERVAL_SECONDS": "0"}))
    yield app.test_client()
    app.extensions["fibstack.db"].close()


def rows(client: FlaskClient) -> list[dict[str, int]]:
    response = client.get("/api/values/all")
    assert response.status_code == 200
    return response.get_json()


def test_redis_down_gives_503_records_nothing_and_recovers(
    outage_client: FlaskClient, own_servers: tuple[PostgresServer, RedisServer]
) -> None:
    _, redis_server = own_servers
    assert outage_client.post("/api/values", json={"index": "5"}).status_code == 202
    redis_server.stop()

    response = outage_client.post("/api/values", json={"index": "6"})
    assert response.status_code == 503
    assert response.get_json()["code"] == "redis_unavailable"
    assert "Redis" in response.get_json()["error"]
    assert response.headers["Retry-After"]
    assert rows(outage_client) == [{"number": 5}]  # 6 was rolled back, not half-recorded
    ready = outage_client.get("/api/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["redis"].startswith("unavailable")
    assert outage_client.get("/api/healthz").status_code == 200

    redis_server.start()  # same port, empty: as after a restart without persistence
    assert outage_client.post("/api/values", json={"index": "6"}).status_code == 202
    assert rows(outage_client) == [{"number": 6}, {"number": 5}]
    assert outage_client.get("/api/readyz").status_code == 200


def test_postgres_down_gives_503_queues_nothing_and_recovers(
    outage_client: FlaskClient, own_servers: tuple[PostgresServer, RedisServer]
) -> None:
    postgres, redis_server = own_servers
    assert outage_client.post("/api/values", json={"index": "5"}).status_code == 202
    postgres.stop()
    Redis(port=redis_server.port).flushall()

    for method, path in (("post", "/api/values"), ("get", "/api/values/all"), ("get", "/api/values/current")):
        response = getattr(outage_client, method)(path, json={"index": "6"} if method == "post" else None)
        assert response.status_code == 503, path
        assert response.get_json()["code"] == "postgres_unavailable"
    # Nothing queued for the refused submission: the reads left nothing in Redis either.
    assert Redis(port=redis_server.port).keys() == []
    assert outage_client.get("/api/readyz").get_json()["checks"]["postgres"].startswith("unavailable")

    postgres.start()
    # Recovers by itself within seconds; nothing to restart.
    wait_until(lambda: outage_client.post("/api/values", json={"index": "6"}).status_code == 202, timeout=30)
    assert rows(outage_client) == [{"number": 6}, {"number": 5}]


def test_api_starts_while_postgres_is_still_down(tmp_path: Path, redis_server: RedisServer) -> None:
    import shutil
    import tempfile

    pg_dir = Path(tempfile.mkdtemp(prefix="fibstack-late-"))
    postgres = PostgresServer(pg_dir)  # not started yet
    try:
        app = create_app(Settings.from_env(postgres.env() | redis_server.env() | {"RECONCILE_INTERVAL_SECONDS": "0"}))
        client = app.test_client()
        assert client.get("/api/healthz").status_code == 200
        assert client.get("/api/values/all").status_code == 503
        postgres.start()
        assert client.get("/api/values/all").status_code == 503  # up, but without the API's role yet
        migrate_server(postgres)
        wait_until(lambda: client.get("/api/values/all").status_code == 200, timeout=30)
        assert rows(client) == []
        app.extensions["fibstack.db"].close()
    finally:
        postgres.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


def test_full_redis_gives_503_and_records_nothing(app, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import redis.exceptions
    from fibapi import queueing

    def full(*args: object, **kwargs: object) -> list[bool]:
        raise redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")

    monkeypatch.setattr(queueing, "queue", full)
    response = client.post("/api/values", json={"index": "3"})
    assert response.status_code == 503
    assert response.get_json()["code"] == "redis_full"
    assert client.get("/api/values/all").get_json() == []  # recorded, then undone


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung server."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # the kernel completes handshakes; nobody ever reads
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("state", ["stopped", "hung"])
def test_readyz_answers_within_a_probe_timeout_whatever_the_dependencies_do(
    own_servers: tuple[PostgresServer, RedisServer], silent_server: int, state: str
) -> None:
    # Kubernetes' probes time out after 1 s by default: the 503 must come first.
    import time

    postgres, redis_server = own_servers
    env = postgres.env() | redis_server.env() | {"RECONCILE_INTERVAL_SECONDS": "0"}
    if state == "stopped":
        postgres.stop()
        redis_server.stop()
    else:
        env |= {"PGPORT": str(silent_server), "REDIS_PORT": str(silent_server)}
    app = create_app(Settings.from_env(env))
    try:
        client = app.test_client()
        for _ in range(3):
            started = time.monotonic()
            response = client.get("/api/readyz")
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            assert set(response.get_json()["checks"]) == {"postgres", "redis"}
            assert all(check.startswith("unavailable") for check in response.get_json()["checks"].values())
            assert elapsed < 1.0, f"readyz took {elapsed:.2f} s"
    finally:
        app.extensions["fibstack.db"].close()


def timed(call):  # type: ignore[no-untyped-def]
    import time

    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_dead_redis_is_answered_promptly_and_postgres_routes_keep_working(
    outage_client: FlaskClient, own_servers: tuple[PostgresServer, RedisServer]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _, redis_server = own_servers
    assert outage_client.post("/api/values", json={"index": "5"}).status_code == 202
    redis_server.stop()
    response, took = timed(lambda: outage_client.post("/api/values", json={"index": "6"}))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    # It took up to 28 s (redis-py's retries with back-off); a client gives up long before.
    assert took < 2.5, f"POST took {took:.1f} s with Redis down"
    # Submissions failing at once do not starve the pool: /all (Postgres only) still answers.
    with ThreadPoolExecutor(max_workers=12) as pool:
        posts = [pool.submit(outage_client.post, "/api/values", json={"index": str(i)}) for i in range(24)]
        reads = [pool.submit(outage_client.get, "/api/values/all") for _ in range(12)]
        assert {future.result().status_code for future in posts} == {503}
        assert {future.result().status_code for future in reads} == {200}


def test_a_dead_postgres_is_answered_promptly(
    outage_client: FlaskClient, own_servers: tuple[PostgresServer, RedisServer]
) -> None:
    postgres, _ = own_servers
    assert outage_client.get("/api/values/all").status_code == 200
    postgres.stop()
    # Lists kept in memory (listcache.py) are still current, so they are
    # served until they age out; after that each list needs Postgres.
    time.sleep(listcache.MAX_AGE_SECONDS)
    for path in ("/api/values/all", "/api/values/current"):
        response, took = timed(lambda: outage_client.get(path))  # noqa: B023
        assert response.status_code == 503
        assert took < 2.5, f"{path} took {took:.1f} s with Postgres down"
