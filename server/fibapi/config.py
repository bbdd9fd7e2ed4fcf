"""API settings, read from the environment and validated once at start-up.

The variable names are the course's (REDIS_HOST, PGUSER, ...), so the same
environment serves Compose, Elastic Beanstalk and Kubernetes.
"""

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
    postgres: PostgresSettings
    max_index: int = 10_000_000
    # How many rows GET /api/values/all and GET /api/values/current return.
    recent_limit: int = 100
    # A job still running after this long is stopped and marked failed.
    job_timeout_seconds: int = 300
    # How often the reconcile pass looks for pending indexes whose job Redis
    # lost (reconcile.py; 0 turns it off: tests call reconcile() directly).
    # An index left without a job is queued again within this plus the
    # pass's grace (10 s) and the pass itself: about 25 s by default.
    reconcile_interval_seconds: float = 10.0
    # ... and leaves an index alone until it has been pending this long: a
    # submission being queued at that moment is left to finish.
    reconcile_grace_seconds: float = 10.0
    max_body_bytes: int = 1024
    # Admission control (admission.lua): a new index is refused with a 503
    # while RQ's queue holds this many jobs, or while Redis's memory other
    # than the cache (which gives way) is over this share of its
    # maxmemory. Sized for the shipped maxmemory of 256 MB: the rest leaves
    # room for the accepted work's results and RQ's own bookkeeping.
    admission_queue_max: int = 10_000
    admission_memory_percent: int = 70
    # The cache in Redis (statuses and values, cache.lua; the worker's
    # setting too) takes what its maxmemory leaves, and at most this; 0: no cap.
    cache_max_bytes: int = 0
    log_level: str = "INFO"
    # Prometheus metrics (all processes added up) on this port, never through
    # the router; 0 turns them off.
    metrics_port: int = 9464

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
                problems.append(f"{name} must be between {low:,} and {high:,}, got {value:,}")
            return value

        settings = cls(
            redis=redis_settings(env, problems),
            postgres=postgres_settings(env, problems),
            max_index=integer("MAX_INDEX", 10_000_000, 0, 100_000_000),
            recent_limit=integer("RECENT_LIMIT", 100, 1, 10_000),
            job_timeout_seconds=integer("JOB_TIMEOUT_SECONDS", 300, 1, 86_400),
            reconcile_interval_seconds=integer("RECONCILE_INTERVAL_SECONDS", 10, 0, 3600),
            reconcile_grace_seconds=integer("RECONCILE_GRACE_SECONDS", 10, 1, 3600),
            log_level=env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO",
            metrics_port=integer("METRICS_PORT", 9464, 0, 65535),
            admission_queue_max=integer("ADMISSION_QUEUE_MAX", 10_000, 1, 10_000_000),
            admission_memory_percent=integer("ADMISSION_MEMORY_PERCENT", 70, 1, 90),
            cache_max_bytes=integer("CACHE_MAX_BYTES", 0, 0, 2**40),
        )
        if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {settings.log_level!r}")
        if "VALUES_MAX_BYTES" in env:
            problems.append("VALUES_MAX_BYTES is now CACHE_MAX_BYTES: it bounds the cached statuses too")
        if problems:
            raise ConfigError("invalid API configuration:\n  - " + "\n  - ".join(problems))
        return settings
