from __future__ import annotations

import time

import psycopg
from fibapi.config import Settings
from fibapi.db import Database


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
