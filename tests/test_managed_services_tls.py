"""The API and the worker against Postgres and Redis that require TLS (and AUTH), as RDS and ElastiCache can.

Stand-ins on this machine: a Postgres that accepts TLS connections only, and a
Redis listening on a TLS port only with a password required; both present a
certificate from a throw-away CA, which the services verify, host name included.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from processes import API, start_worker
from schema import migrate_server

from stack.servers import Certificates, PostgresServer, RedisServer


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresServer, RedisServer]]:
    certificates = Certificates(tmp_path_factory.mktemp("certificates"))
    pg_dir = Path(tempfile.mkdtemp(prefix="fibstack-tls-postgres-"))  # reachable by the postgres user
    postgres = PostgresServer(pg_dir, tls=certificates)
    cache = RedisServer(tmp_path_factory.mktemp("tls-redis"), tls=certificates, password="auth-token-" + "x" * 16)
    postgres.start()
    cache.start()
    migrate_server(postgres)  # over TLS too: the superuser's connection verifies the server
    yield postgres, cache
    postgres.stop()
    cache.stop()
    shutil.rmtree(pg_dir, ignore_errors=True)


def test_the_stand_ins_really_refuse_plain_connections(managed: tuple[PostgresServer, RedisServer]) -> None:
    postgres, cache = managed
    env = postgres.env()
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|pg_hba\.conf"):
        psycopg.connect(host="127.0.0.1", port=postgres.port, user=env["PGUSER"], password=env["PGPASSWORD"],
                        dbname=env["PGDATABASE"], sslmode="disable", connect_timeout=3)  # fmt: skip
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(port=cache.port, password=cache.password, socket_timeout=3).ping()
    tls_without_auth = redis.Redis(host="localhost", port=cache.port, ssl=True, ssl_ca_certs=str(cache.tls.ca))  # type: ignore[union-attr]
    with pytest.raises(redis.exceptions.AuthenticationError):
        tls_without_auth.ping()


def test_submissions_are_computed_over_tls_with_auth(
    managed: tuple[PostgresServer, RedisServer], tmp_path: Path
) -> None:
    postgres, cache = managed
    env = postgres.env() | cache.env() | {"RECONCILE_INTERVAL_SECONDS": "0", "LOG_LEVEL": "WARNING"}
    assert env["PGSSLMODE"] == "verify-full"
    assert env["REDIS_TLS"] == "1"
    api = API(env, tmp_path / "api.log")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        assert requests.get(f"{api.url}/api/readyz", timeout=5).json()["checks"] == {"postgres": "ok", "redis": "ok"}
        response = requests.post(f"{api.url}/api/values", json={"index": "90"}, timeout=10)
        assert response.status_code == 202, response.text
        deadline = time.monotonic() + 30
        while (status := requests.get(f"{api.url}/api/values/90", timeout=5).json())["status"] == "pending":
            assert time.monotonic() < deadline, "F(90) was not computed over TLS"
            time.sleep(0.2)
        assert status["value"] == "2880067194370816120"
        assert requests.get(f"{api.url}/api/values/all", timeout=5).json() == [{"number": 90}]
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        api.stop()


def test_a_wrong_ca_is_refused_not_ignored(managed: tuple[PostgresServer, RedisServer], tmp_path: Path) -> None:
    postgres, cache = managed
    stranger = Certificates(tmp_path / "other-ca")  # a CA that did not sign the servers' certificates
    env = postgres.env() | cache.env() | {"RECONCILE_INTERVAL_SECONDS": "0", "LOG_LEVEL": "WARNING"}
    env |= {"PGSSLROOTCERT": str(stranger.ca), "REDIS_TLS_CA_FILE": str(stranger.ca)}
    api = API(env, tmp_path / "api.log")
    try:
        ready = requests.get(f"{api.url}/api/readyz", timeout=5)
        assert ready.status_code == 503
        assert all(check.startswith("unavailable") for check in ready.json()["checks"].values())
        assert requests.post(f"{api.url}/api/values", json={"index": "5"}, timeout=10).status_code == 503
    finally:
        api.stop()


def test_live_events_arrive_over_tls_and_streams_stay_open(
    managed: tuple[PostgresServer, RedisServer], tmp_path: Path
) -> None:
    from sse import events, open_stream, wait_for

    postgres, cache = managed
    env = postgres.env() | cache.env() | {"RECONCILE_INTERVAL_SECONDS": "0", "LOG_LEVEL": "WARNING"}
    api = API(env, tmp_path / "api.log", workers=2)
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        for attempt in range(4):
            # Pages come and go between submissions, as in a browser session.
            streams = [open_stream(api.url) for _ in range(3)]
            readers = [events(stream) for stream in streams]
            index = 500 + attempt
            assert requests.post(f"{api.url}/api/values", json={"index": str(index)}, timeout=10).status_code == 202
            for reader in readers:
                assert wait_for(reader, index).data["status"] == "done"
            for stream in streams:
                stream.close()
            time.sleep(attempt * 2)  # lets each process's stream reader notice it has no one left
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        api.stop()
