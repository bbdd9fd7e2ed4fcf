"""The database's migration step: the API's least-privilege role, and its tables.

    python -m fibapi.migrate [--wait SECONDS]

Runs before the API (Compose's migrate service, the API pod's init container,
Beanstalk's migrate container, `make dev`), connecting as a user that may
create roles: the superuser, or a managed service's master user (RDS,
Cloud SQL), named by MIGRATION_PGUSER and MIGRATION_PGPASSWORD. It makes
PGUSER a role that can log in with PGPASSWORD and do nothing else (not a
superuser, no CREATEDB or CREATEROLE, no CREATE in the schema), creates the
tables by applying the numbered migrations in migrations/ that the
database has not had yet (each recorded in schema_migrations), and gives
that role the tables' ownership. The API,
connecting as PGUSER, can then read and write its own tables and nothing
else; it never runs DDL, and a database without the tables is a 503 naming
this step.

Idempotent: each run brings the database to that state (a changed PGPASSWORD
is applied), and runs at the same moment (several replicas starting) wait
for each other on an advisory lock. The password reaches the server only as
a SCRAM verifier, never in clear, so it is in no log.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from .pgconf import PostgresSettings, postgres_settings

# Any fixed 64-bit number: serialises migrations that start at the same moment.
LOCK_ID = 0x66696273746B  # "fibstk"

# The tables the API's role owns (the migrations make them); schema_migrations
# stays the migration user's, and the role may only read it.
TABLES = ("submissions", "indexes")
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(directory: Path | None = None) -> list[Migration]:
    """The numbered SQL files (NNNN_name.sql) of `directory` (MIGRATIONS_DIR), in order, numbered 1, 2, 3 ..."""
    directory = directory or MIGRATIONS_DIR
    found = []
    for path in sorted(directory.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append(Migration(int(number), name, path.read_text()))
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations in {directory} must be numbered 1, 2, 3 ... without a gap: {versions}")
    return found


class MigrationError(Exception):
    """The database cannot be brought to the state the API needs; the message says why."""


@dataclass(frozen=True)
class MigrationSettings:
    postgres: PostgresSettings  # where, and the API's role and password
    admin_user: str
    admin_password: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MigrationSettings:
        env = os.environ if environ is None else environ
        problems: list[str] = []
        postgres = postgres_settings(env, problems)
        admin_user = env.get("MIGRATION_PGUSER", "").strip()
        if not admin_user:
            problems.append(
                "MIGRATION_PGUSER is required (a user that may create roles: the superuser, or RDS's master user)"
            )
        if "MIGRATION_PGPASSWORD" not in env:
            problems.append("MIGRATION_PGPASSWORD is required (MIGRATION_PGUSER's password)")
        if admin_user and admin_user == postgres.user:
            problems.append(
                f"PGUSER and MIGRATION_PGUSER are both {admin_user!r}: the API needs a role of its own (say 'fibstack')"
            )
        if not postgres.password:
            problems.append("PGPASSWORD must not be empty: it becomes the API's role's password")
        if problems:
            raise MigrationError("invalid migration configuration:\n  - " + "\n  - ".join(problems))
        return cls(postgres, admin_user, env.get("MIGRATION_PGPASSWORD", ""))


def migrate(admin: psycopg.Connection, role: str, password: str) -> list[Migration]:
    """Bring the database that `admin` is connected to into the API's state (see the module's text).

    Returns the migrations applied now (none if it was up to date already).
    """
    ident = sql.Identifier(role)
    database = sql.Identifier(str(admin.info.dbname))
    with admin.transaction():
        admin.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        row = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        superuser = bool(row and row[0])
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            admin.execute(sql.SQL("CREATE ROLE {}").format(ident))
        verifier = admin.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        # Only a superuser may name these three (a role a CREATEROLE user
        # makes never has them); the check below holds either way.
        only_superuser = sql.SQL(" NOSUPERUSER NOREPLICATION NOBYPASSRLS") if superuser else sql.SQL("")
        admin.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN NOCREATEDB NOCREATEROLE{} PASSWORD {}").format(
                ident, only_superuser, sql.Literal(verifier)
            )
        )
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, ident))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
        # Before PostgreSQL 15 every role may create tables in public.
        if _can_create_in_public(admin, role):
            admin.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC, {}").format(ident))
        if not superuser:
            # To give the role the tables, a master user must be a member of it.
            admin.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident))
        applied = _apply_migrations(admin)
        # A table's new owner must be allowed to create in its schema: granted
        # for the hand-over only, in this transaction, so no one ever sees it.
        admin.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(ident))
        for table in TABLES:
            admin.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(table), ident))
        admin.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(ident))
        # The API and the worker check the version before they serve (contract.SCHEMA_VERSION).
        admin.execute(sql.SQL("GRANT SELECT ON schema_migrations TO {}").format(ident))
        _check_least_privilege(admin, role)
    return applied


def _apply_migrations(admin: psycopg.Connection) -> list[Migration]:
    """Apply, in order, every migration the database has not had yet (in the caller's transaction); those applied."""
    admin.execute(VERSIONS_TABLE)
    done = {version for (version,) in admin.execute("SELECT version FROM schema_migrations")}
    pending = [migration for migration in migrations() if migration.version not in done]
    for migration in pending:
        admin.execute(migration.sql)
        admin.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name)
        )
    return pending


def _can_create_in_public(admin: psycopg.Connection, role: str) -> bool:
    row = admin.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (role,)).fetchone()
    return bool(row and row[0])


def _check_least_privilege(admin: psycopg.Connection, role: str) -> None:
    row = admin.execute(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s",
        (role,),
    ).fetchone()
    assert row is not None
    names = ("SUPERUSER", "CREATEDB", "CREATEROLE", "REPLICATION", "BYPASSRLS")
    powers = [name for name, has in zip(names, row, strict=True) if has]
    if powers:
        raise MigrationError(f"the role {role!r} has {', '.join(powers)}, which the API must not: use another role")
    if _can_create_in_public(admin, role):
        raise MigrationError(f"the role {role!r} may still create tables in the schema public")


def connect_as_admin(settings: MigrationSettings, wait_seconds: float) -> psycopg.Connection:
    """A connection as MIGRATION_PGUSER, trying again for up to `wait_seconds` while Postgres starts."""
    deadline = time.monotonic() + wait_seconds
    kwargs = settings.postgres.connect_kwargs(
        user=settings.admin_user, password=settings.admin_password, application_name="fibstack-migrate"
    )
    while True:
        try:
            return psycopg.connect(**kwargs, autocommit=True)
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                where = f"{settings.postgres.describe()} as {settings.admin_user}"
                raise MigrationError(f"cannot connect to {where}: {exc}") from None
            print(f"fibapi.migrate: waiting for Postgres ({str(exc).strip().splitlines()[0]})", flush=True)
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fibapi.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wait", type=float, default=60, metavar="SECONDS", help="wait this long for Postgres")
    options = parser.parse_args(argv)
    try:
        settings = MigrationSettings.from_env()
        with connect_as_admin(settings, options.wait) as admin:
            applied = migrate(admin, settings.postgres.user, settings.postgres.password)
    except (MigrationError, psycopg.Error) as exc:
        print(f"fibapi.migrate: {exc}", file=sys.stderr, flush=True)
        return 2
    role = settings.postgres.user
    for migration in applied:
        print(f"fibapi.migrate: applied {migration.version:04d}_{migration.name}", flush=True)
    version = len(migrations())
    print(
        f"fibapi.migrate: {settings.postgres.describe()}: role {role} and its tables are in place"
        f" (schema version {version})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
