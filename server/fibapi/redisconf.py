"""How the API and the worker reach Redis: host and port, or a URL, with TLS and AUTH.

Each image carries its own copy of this file (server/fibapi/redisconf.py and
worker/fibworker/redisconf.py), like contract.py; tests/test_contract.py
fails when the two differ, so edit one and copy it over.

Either the course's variables, REDIS_HOST and REDIS_PORT, with REDIS_TLS=1
for TLS (ElastiCache "in-transit encryption", Memorystore, Azure Cache),
REDIS_PASSWORD (and REDIS_USERNAME) for AUTH or ACLs, and REDIS_TLS_CA_FILE
for a private CA; or one REDIS_URL (redis:// or rediss://, user and password
inside), but not both. A Redis reached over the network must require AUTH:
without a password the configuration is refused (on this machine, as in
development, one is optional). Only the standard library is imported here.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

TRUE = ("1", "true", "yes", "on")
FALSE = ("", "0", "false", "no", "off")
SEPARATE = ("REDIS_HOST", "REDIS_PORT", "REDIS_TLS", "REDIS_PASSWORD", "REDIS_USERNAME")


@dataclass(frozen=True)
class RedisSettings:
    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    # None: the system's CA bundle verifies the server's certificate.
    ca_file: str | None = None

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis.Redis (and RQ, which takes that client)."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "db": self.db}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if self.tls:
            # The server's certificate is always verified (host name included).
            kwargs |= {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True}
            if self.ca_file:
                kwargs["ssl_ca_certs"] = self.ca_file
        return kwargs

    def describe(self) -> str:
        """Where Redis is, for logs and errors: never the password."""
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"


def redis_settings(env: Mapping[str, str], problems: list[str]) -> RedisSettings:
    """Read the Redis variables of `env`, adding what is wrong to `problems`."""
    url = env.get("REDIS_URL", "").strip()
    if url:
        clashing = [name for name in SEPARATE if env.get(name, "").strip()]
        if clashing:
            problems.append(f"REDIS_URL is set, so {', '.join(clashing)} must not be (one way to say where Redis is)")
        settings = _from_url(url, problems)
    else:
        settings = _from_variables(env, problems)
    if settings.host and not settings.password and not is_loopback(settings.host):
        problems.append(
            f"REDIS_PASSWORD is required: Redis at {settings.host} is reached over the network, and without AUTH"
            " anyone who reaches it can read and change the queue. Set it to the server's requirepass or AUTH"
            " token (or put the password in REDIS_URL)"
        )
    ca_file = env.get("REDIS_TLS_CA_FILE", "").strip() or None
    if ca_file:
        if not settings.tls:
            problems.append("REDIS_TLS_CA_FILE is set but TLS is off: set REDIS_TLS=1 (or use a rediss:// URL)")
        elif not os.path.isfile(ca_file):
            problems.append(f"REDIS_TLS_CA_FILE={ca_file} is not a readable file")
    return replace(settings, ca_file=ca_file)


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine (development): no network between, so AUTH (and TLS) may be left out."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _from_variables(env: Mapping[str, str], problems: list[str]) -> RedisSettings:
    host = env.get("REDIS_HOST", "").strip()
    if not host:
        problems.append("REDIS_HOST is required (the Redis server's host name), or REDIS_URL")
    port = _port(env.get("REDIS_PORT", "").strip() or "6379", "REDIS_PORT", problems)
    tls_raw = env.get("REDIS_TLS", "").strip().lower()
    if tls_raw not in TRUE + FALSE:
        problems.append(f"REDIS_TLS must be 1 or 0, got {tls_raw!r}")
    # Passwords are taken as they are: one may begin or end with a space.
    return RedisSettings(
        host=host,
        port=port,
        username=env.get("REDIS_USERNAME") or None,
        password=env.get("REDIS_PASSWORD") or None,
        tls=tls_raw in TRUE,
    )


def _from_url(url: str, problems: list[str]) -> RedisSettings:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        problems.append(f"REDIS_URL must start with redis:// or rediss:// (TLS), got {parts.scheme or 'no'} scheme")
    if not parts.hostname:
        problems.append("REDIS_URL names no host")
    db = 0
    path = parts.path.lstrip("/")
    if path:
        if path.isdigit():
            db = int(path)
        else:
            problems.append(f"REDIS_URL's database must be a number, got {path!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        problems.append("REDIS_URL's port must be a number from 1 to 65535")
        port = 6379
    return RedisSettings(
        host=parts.hostname or "",
        port=port,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss",
    )


def _port(raw: str, name: str, problems: list[str]) -> int:
    if not raw.isdigit():
        problems.append(f"{name} must be a whole number, got {raw!r}")
        return 6379
    if not 1 <= int(raw) <= 65535:
        problems.append(f"{name} must be between 1 and 65,535, got {int(raw):,}")
        return 6379
    return int(raw)
