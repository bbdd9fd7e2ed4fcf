"""Postgres: the durable record of every submission.

Owns the connection pool and the queries. The tables and the role the API
connects as are made by the migration step (fibapi/migrate.py), never here:
the API's role may not create tables.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from flask import Flask, current_app
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from . import contract
from .config import Settings


class NotMigrated(Exception):
    """Postgres answers, but without the tables (or columns) this version needs: the migration step has not run."""


class Database:
    def __init__(self, settings: Settings) -> None:
        conninfo = make_conninfo(**settings.postgres.connect_kwargs(application_name="fibstack-api"))
        self.pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=10,
            open=False,
            # Each query commits by itself: one round trip, where BEGIN, query
            # and COMMIT took three. Every write here is a single statement.
            kwargs={"autocommit": True},
            # Wait at most a second for a connection: while Postgres is down, a
            # request is answered 503 promptly rather than hanging.
            timeout=1,
            # Connections broken by a Postgres restart are replaced, not handed out.
            check=check_idle_connection,
            # The pool's background reconnection backs off exponentially; stop it
            # early so that, once Postgres is back, the next request reconnects
            # at once instead of waiting out a long back-off.
            reconnect_timeout=10,
            name="fibstack",
            configure=self._configure,
        )
        self._configurers: list[Callable[[psycopg.Connection], object]] = []

    def configure_connections(self, configurer: Callable[[psycopg.Connection], object]) -> None:
        """Run `configurer` on every new connection of the pool (tracing instruments them)."""
        self._configurers.append(configurer)

    def _configure(self, conn: psycopg.Connection) -> None:
        for configurer in self._configurers:
            configurer(conn)

    def open(self) -> None:
        # wait=False: the API starts (and answers 503) while Postgres is still down.
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection (autocommit), checked to work."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            raise NotMigrated(str(exc)) from None

    def ping(self, timeout: float = 0.5) -> None:
        """Raise unless Postgres answers, migrated to contract.SCHEMA_VERSION, within about `timeout` seconds.

        Waits at most `timeout` for a pooled connection, then lets the server
        spend at most the same on the query; a server that does not answer at
        all is bounded by the caller's deadline (health.py).
        """
        with self.pool.connection(timeout=timeout) as conn:
            check_schema(conn, statement_timeout=timeout)

    # Queries. Each takes a connection from connection().

    @staticmethod
    def record_submissions(conn: psycopg.Connection, indexes: list[int]) -> None:
        """A row per submission and one per distinct index, in one statement: all or none are committed.

        A group's statement (submissions.py): the same index twice counts
        twice. The distinct indexes are upserted in ascending order, so two
        processes' groups that share indexes lock their rows in the same
        order and never deadlock.
        """
        conn.execute(
            """
            WITH submission AS (
                INSERT INTO submissions (number) SELECT unnest(%(indexes)s::integer[])
            )
            INSERT INTO indexes (number, submissions)
            SELECT number, count(*) FROM unnest(%(indexes)s::integer[]) AS submitted (number)
            GROUP BY number ORDER BY number
            ON CONFLICT (number) DO UPDATE
            SET last_submitted_at = now(), submissions = indexes.submissions + excluded.submissions
            """,
            {"indexes": indexes},
        )

    @staticmethod
    def recent_submissions(conn: psycopg.Connection, limit: int) -> list[int]:
        rows = conn.execute("SELECT number FROM submissions ORDER BY id DESC LIMIT %s", (limit,))
        return [number for (number,) in rows]

    @staticmethod
    def recent_indexes(conn: psycopg.Connection, limit: int) -> list[int]:
        rows = conn.execute("SELECT number FROM indexes ORDER BY last_submitted_at DESC, number LIMIT %s", (limit,))
        return [number for (number,) in rows]

    @staticmethod
    def is_recorded(conn: psycopg.Connection, index: int) -> bool:
        row = conn.execute("SELECT 1 FROM indexes WHERE number = %s", (index,)).fetchone()
        return row is not None

    @staticmethod
    def all_indexes(conn: psycopg.Connection, batch: int = 1000) -> Iterator[int]:
        """Every recorded index, streamed with a server-side cursor (which lives in a transaction)."""
        with conn.transaction(), conn.cursor(name="all_indexes") as cursor:
            cursor.itersize = batch
            cursor.execute("SELECT number FROM indexes ORDER BY number")
            for (number,) in cursor:
                yield number


def check_schema(conn: psycopg.Connection, statement_timeout: float = 0) -> int:
    """The database's schema version; NotMigrated unless it is contract.SCHEMA_VERSION or newer."""
    try:
        with conn.transaction():
            if statement_timeout:
                conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout * 1000)}")
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    except psycopg.errors.UndefinedTable:
        raise NotMigrated("the tables are missing") from None
    version = int(row[0]) if row and row[0] is not None else 0
    if version < contract.SCHEMA_VERSION:
        raise NotMigrated(f"the schema is at version {version}, this version needs {contract.SCHEMA_VERSION}")
    return version


def check_idle_connection(conn: psycopg.Connection) -> None:
    """Raise if the server closed this pooled connection meanwhile (a restart, a killed backend).

    Postgres says so on the socket (an error message, then end of file), so
    the socket of such a connection is readable, while that of a healthy
    idle one is not: a poll, where psycopg_pool's own check sends a query,
    a round trip on every request (a fifth of a submission's CPU).
    """
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)  # reads what is there: raises if it was the end


def get_db() -> Database:
    db: Database = current_app.extensions["fibstack.db"]
    return db


def init_app(app: Flask, settings: Settings) -> Database:
    db = Database(settings)
    app.extensions["fibstack.db"] = db
    return db
