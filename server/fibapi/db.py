"""Postgres: the durable record of every submission, and each index's state (docs/state.md).

Owns the connection pool and the queries. The tables and the role the API
connects as are made by the migration step (fibapi/migrate.py), never here:
the API's role may not create tables.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from flask import Flask, current_app
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from . import contract
from .config import Settings
from .errors import NotMigrated


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
    def record_submissions(conn: psycopg.Connection, indexes: list[int], jobs: dict[int, str]) -> dict[int, Recorded]:
        """A row per submission and one per distinct index, in one statement; each index's state after it.

        A group's statement (submissions.py): the same index twice counts
        twice. A new index is inserted pending with its job id from `jobs`,
        and a failed one goes back to pending with it: those are the ones to
        queue now (Recorded.queued_now), decided under the row's lock, so two
        API processes never both queue an index. Any other is unchanged. The
        distinct indexes are upserted in ascending order, so two processes'
        groups that share indexes lock their rows in the same order and never
        deadlock.
        """
        numbers = sorted(jobs)
        counts: dict[int, int] = {}
        for index in indexes:
            counts[index] = counts.get(index, 0) + 1
        rows = conn.execute(
            sql.SQL("""
            WITH submitted AS (
                INSERT INTO submissions (number) SELECT unnest(%(indexes)s::integer[]) RETURNING id, number
            ), recorded AS (
                INSERT INTO indexes AS i (number, submissions, job)
                SELECT * FROM unnest(%(numbers)s::integer[], %(counts)s::bigint[], %(jobs)s::text[]) ORDER BY 1
                ON CONFLICT (number) DO UPDATE SET
                    last_submitted_at = now(),
                    submissions = i.submissions + excluded.submissions,
                    status = CASE WHEN i.status = 'failed' THEN 'pending' ELSE i.status END,
                    job = CASE WHEN i.status = 'failed' THEN excluded.job ELSE i.job END,
                    queued_at = CASE WHEN i.status = 'failed' THEN now() ELSE i.queued_at END,
                    attempts = i.attempts + (i.status = 'failed')::integer
                RETURNING number, job, attempts, submissions, queued_at = now() AS queued_now, {state}
            )
            SELECT recorded.*, ids FROM recorded
            JOIN (SELECT number, array_agg(id) AS ids FROM submitted GROUP BY number) AS s USING (number)
            """).format(state=STATE),
            {
                "indexes": indexes,
                "numbers": numbers,
                "counts": [counts[number] for number in numbers],
                "jobs": [jobs[number] for number in numbers],
            },
        )
        found = {}
        for number, job, attempts, submissions, queued_now, *state, ids in rows:
            again = queued_now and attempts > 1
            found[number] = Recorded(number, state_fields(*state), job or "", queued_now, again, ids, submissions)
        return found

    @staticmethod
    def unrecord(conn: psycopg.Connection, refused: Sequence[Recorded], jobs: dict[int, str]) -> None:
        """Undo record_submissions for `refused` (admission refused them, or Redis failed): a 503 records nothing.

        Their submission rows go. An index their statement inserted goes too,
        and one it turned from failed to pending is failed again, unless
        another submission of it came in meanwhile and was answered 202 as
        pending: then it stays pending, and the reconcile pass queues it.
        """
        conn.execute(
            """
            WITH gone AS (
                DELETE FROM submissions WHERE id = ANY(%(ids)s)
            ), undo AS (
                SELECT * FROM unnest(%(numbers)s::integer[], %(jobs)s::text[], %(counts)s::bigint[],
                                     %(expected)s::bigint[]) AS u (number, job, n, expected)
            ), dropped AS (
                -- Inserted by the statement undone, and nobody submitted it since.
                DELETE FROM indexes AS i USING undo AS u
                WHERE i.number = u.number AND i.job = u.job AND i.status = 'pending' AND i.attempts = 1
                    AND i.submissions = u.expected AND u.expected = u.n
                RETURNING i.number
            )
            UPDATE indexes AS i SET
                submissions = i.submissions - u.n,
                -- Turned from failed to pending by it, and nobody submitted it since.
                status = CASE WHEN i.job = u.job AND i.status = 'pending' AND i.attempts > 1
                                   AND i.submissions = u.expected THEN 'failed' ELSE i.status END,
                attempts = CASE WHEN i.job = u.job AND i.status = 'pending' AND i.attempts > 1
                                     AND i.submissions = u.expected THEN i.attempts - 1 ELSE i.attempts END
            FROM undo AS u
            WHERE i.number = u.number AND i.number NOT IN (SELECT number FROM dropped)
            """,
            {
                "ids": [id_ for recorded in refused for id_ in recorded.submission_ids],
                "numbers": [recorded.index for recorded in refused],
                "jobs": [jobs.get(recorded.index, "") if recorded.queued_now else "" for recorded in refused],
                "counts": [len(recorded.submission_ids) for recorded in refused],
                "expected": [recorded.submissions for recorded in refused],
            },
        )

    @staticmethod
    def recent_submissions(conn: psycopg.Connection, limit: int) -> list[int]:
        rows = conn.execute("SELECT number FROM submissions ORDER BY id DESC LIMIT %s", (limit,))
        return [number for (number,) in rows]

    @staticmethod
    def recent_states(conn: psycopg.Connection, limit: int) -> list[tuple[int, dict[str, str]]]:
        """The most recently submitted distinct indexes, newest first, each with its state's fields."""
        rows = conn.execute(
            sql.SQL("SELECT number, {} FROM indexes ORDER BY last_submitted_at DESC, number LIMIT %s").format(STATE),
            (limit,),
        )
        return [(number, state_fields(*state)) for number, *state in rows]

    @staticmethod
    def state(conn: psycopg.Connection, index: int) -> dict[str, str] | None:
        """An index's state's fields (as contract.public_status takes them), or None if it was never submitted."""
        row = conn.execute(sql.SQL("SELECT {} FROM indexes WHERE number = %s").format(STATE), (index,)).fetchone()
        return state_fields(*row) if row else None

    # The reconcile pass's (reconcile.py).

    @staticmethod
    def pending_after(
        conn: psycopg.Connection, after: int, limit: int, older_than_seconds: float
    ) -> list[tuple[int, str, float]]:
        """Up to `limit` indexes above `after`, by number, pending longer than `older_than_seconds`:
        each with the job queued for it and how long ago (seconds)."""
        rows = conn.execute(
            """
            SELECT number, coalesce(job, ''), extract(epoch FROM now() - queued_at)::float8 FROM indexes
            WHERE status = 'pending' AND number > %s AND queued_at < now() - make_interval(secs => %s)
            ORDER BY number LIMIT %s
            """,
            (after, older_than_seconds, limit),
        )
        return [(number, job, age) for number, job, age in rows]

    @staticmethod
    def requeue(conn: psycopg.Connection, lost: Sequence[tuple[int, str]], job_id: str) -> list[int]:
        """Those of `lost` (index, job id) still pending for that job, given `job_id` instead; which they were.

        A compare-and-set: an index a worker recorded meanwhile, or another
        pass or a submission queued again, is left alone.
        """
        rows = conn.execute(
            """
            UPDATE indexes AS i SET job = %s, queued_at = now(), attempts = i.attempts + 1
            FROM unnest(%s::integer[], %s::text[]) AS l (number, job)
            WHERE i.number = l.number AND i.status = 'pending' AND coalesce(i.job, '') = l.job
            RETURNING i.number
            """,
            (job_id, [index for index, _ in lost], [job for _, job in lost]),
        )
        return sorted(number for (number,) in rows)


# An index's state: its columns, in state_fields' order (contract.STATUS_FIELDS').
STATE = sql.SQL(", ").join(map(sql.Identifier, contract.STATUS_FIELDS))


@dataclass(frozen=True, slots=True)
class Recorded:
    """An index as a group's statement left it (Database.record_submissions)."""

    index: int
    fields: dict[str, str]  # its state, as contract.public_status takes it
    job: str  # the job queued for its last attempt
    queued_now: bool  # this statement inserted it, or turned it from failed to pending: queue it now
    again: bool  # ... the latter: its cached "failed" must go
    submission_ids: list[int]  # the group's rows of it in submissions
    submissions: int  # its count of submissions, this statement's included


def state_fields(
    status: str, digits: int | None, head: str | None, tail: str | None, value: str | None,
    compute_ms: float | None, error: str | None,
) -> dict[str, str]:  # fmt: skip
    """A row's state as the status hash's fields (strings, "" for none): what contract.public_status takes.

    The error only while failed: a failed index queued again keeps it in its
    row (for an undo), but is pending.
    """
    fields: dict[str, Any] = {
        "status": status,
        "digits": str(digits) if digits is not None else "",
        "head": head or "",
        "tail": tail or "",
        "value": value or "",
        "compute_ms": f"{compute_ms:.3f}" if compute_ms is not None else "",
        "error": (error or "") if status == contract.FAILED else "",
    }
    return fields


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
