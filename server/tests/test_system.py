"""GET /api/system: readiness, queue, workers and rates, as the system page shows them."""

from __future__ import annotations

import json
import time

from fibapi import contract, system
from fibapi.config import Settings
from flask.testing import FlaskClient
from redis import Redis

from stack.servers import free_port


def get(client: FlaskClient) -> dict[str, object]:
    response = client.get("/api/system")
    assert response.status_code == 200
    body = response.get_json()
    assert isinstance(body, dict)
    return body


def test_an_idle_system(client: FlaskClient) -> None:
    body = get(client)
    assert body["ready"] == {"postgres": "ok", "redis": "ok"}
    assert body["queue"] == {"depth": 0, "oldest_age_seconds": None}
    assert body["workers"] == {"alive": 0, "busy": 0}
    assert body["rates"] == {
        "submissions_per_second": 0.0,
        "computations_per_second": 0.0,
        "refused_per_second": 0.0,
        "rate_capped": False,
    }
    assert body["refused"] == {}
    assert body["window_seconds"] == system.WINDOW_SECONDS


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


def test_computations_are_the_done_and_failed_events_of_the_window(client: FlaskClient, redis_client: Redis) -> None:
    # One from before the window, which does not count.
    old = int((time.time() - system.WINDOW_SECONDS - 5) * 1000)
    redis_client.xadd(contract.EVENTS_STREAM, contract.event_entry(9, {"status": "done"}), id=f"{old}-0")
    statuses = ({"status": "done"}, {"status": "done"}, {"status": "failed"}, {"status": "pending"})
    for index, fields in enumerate(statuses):
        redis_client.xadd(contract.EVENTS_STREAM, contract.event_entry(index, fields))
    rates = get(client)["rates"]
    assert isinstance(rates, dict)
    assert rates["computations_per_second"] == 3 / system.WINDOW_SECONDS


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
        assert body["queue"] is body["workers"] is body["rates"] is body["refused"] is None
    finally:
        app.extensions["fibstack.db"].close()
