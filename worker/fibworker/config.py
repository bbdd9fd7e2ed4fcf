"""Worker settings, read from the environment once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .pgconf import PostgresSettings, postgres_settings
from .redisconf import RedisSettings, redis_settings


class ConfigError(Exception):
    """The environment does not describe a usable configuration."""


@dataclass(frozen=True)
class Settings:
    redis: RedisSettings
    # Where each result is recorded before it is announced (recorder.py): as
    # the API's role, which owns the tables.
    postgres: PostgresSettings
    # The cache in Redis (statuses and values: cache.lua) takes what its
    # maxmemory leaves, read at each store; past it the least recently used
    # are dropped (read from Postgres again, or recomputed when asked). This
    # caps it lower still; 0: no cap of its own.
    cache_max_bytes: int = 0
    # After this long without a heartbeat a worker counts as dead and its job
    # is re-queued (see liveness.py).
    liveness_ttl_seconds: int = 10
    # Touched as the worker's loop turns (heartbeat.py), for liveness probes;
    # /tmp is writable in every image (an emptyDir on Kubernetes).
    heartbeat_file: str = "/tmp/fibworker-heartbeat"  # noqa: S108
    # The probe fails once the file is older than this.
    stall_seconds: int = 60
    log_level: str = "INFO"
    # Prometheus metrics on this port (fibworker/metrics.py); 0 turns them off.
    metrics_port: int = 9464

    @property
    def heartbeat_seconds(self) -> float:
        return self.liveness_ttl_seconds / 4

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                problems.append(f"{name} must be a whole number, got {raw!r}")
                return default
            if not low <= value <= high:
                problems.append(f"{name} must be between {low} and {high}, got {value}")
            return value

        settings = cls(
            redis=redis_settings(env, problems),
            postgres=postgres_settings(env, problems),
            cache_max_bytes=integer("CACHE_MAX_BYTES", cls.cache_max_bytes, 0, 2**40),
            liveness_ttl_seconds=integer("WORKER_LIVENESS_TTL_SECONDS", 10, 3, 3600),
            heartbeat_file=env.get("WORKER_HEARTBEAT_FILE", "").strip() or cls.heartbeat_file,
            stall_seconds=integer("WORKER_STALL_SECONDS", cls.stall_seconds, 2, 86_400),
            log_level=env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO",
            metrics_port=integer("METRICS_PORT", 9464, 0, 65535),
        )
        if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {settings.log_level!r}")
        if "VALUES_MAX_BYTES" in env:
            problems.append("VALUES_MAX_BYTES is now CACHE_MAX_BYTES: it bounds the cached statuses too")
        if problems:
            raise ConfigError("invalid worker configuration:\n  - " + "\n  - ".join(problems))
        return settings
