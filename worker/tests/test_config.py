from __future__ import annotations

import pytest
from fibworker.config import ConfigError, Settings

# Postgres, which every worker needs (where it records each result).
PG = {"PGHOST": "localhost", "PGUSER": "fibstack", "PGPASSWORD": "secret", "PGDATABASE": "postgres"}


def test_defaults() -> None:
    settings = Settings.from_env(PG | {"REDIS_HOST": "localhost"})
    assert (settings.redis.host, settings.redis.port) == ("localhost", 6379)
    assert settings.heartbeat_seconds < settings.liveness_ttl_seconds


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"REDIS_PORT": "sixty", "LOG_LEVEL": "loud"})
    message = str(info.value)
    assert "REDIS_HOST is required" in message
    assert "PGHOST is required" in message
    assert "REDIS_PORT must be a whole number" in message
    assert "LOG_LEVEL" in message


def test_port_range() -> None:
    with pytest.raises(ConfigError, match="REDIS_PORT must be between"):
        Settings.from_env({"REDIS_HOST": "localhost", "REDIS_PORT": "70000"})


def test_heartbeat_settings() -> None:
    settings = Settings.from_env(PG | {"REDIS_HOST": "localhost"})
    # The probe's threshold must leave room for an idle loop's turn.
    from fibworker.heartbeat import LOOP_SECONDS

    assert settings.stall_seconds > 2 * LOOP_SECONDS
    custom = Settings.from_env(
        PG | {"REDIS_HOST": "localhost", "WORKER_HEARTBEAT_FILE": "/run/beat", "WORKER_STALL_SECONDS": "90"}
    )
    assert (custom.heartbeat_file, custom.stall_seconds) == ("/run/beat", 90)
    with pytest.raises(ConfigError, match="WORKER_STALL_SECONDS must be between"):
        Settings.from_env(PG | {"REDIS_HOST": "localhost", "WORKER_STALL_SECONDS": "1"})


def test_the_cache_cap_and_its_old_name() -> None:
    assert Settings.from_env(PG | {"REDIS_HOST": "localhost", "CACHE_MAX_BYTES": "1000000"}).cache_max_bytes == 10**6
    with pytest.raises(ConfigError, match="VALUES_MAX_BYTES is now CACHE_MAX_BYTES"):
        Settings.from_env(PG | {"REDIS_HOST": "localhost", "VALUES_MAX_BYTES": "1000000"})
