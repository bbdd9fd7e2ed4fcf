"""The migration step against a real Postgres: the API's role may do its work and nothing else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fibapi import contract
from fibapi import migrate as migration
from fibapi.migrate import MigrationError, MigrationSettings, migrate
from flask.testing import FlaskClient
from schema import superuser_connection

from stack.servers import PostgresServer


@pytest.fixture
def fresh(services_env: dict[str, str], pg_conn: psycopg.Connection) -> psycopg.Connection:
    """A database as a first deployment finds it: no tables, no role for the API."""
    drop_role(pg_conn, "fibstack_app")  # its tables and privileges with it
    pg_conn.execute("DROP TABLE IF EXISTS submissions, indexes, schema_migrations")
    return pg_conn


def drop_role(conn: psycopg.Connection, role: str) -> None:
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def as_role(postgres: PostgresServer, password: str | None = None) -> psycopg.Connection:
    env = postgres.env()
    return psycopg.connect(
        host=env["PGHOST"],
        port=postgres.port,
        user=postgres.app_user,
        password=password or postgres.app_password,
        dbname=postgres.database,
        autocommit=True,
    )


def tables_owned_by(conn: psycopg.Connection, role: str) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s", (role,))
    return {name for (name,) in rows}


def test_the_role_owns_the_tables_and_may_do_nothing_else(fresh: psycopg.Connection, postgres: PostgresServer) -> None:
    migrate(fresh, postgres.app_user, postgres.app_password)
    assert tables_owned_by(fresh, postgres.app_user) == {"submissions", "indexes"}
    with as_role(postgres) as conn:
        conn.execute("INSERT INTO submissions (number) VALUES (5)")  # its own tables: yes
        for forbidden in (
            "CREATE TABLE intruder (id int)",
            "CREATE ROLE intruder",
            "CREATE DATABASE intruder",
            "ALTER ROLE fibstack_app SUPERUSER",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)
        (superuser,) = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()  # type: ignore[misc]
        assert superuser is False


def test_migrating_again_changes_nothing_but_a_new_password(
    fresh: psycopg.Connection, postgres: PostgresServer
) -> None:
    migrate(fresh, postgres.app_user, postgres.app_password)
    with as_role(postgres) as conn:
        conn.execute("INSERT INTO submissions (number) VALUES (5)")
    migrate(fresh, postgres.app_user, "a-rotated-password")
    with as_role(postgres, "a-rotated-password") as conn:
        assert conn.execute("SELECT number FROM submissions").fetchall() == [(5,)]  # the data stays
    with pytest.raises(psycopg.OperationalError):
        as_role(postgres)  # the old password no longer works
    migrate(fresh, postgres.app_user, postgres.app_password)


def test_the_password_never_reaches_the_server_in_clear(fresh: psycopg.Connection, postgres: PostgresServer) -> None:
    fresh.execute("SET log_statement = 'all'")  # so the server would log it, if it were sent
    migrate(fresh, postgres.app_user, postgres.app_password)
    (stored,) = fresh.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (postgres.app_user,)).fetchone()  # type: ignore[misc]
    assert stored.startswith("SCRAM-SHA-256$")
    assert postgres.app_password not in postgres.log.read_text()


def test_replicas_migrating_at_once_do_not_collide(fresh: psycopg.Connection, postgres: PostgresServer) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def replica() -> None:
        try:
            with superuser_connection(postgres) as conn:
                barrier.wait()
                migrate(conn, postgres.app_user, postgres.app_password)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert tables_owned_by(fresh, postgres.app_user) == {"submissions", "indexes"}


@pytest.fixture
def master_user(fresh: psycopg.Connection, postgres: PostgresServer) -> Iterator[tuple[str, str]]:
    """A user like RDS's or Cloud SQL's master user: may create roles and owns the database, not a superuser."""
    drop_role(fresh, "fibstack_master")
    fresh.execute("CREATE ROLE fibstack_master LOGIN CREATEROLE CREATEDB PASSWORD 'master-password'")
    fresh.execute(f'ALTER DATABASE "{postgres.database}" OWNER TO fibstack_master')
    fresh.execute("ALTER SCHEMA public OWNER TO fibstack_master")
    yield "fibstack_master", "master-password"
    fresh.execute(f'ALTER DATABASE "{postgres.database}" OWNER TO "{postgres.user}"')
    fresh.execute("ALTER SCHEMA public OWNER TO pg_database_owner")
    drop_role(fresh, "fibstack_app")
    drop_role(fresh, "fibstack_master")


def test_a_managed_services_master_user_can_run_it(
    master_user: tuple[str, str], postgres: PostgresServer, fresh: psycopg.Connection
) -> None:
    env = postgres.env() | {"MIGRATION_PGUSER": master_user[0], "MIGRATION_PGPASSWORD": master_user[1]}
    with migration.connect_as_admin(MigrationSettings.from_env(env), wait_seconds=5) as admin:
        migrate(admin, postgres.app_user, postgres.app_password)
    assert tables_owned_by(fresh, postgres.app_user) == {"submissions", "indexes"}
    with as_role(postgres) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE intruder (id int)")


def test_the_api_and_the_migration_need_roles_of_their_own(postgres: PostgresServer) -> None:
    env = postgres.migration_env() | {"MIGRATION_PGUSER": postgres.app_user}
    with pytest.raises(MigrationError, match="the API needs a role of its own"):
        MigrationSettings.from_env(env)


def test_the_command_says_what_it_did(
    fresh: psycopg.Connection,
    postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in postgres.migration_env().items():
        monkeypatch.setenv(name, value)
    assert migration.main(["--wait", "5"]) == 0
    out = capsys.readouterr().out
    assert "applied 0001_tables" in out
    assert "applied 0002_index_state" in out
    assert "role fibstack_app and its tables are in place (schema version 2)" in out
    assert migration.main(["--wait", "5"]) == 0
    assert "applied" not in capsys.readouterr().out  # up to date: nothing again
    monkeypatch.setenv("MIGRATION_PGPASSWORD", "wrong")
    assert migration.main(["--wait", "0"]) == 2
    assert "cannot connect" in capsys.readouterr().err


def test_without_the_tables_the_api_says_to_migrate(client: FlaskClient, pg_conn: psycopg.Connection) -> None:
    pg_conn.execute("DROP TABLE submissions, indexes, schema_migrations")
    for response in (client.get("/api/values/all"), client.post("/api/values", json={"index": 3})):
        assert response.status_code == 503
        assert response.get_json()["code"] == "database_not_migrated"
        assert "python -m fibapi.migrate" in response.get_json()["error"]
    ready = client.get("/api/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["postgres"] == "unavailable: NotMigrated"


# The schema as fibstack made it before migrations were numbered (its SCHEMA
# constant, verbatim): what every existing deployment has.
SCHEMA_BEFORE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS submissions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number       integer NOT NULL CHECK (number >= 0),
    submitted_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS indexes (
    number             integer PRIMARY KEY CHECK (number >= 0),
    first_submitted_at timestamptz NOT NULL DEFAULT now(),
    last_submitted_at  timestamptz NOT NULL DEFAULT now(),
    submissions        bigint NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS indexes_last_submitted_at ON indexes (last_submitted_at DESC);
"""


def test_a_database_from_before_migrations_is_upgraded_with_its_data(
    fresh: psycopg.Connection, postgres: PostgresServer
) -> None:
    fresh.execute(SCHEMA_BEFORE_MIGRATIONS)
    fresh.execute("INSERT INTO submissions (number, submitted_at) SELECT n % 50, now() - interval '1 day'"
                  " FROM generate_series(1, 200) AS n")  # fmt: skip
    fresh.execute(
        "INSERT INTO indexes (number, first_submitted_at, last_submitted_at, submissions)"
        " SELECT number, min(submitted_at), max(submitted_at), count(*) FROM submissions GROUP BY number"
    )
    before = fresh.execute("SELECT * FROM indexes ORDER BY number").fetchall()
    applied = migrate(fresh, postgres.app_user, postgres.app_password)
    assert [m.version for m in applied] == [1, 2]  # 0001 finds its tables there: only recorded
    assert fresh.execute("SELECT count(*) FROM submissions").fetchone() == (200,)
    after = fresh.execute(
        "SELECT number, first_submitted_at, last_submitted_at, submissions, status, attempts, digits"
        " FROM indexes ORDER BY number"
    ).fetchall()
    assert [row[:4] for row in after] == before  # nothing recorded is lost or changed
    # Their results were Redis's only: each is pending, for the reconcile pass to queue.
    assert {row[4:] for row in after} == {("pending", 1, None)}
    assert tables_owned_by(fresh, postgres.app_user) == {"submissions", "indexes"}
    with as_role(postgres) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (2,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM schema_migrations")  # read only for the API's role
    assert migrate(fresh, postgres.app_user, postgres.app_password) == []


def test_the_migration_files_are_numbered_without_a_gap(tmp_path: Path) -> None:
    assert [m.version for m in migration.migrations()] == list(range(1, contract.SCHEMA_VERSION + 1))
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0003_c.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="without a gap"):
        migration.migrations(tmp_path)


def test_a_failing_migration_applies_nothing(
    fresh: psycopg.Connection, postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for source in migration.migrations():
        (tmp_path / f"{source.version:04d}_{source.name}.sql").write_text(source.sql)
    (tmp_path / f"{contract.SCHEMA_VERSION + 1:04d}_broken.sql").write_text(
        "ALTER TABLE indexes ADD COLUMN extra int; SELECT no_such_function()"
    )
    monkeypatch.setattr(migration, "MIGRATIONS_DIR", tmp_path)
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(fresh, postgres.app_user, postgres.app_password)
    assert fresh.execute("SELECT to_regclass('indexes')").fetchone() == (None,)  # all of it, or none


def test_an_older_schema_is_refused_with_the_step_to_run(client: FlaskClient, pg_conn: psycopg.Connection) -> None:
    pg_conn.execute("DELETE FROM schema_migrations WHERE version = 2")
    ready = client.get("/api/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["postgres"] == "unavailable: NotMigrated"
