"""How the API, its migration step and the worker reach Postgres: the course's variables, with TLS.

PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE, as libpq names them, and
PGSSLMODE and PGSSLROOTCERT for TLS. A Postgres reached over the network is
verified by default (verify-full: encrypted, and the server's certificate
checked against PGSSLROOTCERT, host name included); one on this machine
(localhost, 127.0.0.1, ::1) defaults to libpq's prefer, as in development.
Only the standard library (and redisconf's is_loopback) is imported here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .redisconf import is_loopback

# libpq's own names for sslmode.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING = ("verify-ca", "verify-full")


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    user: str
    database: str
    password: str
    port: int = 5432
    sslmode: str = "verify-full"
    # The CA bundle that verify-ca and verify-full check the server's
    # certificate against ("system": the system's CAs).
    sslrootcert: str | None = None

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for psycopg.connect or make_conninfo (user and password overridable)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.database,
            "password": self.password,
            "sslmode": self.sslmode,
            "connect_timeout": 3,
        }
        if self.sslrootcert:
            kwargs["sslrootcert"] = self.sslrootcert
        return kwargs | overrides

    def describe(self) -> str:
        """Where Postgres is, for logs and errors: never the password."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database} (sslmode={self.sslmode})"


def postgres_settings(env: Mapping[str, str], problems: list[str]) -> PostgresSettings:
    """Read the Postgres variables of `env`, adding what is wrong to `problems`."""

    def required(name: str, what: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            problems.append(f"{name} is required ({what})")
        return value

    host = required("PGHOST", "the Postgres server's host name")
    raw_port, port = env.get("PGPORT", "").strip() or "5432", 5432
    if not raw_port.isdigit():
        problems.append(f"PGPORT must be a whole number, got {raw_port!r}")
    elif not 1 <= int(raw_port) <= 65535:
        problems.append(f"PGPORT must be between 1 and 65,535, got {int(raw_port):,}")
    else:
        port = int(raw_port)
    default_mode = "prefer" if is_loopback(host) else "verify-full"
    sslmode = env.get("PGSSLMODE", "").strip() or default_mode
    sslrootcert = env.get("PGSSLROOTCERT", "").strip() or None
    if sslmode not in SSL_MODES:
        problems.append(f"PGSSLMODE must be one of {', '.join(SSL_MODES)}, got {sslmode!r}")
    if sslmode in VERIFYING and not sslrootcert:
        why = "" if "PGSSLMODE" in env else f" (the default for a Postgres reached over the network, PGHOST={host})"
        problems.append(
            f"PGSSLMODE={sslmode}{why} checks the server's certificate: set PGSSLROOTCERT to its CA bundle"
            " (RDS: Amazon's global-bundle.pem; Cloud SQL: the instance's server CA), or to 'system' for the"
            " system's CAs; only on a private network without TLS (Compose), PGSSLMODE=disable"
        )
    if sslrootcert and sslrootcert != "system" and not os.path.isfile(sslrootcert):
        problems.append(f"PGSSLROOTCERT={sslrootcert} is not a readable file")
    if sslrootcert and sslmode not in VERIFYING:
        problems.append(f"PGSSLROOTCERT is set but PGSSLMODE={sslmode} never checks it: use verify-full")
    if "PGPASSWORD" not in env:
        problems.append("PGPASSWORD is required (the Postgres user's password)")
    return PostgresSettings(
        host=host,
        port=port,
        user=required("PGUSER", "the Postgres user"),
        database=required("PGDATABASE", "the Postgres database"),
        # Not stripped: a password may legitimately start or end with a space.
        password=env.get("PGPASSWORD", ""),
        sslmode=sslmode,
        sslrootcert=sslrootcert,
    )
