"""The migration step (fibapi/migrate.py) against a test server, as deployments run it before the API."""

from __future__ import annotations

import psycopg
from fibapi.migrate import migrate

from stack.servers import PostgresServer


def superuser_connection(server: PostgresServer) -> psycopg.Connection:
    """A connection as the cluster's superuser (the tests' own checks, and the migration)."""
    env = server.env()
    return psycopg.connect(
        host=env["PGHOST"],
        port=server.port,
        user=server.user,
        password=server.password,
        dbname=server.database,
        sslmode=env.get("PGSSLMODE", "prefer"),
        sslrootcert=env.get("PGSSLROOTCERT"),
        autocommit=True,
    )


def migrate_server(server: PostgresServer) -> None:
    """The API's least-privilege role on `server`, with the tables it owns."""
    with superuser_connection(server) as conn:
        migrate(conn, server.app_user, server.app_password)
