"""A minimal Server-Sent Events reader for tests and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class Event:
    id: str
    event: str
    data: Any


def events(response: requests.Response) -> Iterator[Event]:
    fields: dict[str, str] = {}
    for raw in response.iter_lines(decode_unicode=True):
        line = raw or ""
        if line == "":
            if "data" in fields:
                yield Event(fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def open_stream(url: str, last_event_id: str | None = None, timeout: float = 30) -> requests.Response:
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    response = requests.get(f"{url}/api/events", headers=headers, stream=True, timeout=timeout)
    response.raise_for_status()
    return response


def wait_for(stream: Iterator[Event], index: int, status: str = "done") -> Event:
    for event in stream:
        if event.data["index"] == index and event.data["status"] == status:
            return event
    raise AssertionError("the stream ended first")
