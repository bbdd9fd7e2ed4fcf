"""GET /api/system: readiness, queue, workers and rates, as the system page shows them."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fibapi import contract, presence, system
from fibapi.config import Settings
from fibapi.store import Store
from flask import Flask
from flask.testing import FlaskClient
from queue_runner import drain
from redis import Redis

from stack.servers import RedisServer, free_port


def get(client: FlaskClient) -> dict[str, object]:
    response = client.get("/api/system")
    assert response.status_code == 200
    body = response.get_json()
    assert isinstance(body, dict)
    return body


def test_an_idle_system(client: FlaskClient) -> None:
    body = get(client)
    assert body["ready"] == {"postgres": "ok", "redis": "ok"}
    assert body["api"] == {"processes": 0}  # no background loop under the test client
    assert body["queue"] == {"depth": 0, "oldest_age_seconds": None}
    assert body["workers"] == {"alive": 0, "busy": 0}
    assert body["rates"] == {
        "submissions_per_second": 0.0,
        "computations_per_second": 0.0,
        "refused_per_second": 0.0,
        "rate_capped": False,
    }
    assert body["refused"] == {}
    assert body["reconcile"] is None  # no pass yet
    assert body["window_seconds"] == system.WINDOW_SECONDS


def test_the_reconcile_pass_shows_what_it_healed(client: FlaskClient, redis_client: Redis) -> None:
    from fibapi import reconcile

    app = client.application
    for index in (34, 35):
        assert client.post("/api/values", json={"index": index}).status_code == 202
    redis_client.flushall()  # their jobs lost
    reconcile.reconcile(app.extensions["fibstack.db"], app.extensions["fibstack.store"], grace_seconds=0)
    shown = get(client)["reconcile"]
    assert isinstance(shown, dict)
    assert (shown["pending"], shown["healed"], shown["healed_total"]) == (2, 2, 2)
    assert 0 <= shown["age_seconds"] < 5
    settings = app.extensions["fibstack.settings"]
    assert shown["heal_within_seconds"] == settings.reconcile_grace_seconds + settings.reconcile_interval_seconds


def test_submissions_show_in_the_queue_and_the_rate(client: FlaskClient) -> None:
    for index in (31, 32, 33, 31):  # 31 twice: four submissions, three jobs
        assert client.post("/api/values", json={"index": index}).status_code == 202
    body = get(client)
    queue = body["queue"]
    assert isinstance(queue, dict)
    assert queue["depth"] == 3  # no worker runs here
    assert 0 <= queue["oldest_age_seconds"] < 5
    rates = body["rates"]
    assert isinstance(rates, dict)
    assert rates["submissions_per_second"] == 4 / system.WINDOW_SECONDS
    assert rates["computations_per_second"] == 0


def test_work_refused_by_admission_control_is_counted_by_reason(services_env: dict[str, str]) -> None:
    from fibapi import create_app

    app = create_app(Settings.from_env(services_env | {"ADMISSION_QUEUE_MAX": "2"}))
    try:
        client = app.test_client()
        codes = [client.post("/api/values", json={"index": index}).status_code for index in (51, 52, 53, 54)]
        assert codes == [202, 202, 503, 503]  # no worker: the queue holds two jobs
        body = get(client)
        assert body["refused"] == {"queue": 2}
        rates = body["rates"]
        assert isinstance(rates, dict)
        assert rates["refused_per_second"] == 2 / system.WINDOW_SECONDS
    finally:
        app.extensions["fibstack.db"].close()


def test_workers_are_counted_alive_and_busy_by_their_liveness_key(client: FlaskClient, redis_client: Redis) -> None:
    # As RQ registers workers, and as fibworker.liveness keeps its key fresh.
    for name, state, alive in (("w-busy", "busy", True), ("w-idle", "idle", True), ("w-gone", "busy", False)):
        redis_client.sadd(system.WORKERS_KEY, f"rq:worker:{name}")
        redis_client.hset(f"rq:worker:{name}", "state", state)
        if alive:
            redis_client.set(contract.worker_alive_key(name), "1", ex=30)
    body = get(client)
    assert body["workers"] == {"alive": 2, "busy": 1}
    # Counted, never named: a worker's name carries its host's.
    assert "w-busy" not in json.dumps(body)


def worker_event(index: int, status: str) -> dict[str, str]:
    """An event as the worker appends it when a computation ends: stamped with its job."""
    now = time.time()
    return contract.event_entry(index, {"status": status}, f"fib-{index}-0", now - 0.001, now)


def test_computations_are_the_done_and_failed_events_of_the_window(client: FlaskClient, redis_client: Redis) -> None:
    # One from before the window, which does not count.
    old = int((time.time() - system.WINDOW_SECONDS - 5) * 1000)
    redis_client.xadd(contract.EVENTS_STREAM, worker_event(9, "done"), id=f"{old}-0")
    for index, status in enumerate(("done", "done", "failed")):
        redis_client.xadd(contract.EVENTS_STREAM, worker_event(index, status))
    # The API's pending events are no computation.
    redis_client.xadd(contract.EVENTS_STREAM, contract.event_entry(3, contract.pending_fields("fib-3-0")))
    rates = get(client)["rates"]
    assert isinstance(rates, dict)
    assert rates["computations_per_second"] == 3 / system.WINDOW_SECONDS
    assert rates["rate_capped"] is False


def test_a_burst_past_what_is_read_says_its_rate_is_at_least(
    client: FlaskClient, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system, "WINDOW_ENTRIES_MAX", 5)
    for index in range(8):
        redis_client.xadd(contract.EVENTS_STREAM, worker_event(index, "done"))
    rates = get(client)["rates"]
    assert isinstance(rates, dict)
    assert rates["computations_per_second"] == 5 / system.WINDOW_SECONDS
    assert rates["rate_capped"] is True


def test_it_reveals_no_secret_or_address(client: FlaskClient, settings: Settings, services_env: dict[str, str]) -> None:
    client.post("/api/values", json={"index": 40})
    text = client.get("/api/system").get_data(as_text=True)
    for name in ("PGPASSWORD", "REDIS_PASSWORD", "PGHOST", "REDIS_HOST", "PGUSER", "PGPORT", "REDIS_PORT"):
        value = services_env.get(name)
        if value:
            assert value not in text, f"{name}'s value is in /api/system"


def test_while_redis_is_down_it_says_so_and_answers(services_env: dict[str, str]) -> None:
    from fibapi import create_app

    app = create_app(Settings.from_env(services_env | {"REDIS_PORT": str(free_port())}))
    try:
        response = app.test_client().get("/api/system")
        assert response.status_code == 200
        body = response.get_json()
        assert body["ready"]["postgres"] == "ok"
        assert body["ready"]["redis"].startswith("unavailable")
        assert body["api"] is body["queue"] is body["workers"] is body["rates"] is body["refused"] is None
        assert body["recent"] is None
    finally:
        app.extensions["fibstack.db"].close()


def test_the_answer_is_kept_for_a_while_per_process(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "KEEP_SECONDS", 60.0)
    before = get(client)
    assert client.post("/api/values", json={"index": 41}).status_code == 202
    assert get(client) == before  # kept: Redis was not read again
    monkeypatch.setattr(system, "KEEP_SECONDS", 0.0)
    assert get(client)["queue"] == {"depth": 1, "oldest_age_seconds": pytest.approx(0, abs=5)}


def test_concurrent_requests_share_one_making_of_the_answer() -> None:
    kept, made, release = system.Kept(), [], threading.Event()

    def make() -> dict[str, object]:
        made.append(1)
        release.wait(5)
        return {"made": len(made)}

    answers: list[dict[str, object]] = []
    threads = [threading.Thread(target=lambda: answers.append(kept.get(make))) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert answers == [{"made": 1}] * 5
    assert made == [1]


def test_the_answer_is_what_the_openapi_document_says(client: FlaskClient, redis_server: RedisServer) -> None:
    from jsonschema import Draft202012Validator

    client.post("/api/values", json={"index": 42})
    drain(redis_server.port)
    client.post("/api/values", json={"index": 42})
    client.post("/api/values", json={"index": 43})
    document = client.get("/api/openapi.json").get_json()
    schema = {"$ref": "#/components/schemas/System", "components": document["components"]}
    body = get(client)
    assert [shown["outcome"] for shown in body["recent"]] == ["waiting", "computed before", "done"]
    Draft202012Validator(schema).validate(body)


def test_api_processes_are_counted_while_they_say_they_are_alive(
    app: Flask, client: FlaskClient, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(system, "KEEP_SECONDS", 0.0)
    presence.say_alive(app.extensions["fibstack.store"])
    other = Store(app.extensions["fibstack.settings"])  # another replica's process
    presence.say_alive(other)
    presence.say_alive(other)
    assert get(client)["api"] == {"processes": 2}
    # One silent for longer than API_ALIVE_SECONDS is no longer counted.
    redis_client.zadd(contract.API_PROCESSES, {other.process_id: time.time() - contract.API_ALIVE_SECONDS - 1})
    assert get(client)["api"] == {"processes": 1}
    # One that said it is gone, at once.
    presence.say_gone(app.extensions["fibstack.store"])
    assert get(client)["api"] == {"processes": 0}
