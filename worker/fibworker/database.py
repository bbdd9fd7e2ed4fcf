"""Postgres, from the worker's side: where each result is recorded, before anything says so.

The rows are the API's (server/fibapi/migrations/); the worker connects as
the same role, and only ever updates an index's state: done with its result,
or failed with why. One connection, used by one thread at a time (a lock):
the recorder's thread (recorder.py) and the job's (a batch asks which of its
indexes are still its own, a failure is recorded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from . import contract
from .pgconf import PostgresSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


class NotMigrated(Exception):
    """Postgres answers, but its schema is older than this worker needs."""


class Database:
    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """The connection (autocommit), opened again if the last use found it broken."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    **self.settings.connect_kwargs(application_name="fibstack-worker"), autocommit=True
                )
            try:
                yield self._conn
            except psycopg.OperationalError:
                self._conn.close()  # broken (a restart, a failover): a new one next time
                raise

    def _run(self, query: Callable[[psycopg.Connection], T]) -> T:
        """`query` on the connection; once more on a new one if the old one turned out broken
        (Postgres restarted while it sat idle), so a restart does not fail the job at hand."""
        try:
            with self.connection() as conn:
                return query(conn)
        except psycopg.OperationalError:
            with self.connection() as conn:
                return query(conn)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def check_schema(self) -> None:
        """NotMigrated unless the database has every migration this worker needs (contract.SCHEMA_VERSION)."""
        with self.connection() as conn:
            try:
                row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
            except psycopg.errors.UndefinedTable:
                raise NotMigrated("the tables are missing") from None
        version = int(row[0]) if row and row[0] is not None else 0
        if version < contract.SCHEMA_VERSION:
            raise NotMigrated(f"the schema is at version {version}, this worker needs {contract.SCHEMA_VERSION}")

    def record_done(self, results: Sequence[tuple[int, dict[str, str]]]) -> None:
        """Each (index, contract.done_fields) recorded done, in one statement and one commit.

        Whatever job computed it: F(n) is F(n), so a second job for the same
        index (a recomputation, a job healed twice) writes the same result.
        """
        columns: dict[str, list[Any]] = {"number": [], "digits": [], "head": [], "tail": [], "value": [], "ms": []}
        for index, fields in results:
            columns["number"].append(index)
            columns["digits"].append(int(fields["digits"]))
            columns["head"].append(fields["head"])
            columns["tail"].append(fields["tail"])
            columns["value"].append(fields["value"] or None)
            columns["ms"].append(float(fields["compute_ms"]))
        with self.connection() as conn:
            conn.execute(
                """
                UPDATE indexes AS i
                SET status = 'done', digits = r.digits, head = r.head, tail = r.tail, value = r.value,
                    compute_ms = r.ms, error = NULL, computed_at = now()
                FROM unnest(%(number)s::integer[], %(digits)s::integer[], %(head)s::text[], %(tail)s::text[],
                            %(value)s::text[], %(ms)s::double precision[]) AS r (number, digits, head, tail, value, ms)
                WHERE i.number = r.number
                """,
                columns,
            )

    def record_failed(self, indexes: Sequence[int], error: str, job_id: str) -> list[int]:
        """Those of `indexes` still pending for the job `job_id`, recorded failed with `error`; which they were.

        Only those: an index another job has taken over (the reconcile pass
        queued it again) or computed meanwhile is left as it is.
        """
        rows = self._run(
            lambda conn: conn.execute(
                """
                UPDATE indexes SET status = 'failed', error = %s, computed_at = now()
                WHERE number = ANY(%s) AND status = 'pending' AND job = %s
                RETURNING number
                """,
                (error, list(indexes), job_id),
            ).fetchall()
        )
        return sorted(number for (number,) in rows)

    def pending_for(self, indexes: Sequence[int], job_id: str) -> list[int]:
        """Those of `indexes` still pending for the job `job_id`, in their order (a batch skips the others)."""
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT number FROM indexes WHERE number = ANY(%s) AND status = 'pending' AND job = %s",
                (list(indexes), job_id),
            ).fetchall()
        )
        mine = {number for (number,) in rows}
        return [index for index in indexes if index in mine]


def wait_until_ready(database: Database, waiting: Callable[[str], None]) -> None:
    """Return once Postgres answers with the schema this worker needs; `waiting(why)` between tries."""
    delay = 0.5
    while True:
        try:
            database.check_schema()
            return
        except (psycopg.OperationalError, NotMigrated) as exc:
            waiting(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
