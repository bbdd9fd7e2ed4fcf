"""presence.py: every API process counted while it runs, whatever RECONCILE_INTERVAL_SECONDS is."""

from __future__ import annotations

import time

from fibapi import contract, presence
from fibapi.config import Settings
from fibapi.store import Store
from processes import wait_until
from redis import Redis

from stack.servers import RedisServer


def counted(redis_client: Redis) -> set[bytes]:
    return set(redis_client.zrangebyscore(contract.API_PROCESSES, time.time() - contract.API_ALIVE_SECONDS, "+inf"))


def test_a_beat_within_each_alive_window_with_one_to_spare() -> None:
    assert presence.BEAT_SECONDS * 2 < contract.API_ALIVE_SECONDS


def test_the_background_beat_keeps_a_process_counted_and_outlives_a_redis_outage(
    settings: Settings, redis_server: RedisServer, redis_client: Redis
) -> None:
    store = Store(settings)
    stop = presence.start_background(store, interval=0.05)
    try:
        wait_until(lambda: store.process_id.encode() in counted(redis_client))
        redis_server.stop()
        time.sleep(0.3)  # beats fail meanwhile; the thread must go on
        redis_server.start()
        redis_client.delete(contract.API_PROCESSES)
        wait_until(lambda: store.process_id.encode() in counted(redis_client), timeout=10)
    finally:
        stop.set()


def test_gone_is_no_longer_counted_and_long_silent_ids_are_dropped(settings: Settings, redis_client: Redis) -> None:
    first, second = Store(settings), Store(settings)
    redis_client.zadd(contract.API_PROCESSES, {"killed-long-ago": time.time() - 10 * contract.API_ALIVE_SECONDS - 1})
    presence.say_alive(first)
    presence.say_alive(second)
    assert counted(redis_client) == {first.process_id.encode(), second.process_id.encode()}
    assert redis_client.zscore(contract.API_PROCESSES, "killed-long-ago") is None
    presence.say_gone(first)
    assert counted(redis_client) == {second.process_id.encode()}


def test_saying_gone_while_redis_is_down_does_not_raise(settings: Settings, redis_server: RedisServer) -> None:
    store = Store(settings)
    redis_server.stop()
    try:
        presence.say_gone(store)
    finally:
        redis_server.start()
