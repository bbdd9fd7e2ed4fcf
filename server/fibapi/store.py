"""Redis, from the API's side: its connections, RQ's queue and the scripts.

What the API does with them lives by caller: queueing.py (submissions and
the reconcile pass queue jobs; a dropped value is computed again), cache.py
(statuses and values read through the cache), reconcile.py, events.py. The
key layout and payloads live in contract.py (shared with the worker).
"""

from __future__ import annotations

import secrets

from flask import Flask, current_app
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer

from . import contract, scripts
from .config import Settings

# The longest any one Redis call of a request may take before it is given up.
REQUEST_TIMEOUT_SECONDS = 1.0


class Store:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Sized so a request touching a dead Redis is answered 503 within about
        # a second: short timeouts, and one immediate retry only (for a pooled
        # connection that went stale when Redis restarted), where redis-py's
        # default of three retries with back-off kept a POST waiting 5-28 s.
        self.redis = Redis(
            **settings.redis.client_kwargs(),
            socket_connect_timeout=REQUEST_TIMEOUT_SECONDS / 2,
            socket_timeout=REQUEST_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
            decode_responses=False,
            health_check_interval=30,
        )
        # JSON, never pickle: the worker refuses anything else (contract.JOB_SERIALIZER).
        self.queue = Queue(contract.QUEUE_NAME, connection=self.redis, serializer=JSONSerializer)
        self.process_id = secrets.token_hex(4)  # how this process is counted (presence.py): never its host's name
        self.queue_script = scripts.Script(self.redis, "queue.lua", prelude=scripts.ADMISSION_PRELUDE)
        self.recompute_script = scripts.Script(self.redis, "recompute.lua", prelude=scripts.ADMISSION_PRELUDE)
        # The worker's cache.lua (each side carries a copy), whose keys vary: contract.cache_put builds them.
        self.cache_script = self.redis.register_script((scripts.HERE / "cache.lua").read_text())
        # RQ's queue's length as the last queueing script left it: whether a
        # group's small new indexes go as one batch job (queueing.py).
        self.queue_depth = 0
        # For the readiness probe: one try, half-second
        # timeouts. The client above may take its 1 s read plus a retry, past
        # the probe's 0.8 s deadline; and /all, which needs only Postgres,
        # should not wait that long on a Redis that hangs.
        self.quick_redis = Redis(
            **settings.redis.client_kwargs(),
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )

    def ping(self) -> None:
        """Raise unless Redis answers within half a second."""
        self.quick_redis.ping()


def get_store() -> Store:
    store: Store = current_app.extensions["fibstack.store"]
    return store


def init_app(app: Flask, settings: Settings) -> Store:
    store = Store(settings)
    app.extensions["fibstack.store"] = store
    return store
