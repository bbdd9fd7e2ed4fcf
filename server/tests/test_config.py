from __future__ import annotations

from pathlib import Path

import pytest
from fibapi.config import ConfigError, Settings

# Postgres and Redis on this machine, as in development.
COMPLETE = {
    "REDIS_HOST": "localhost",
    "PGHOST": "localhost",
    "PGUSER": "fibstack",
    "PGDATABASE": "fibstack",
    "PGPASSWORD": "secret",
}


def test_course_names_and_defaults() -> None:
    settings = Settings.from_env(COMPLETE)
    assert (settings.redis.port, settings.postgres.port, settings.max_index) == (6379, 5432, 10_000_000)
    assert settings.postgres.sslmode == "prefer"  # this machine: development


def test_a_postgres_over_the_network_is_verified_by_default(tmp_path: Path) -> None:
    over_the_network = COMPLETE | {"PGHOST": "fibstack.abc123.eu-west-1.rds.amazonaws.com"}
    with pytest.raises(ConfigError, match=r"verify-full \(the default for a Postgres reached over the network"):
        Settings.from_env(over_the_network)
    bundle = tmp_path / "global-bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env(over_the_network | {"PGSSLROOTCERT": str(bundle)})
    assert (settings.postgres.sslmode, settings.postgres.sslrootcert) == ("verify-full", str(bundle))
    # Saying so for a private network without TLS (Compose) is allowed, never silently.
    assert Settings.from_env(over_the_network | {"PGSSLMODE": "disable"}).postgres.sslmode == "disable"


def test_missing_variables_are_all_named() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({})
    for name in COMPLETE:
        assert f"{name} is required" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_INDEX", "ten", "MAX_INDEX must be a whole number"),
        ("MAX_INDEX", "-5", "MAX_INDEX must be between"),
        ("PGPORT", "0", "PGPORT must be between"),
        ("REDIS_PORT", "6379x", "REDIS_PORT must be a whole number"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL must be"),
    ],
)
def test_bad_values_are_explained(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(COMPLETE | {name: value})


def test_empty_password_is_allowed_when_set() -> None:
    assert Settings.from_env(COMPLETE | {"PGPASSWORD": ""}).postgres.password == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"PGSSLMODE": "on"}, "PGSSLMODE must be one of"),
        ({"PGSSLMODE": "verify-full"}, "set PGSSLROOTCERT to its CA bundle"),
        ({"PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/nonexistent.pem"}, "is not a readable file"),
        ({"PGSSLROOTCERT": "system"}, "PGSSLMODE=prefer never checks it"),
        ({"REDIS_URL": "rediss://r"}, "REDIS_URL is set, so REDIS_HOST must not be"),
    ],
)
def test_tls_settings_that_cannot_work_stop_the_start(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(COMPLETE | extra)


def test_tls_to_postgres_as_on_rds(tmp_path: Path) -> None:
    bundle = tmp_path / "global-bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env(COMPLETE | {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(bundle)})
    assert (settings.postgres.sslmode, settings.postgres.sslrootcert) == ("verify-full", str(bundle))
    assert Settings.from_env(COMPLETE | {"PGSSLMODE": "require"}).postgres.sslmode == "require"
