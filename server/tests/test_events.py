"""The events reader (fibapi/events.py): nothing appended after a page subscribes is lost."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
from fibapi import contract
from fibapi.config import Settings
from fibapi.events import Broadcaster
from redis import Redis


def append(redis_client: Redis, index: int) -> None:
    redis_client.xadd(contract.EVENTS_STREAM, {"data": f'{{"index": {index}, "status": "done"}}'})


def test_an_event_right_after_subscribing_arrives_however_late_the_reader_starts(
    settings: Settings, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    broadcaster = Broadcaster(settings)
    append(redis_client, 1)  # history the new page must not receive
    real = broadcaster.redis.xrevrange
    subscribed = False

    def slow_xrevrange(*args: Any, **kwargs: Any) -> Any:
        # A reader thread that runs late (over TLS the first command waits for
        # the handshake) would only now look for the newest event.
        if subscribed:
            time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(broadcaster.redis, "xrevrange", slow_xrevrange)
    inbox = broadcaster.subscribe()
    subscribed = True
    append(redis_client, 2)  # the page submits at once; the worker answers within milliseconds
    try:
        _, payload = inbox.get(timeout=10)
        assert '"index": 2' in payload
        with pytest.raises(queue.Empty):
            inbox.get(timeout=0.5)
    finally:
        broadcaster.stop()


def test_a_reader_that_stopped_for_lack_of_pages_starts_again_where_the_new_page_came_in(
    settings: Settings, redis_client: Redis
) -> None:
    broadcaster = Broadcaster(settings)
    first = broadcaster.subscribe()
    append(redis_client, 3)
    assert '"index": 3' in first.get(timeout=10)[1]
    broadcaster.unsubscribe(first)
    thread = broadcaster._thread
    assert thread is not None
    thread.join(timeout=10)  # no one left: the reader ends after its current wait
    assert not thread.is_alive()
    append(redis_client, 4)  # while no page is open: not for the next page
    second = broadcaster.subscribe()
    append(redis_client, 5)
    try:
        assert '"index": 5' in second.get(timeout=10)[1]
    finally:
        broadcaster.stop()
