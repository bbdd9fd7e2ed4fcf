"""Fixtures shared by every suite: real Postgres and Redis servers.

They start once per test session on free ports (see stack/servers.py)
and are wiped between tests. The services connect to Postgres as the API's
own least-privilege role, which the migration step makes (fibapi/migrate.py);
pg_conn, for the tests' own checks, as the superuser.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from redis import Redis
from schema import migrate_server, superuser_connection

from stack.servers import PostgresServer, RedisServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    # Not under pytest's tmp_path: that is private to root, and as root the
    # server runs as the postgres user, which must reach its directory.
    workdir = Path(tempfile.mkdtemp(prefix="fibstack-postgres-"))
    server = PostgresServer(workdir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def services_env(postgres: PostgresServer, redis_server: RedisServer) -> dict[str, str]:
    """Environment for the API and worker, pointing at freshly wiped servers."""
    for server in (postgres, redis_server):
        if not server.running:  # an outage test left it stopped after a failure
            server.start()
    with superuser_connection(postgres) as conn:
        conn.execute("DROP TABLE IF EXISTS submissions, indexes, schema_migrations")
    # As every deployment runs it before the API: the API's own role, and its tables.
    migrate_server(postgres)
    Redis(port=redis_server.port).flushall()
    # For workers run inside the test process (queue_runner.drain), which read
    # their settings from the environment as the real worker does.
    os.environ.update(postgres.env())
    return postgres.env() | redis_server.env() | {"RECONCILE_INTERVAL_SECONDS": "0", "LOG_LEVEL": "WARNING"}


@pytest.fixture
def redis_client(services_env: dict[str, str], redis_server: RedisServer) -> Redis:
    return Redis(port=redis_server.port)


@pytest.fixture
def pg_conn(services_env: dict[str, str], postgres: PostgresServer) -> Iterator[psycopg.Connection]:
    with superuser_connection(postgres) as conn:
        yield conn
