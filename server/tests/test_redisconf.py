"""Redis settings (fibapi/redisconf.py, the same file as the worker's): every form, every wrong combination."""

from __future__ import annotations

from pathlib import Path

import pytest
from fibapi.redisconf import RedisSettings, redis_settings


def read(env: dict[str, str]) -> tuple[RedisSettings, list[str]]:
    problems: list[str] = []
    return redis_settings(env, problems), problems


def test_the_course_variables() -> None:
    settings, problems = read({"REDIS_HOST": "redis", "REDIS_PORT": "6380", "REDIS_PASSWORD": "pw"})
    assert problems == []
    assert settings.client_kwargs() == {"host": "redis", "port": 6380, "db": 0, "password": "pw"}


@pytest.mark.parametrize("env", [{"REDIS_HOST": "redis"}, {"REDIS_URL": "redis://cache:6379/0"}])
def test_a_redis_over_the_network_must_require_auth(env: dict[str, str]) -> None:
    _, problems = read(env)
    assert len(problems) == 1
    assert problems[0].startswith("REDIS_PASSWORD is required: Redis at ")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_on_this_machine_auth_is_optional(host: str) -> None:
    assert read({"REDIS_HOST": host})[1] == []


def test_tls_and_auth_as_on_elasticache(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings, problems = read(
        {
            "REDIS_HOST": "master.x.cache.example",
            "REDIS_TLS": "1",
            "REDIS_PASSWORD": " token ",
            "REDIS_TLS_CA_FILE": str(ca),
        }
    )
    assert problems == []
    assert settings.client_kwargs() == {
        "host": "master.x.cache.example",
        "port": 6379,
        "db": 0,
        "password": " token ",
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": str(ca),
    }
    assert "token" not in settings.describe()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@cache:6390/2", RedisSettings("cache", 6390, 2, None, "pw")),
        ("rediss://:p%40ss@cache", RedisSettings("cache", 6379, 0, None, "p@ss", True)),
        ("rediss://app:secret@cache:6380/0", RedisSettings("cache", 6380, 0, "app", "secret", True)),
    ],
)
def test_a_url(url: str, expected: RedisSettings) -> None:
    assert read({"REDIS_URL": url}) == (expected, [])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "REDIS_HOST is required"),
        ({"REDIS_HOST": "r", "REDIS_TLS": "maybe"}, "REDIS_TLS must be 1 or 0"),
        ({"REDIS_HOST": "r", "REDIS_PORT": "x"}, "REDIS_PORT must be a whole number"),
        ({"REDIS_HOST": "r", "REDIS_PORT": "70000"}, "REDIS_PORT must be between"),
        ({"REDIS_URL": "redis://r", "REDIS_HOST": "r"}, "REDIS_URL is set, so REDIS_HOST must not be"),
        ({"REDIS_URL": "redis://r", "REDIS_PASSWORD": "p"}, "REDIS_URL is set, so REDIS_PASSWORD must not be"),
        ({"REDIS_URL": "http://r"}, "REDIS_URL must start with redis:// or rediss://"),
        ({"REDIS_URL": "redis://r/zero"}, "database must be a number"),
        ({"REDIS_URL": "redis://r:99999"}, "port must be a number"),
        ({"REDIS_HOST": "r", "REDIS_TLS_CA_FILE": "/etc/hostname"}, "TLS is off"),
        ({"REDIS_HOST": "r", "REDIS_TLS": "1", "REDIS_TLS_CA_FILE": "/nonexistent.pem"}, "is not a readable file"),
    ],
)
def test_wrong_combinations_are_refused_with_a_clear_message(env: dict[str, str], message: str) -> None:
    _, problems = read(env)
    assert any(message in problem for problem in problems), problems
