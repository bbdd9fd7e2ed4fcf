"""Each API process says it is alive, so GET /api/system counts every replica's processes.

A process is counted by a random id (Store.process_id, never its host's
name) in contract.API_PROCESSES, scored by when it last said so. gunicorn
starts the beat in each serving process (post_worker_init), whatever
RECONCILE_INTERVAL_SECONDS is, and takes the process out when it exits
cleanly (worker_exit), so a replica scaled down stops being counted at once;
one killed outright stops being counted API_ALIVE_SECONDS later.
"""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import RedisError

from . import contract
from .store import Store

log = logging.getLogger(__name__)

# Three beats within contract.API_ALIVE_SECONDS: one lost beat (Redis
# briefly away) does not make a live process disappear from the count.
BEAT_SECONDS = contract.API_ALIVE_SECONDS / 3


def say_alive(store: Store) -> None:
    """Counted from now; ids not heard of for long (processes killed outright) are dropped."""
    now = time.time()
    with store.redis.pipeline(transaction=False) as pipe:
        pipe.zadd(contract.API_PROCESSES, {store.process_id: now})
        pipe.zremrangebyscore(contract.API_PROCESSES, "-inf", now - 10 * contract.API_ALIVE_SECONDS)
        pipe.execute()


def say_gone(store: Store) -> None:
    """No longer counted; if Redis is away, the entry ages out by itself."""
    try:
        store.redis.zrem(contract.API_PROCESSES, store.process_id)
    except RedisError as exc:
        log.info("could not say this process is gone", extra={"error": str(exc)})


def start_background(store: Store, interval: float = BEAT_SECONDS) -> threading.Event:
    """Say alive now and every `interval` seconds, until the returned event is set or the process ends."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                say_alive(store)
            except RedisError as exc:
                log.debug("alive beat postponed: Redis is down", extra={"error": str(exc)})
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="presence", daemon=True).start()
    return stop
