from __future__ import annotations

import threading
import time

import psycopg
from fibapi.config import Settings
from fibapi.db import Database, create_schema


def test_schema_creation_is_safe_when_replicas_start_together(settings: Settings, pg_conn: psycopg.Connection) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def start_replica() -> None:
        try:
            with psycopg.connect(
                host=settings.pg_host,
                port=settings.pg_port,
                user=settings.pg_user,
                password=settings.pg_password,
                dbname=settings.pg_database,
            ) as conn:
                barrier.wait()
                create_schema(conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start_replica) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    tables = {name for (name,) in pg_conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"submissions", "indexes"}


def test_database_refuses_negative_indexes(settings: Settings, pg_conn: psycopg.Connection) -> None:
    create_schema(pg_conn)
    try:
        pg_conn.execute("INSERT INTO submissions (number) VALUES (-1)")
    except psycopg.errors.CheckViolation:
        return
    raise AssertionError("a negative index was stored")


def test_init_db_command_creates_the_tables(app, pg_conn: psycopg.Connection) -> None:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert "Schema is in place" in result.output
    tables = {name for (name,) in pg_conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {"submissions", "indexes"}


def test_connections_a_restart_broke_are_never_handed_out(settings: Settings, pg_conn: psycopg.Connection) -> None:
    db = Database(settings)
    db.pool.open(wait=True)
    try:
        with db.connection() as conn:
            conn.execute("SELECT 1")
        # Killed backends, as on a restart: the pooled connection's server side is gone.
        pg_conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'fibstack-api'"
        )
        time.sleep(0.2)
        with db.connection() as conn:  # not the broken one: that would raise here
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        db.close()
