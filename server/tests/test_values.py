"""The /api/values routes against real Postgres and Redis."""

from __future__ import annotations

import json

import gmpy2
import psycopg
import pytest
from fibapi import contract, create_app
from fibapi.config import Settings
from flask.testing import FlaskClient
from queue_runner import drain
from redis import Redis

from stack.servers import RedisServer, free_port


def submit(client: FlaskClient, index: object) -> tuple[int, dict]:
    response = client.post("/api/values", json={"index": index})
    return response.status_code, response.get_json()


def queued_jobs(redis_client: Redis) -> int:
    return int(redis_client.llen(f"rq:queue:{contract.QUEUE_NAME}"))


def count_rows(pg_conn: psycopg.Connection) -> int:
    tables = pg_conn.execute("SELECT to_regclass('submissions')").fetchone()
    if tables is None or tables[0] is None:
        return 0
    row = pg_conn.execute("SELECT count(*) FROM submissions").fetchone()
    assert row is not None
    return int(row[0])


def test_submit_records_queues_and_marks_pending(
    client: FlaskClient, redis_client: Redis, pg_conn: psycopg.Connection
) -> None:
    status, payload = submit(client, "10")
    assert status == 202
    assert payload["working"] is True
    assert payload["index"] == 10
    assert payload["status"] == "pending"
    assert count_rows(pg_conn) == 1
    assert queued_jobs(redis_client) == 1
    assert client.get("/api/values/10").get_json()["status"] == "pending"
    assert client.get("/api/values/current").get_json() == {"10": "Nothing yet!"}


def test_computed_value_is_served_everywhere(client: FlaskClient, redis_server: RedisServer) -> None:
    submit(client, "10")
    drain(redis_server.port)
    status = client.get("/api/values/10").get_json()
    assert status["status"] == "done"
    assert status["value"] == "55"
    assert status["digits"] == 2
    assert status["compute_ms"] >= 0
    assert client.get("/api/values/current").get_json() == {"10": "55"}
    assert client.get("/api/values/all").get_json() == [{"number": 10}]
    decimal = client.get("/api/values/10/decimal")
    assert decimal.status_code == 200
    assert decimal.mimetype == "text/plain"
    assert decimal.data == b"55"
    assert "fibonacci-10.txt" in decimal.headers["Content-Disposition"]


def test_standard_numbering(client: FlaskClient, redis_server: RedisServer) -> None:
    for index in ("0", "1", "2"):
        submit(client, index)
    drain(redis_server.port)
    assert client.get("/api/values/current").get_json() == {"0": "0", "1": "1", "2": "1"}


def test_long_value_is_summarised_and_downloadable(client: FlaskClient, redis_server: RedisServer) -> None:
    submit(client, 100_000)
    drain(redis_server.port)
    expected = gmpy2.fib(100_000).digits()
    status = client.get("/api/values/100000").get_json()
    assert status["digits"] == len(expected) == 20_899
    assert status["value"] is None  # never the whole of a long value in JSON
    assert status["head"] == expected[:20]
    assert status["tail"] == expected[-20:]
    shown = client.get("/api/values/current").get_json()["100000"]
    assert shown == f"{expected[:20]}…{expected[-20:]} (20,899 digits)"
    response = client.get("/api/values/100000/decimal")
    assert response.headers["Content-Length"] == str(len(expected))
    assert response.is_streamed
    assert response.get_data(as_text=True) == expected


def test_value_of_exactly_1000_digits_is_shown_whole(client: FlaskClient, redis_server: RedisServer) -> None:
    # F(4782) is the first Fibonacci number with 1,000 digits.
    submit(client, 4782)
    drain(redis_server.port)
    status = client.get("/api/values/4782").get_json()
    assert status["digits"] == 1000
    assert status["value"] == gmpy2.fib(4782).digits()


def test_duplicate_submission_is_recorded_but_not_recomputed(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit(client, "7")
    submit(client, "7")  # while queued
    assert queued_jobs(redis_client) == 1
    drain(redis_server.port)
    submit(client, "7")  # once computed
    assert queued_jobs(redis_client) == 0
    assert client.get("/api/values/all").get_json() == [{"number": 7}] * 3
    assert client.get("/api/values/current").get_json() == {"7": "13"}


def test_lists_are_newest_first_and_bounded(client: FlaskClient, app) -> None:  # type: ignore[no-untyped-def]
    app.config["RECENT_LIMIT"] = 3
    for index in (1, 2, 3, 4, 2):
        submit(client, index)
    assert client.get("/api/values/all").get_json() == [{"number": n} for n in (2, 4, 3)]
    assert list(client.get("/api/values/current").get_json()) == ["2", "4", "3"]
    recent = client.get("/api/values/recent").get_json()
    assert [status["index"] for status in recent] == [2, 4, 3]
    assert all(status["status"] == "pending" for status in recent)


BAD_REQUESTS = [
    pytest.param({"json": {"index": "abc"}}, 422, id="not-a-number"),
    pytest.param({"json": {"index": "3.5"}}, 422, id="decimal"),
    pytest.param({"json": {"index": "-1"}}, 422, id="negative"),
    pytest.param({"json": {"index": "1e3"}}, 422, id="exponent"),
    pytest.param({"json": {"index": "10000001"}}, 422, id="above-max"),
    pytest.param({"json": {"index": "9" * 900}}, 422, id="huge-string"),
    pytest.param({"data": b'{"index": ' + b"9" * 900 + b"}", "content_type": "application/json"}, 422, id="huge-int"),
    pytest.param({"json": ["10"]}, 422, id="array"),
    pytest.param({"json": {}}, 422, id="missing-field"),
    pytest.param({"json": {"index": "1", "x": 2}}, 422, id="extra-field"),
    pytest.param(
        {"data": b'{"index": "1", "index": "2"}', "content_type": "application/json"}, 422, id="duplicate-field"
    ),
    pytest.param({"data": "index=10", "content_type": "application/x-www-form-urlencoded"}, 415, id="form"),
    pytest.param({"data": '{"index": "10"}'}, 415, id="no-content-type"),
    pytest.param({"data": b"{", "content_type": "application/json"}, 400, id="broken-json"),
    pytest.param({"data": b'{"index": "\xff"}', "content_type": "application/json"}, 400, id="not-utf8"),
    pytest.param({"data": b'{"index": "' + b"1" * 5000 + b'"}', "content_type": "application/json"}, 413, id="too-big"),
]


@pytest.mark.parametrize(("kwargs", "status"), BAD_REQUESTS)
def test_bad_input_changes_nothing(
    client: FlaskClient, redis_client: Redis, pg_conn: psycopg.Connection, kwargs: dict, status: int
) -> None:
    response = client.post("/api/values", **kwargs)
    assert response.status_code == status
    payload = response.get_json()
    assert set(payload) == {"error", "code"}
    assert payload["error"]
    assert count_rows(pg_conn) == 0
    assert redis_client.dbsize() == 0  # no job, no pending mark, no event


def test_unknown_index_is_404_json(client: FlaskClient) -> None:
    for path in ("/api/values/5", "/api/values/5/decimal"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.get_json()["code"] == "not_found"


def test_decimal_is_404_until_computed(client: FlaskClient) -> None:
    submit(client, "12")
    response = client.get("/api/values/12/decimal")
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_computed"


@pytest.mark.parametrize("path", ["/api/values/abc", "/api/values/-1", "/api/values/" + "9" * 5000, "/api/nothing"])
def test_bad_paths_are_json_404(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "error" in response.get_json()


@pytest.mark.parametrize("path", ["/api/values/", "/api//values", "/api/values//"])
def test_submissions_have_one_path(
    client: FlaskClient, redis_client: Redis, pg_conn: psycopg.Connection, path: str
) -> None:
    # Other spellings of /api/values are not a way round the router's limit: JSON 404, nothing done.
    response = client.post(path, json={"index": 10})
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"
    assert count_rows(pg_conn) == 0
    assert queued_jobs(redis_client) == 0


def test_doubled_slashes_are_a_json_404_not_a_redirect(client: FlaskClient) -> None:
    response = client.get("/api//values/all")
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/values/10000001", "/api/values/9223372036854775808", "/api/values/99/decimal"])
def test_impossible_indexes_are_answered_without_postgres_or_redis(services_env: dict[str, str], path: str) -> None:
    # Nothing listens on these ports: a read that asked either would be a 503.
    dead = services_env | {"PGPORT": str(free_port()), "REDIS_PORT": str(free_port()), "MAX_INDEX": "50"}
    app = create_app(Settings.from_env(dead))
    try:
        response = app.test_client().get(path)
    finally:
        app.extensions["fibstack.db"].close()
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"
    assert "above the largest index" in response.get_json()["error"]


def test_wrong_method_is_json_405(client: FlaskClient) -> None:
    response = client.delete("/api/values/all")
    assert response.status_code == 405
    assert response.get_json()["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_a_value_the_cache_lost_is_computed_again_when_asked_for(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit(client, "5000")  # 1,045 digits: too long for its status, so in the cache only
    drain(redis_server.port)
    assert redis_client.hexists(contract.CACHE_SIZES, contract.decimal_key(5000))
    redis_client.delete(contract.decimal_key(5000))  # as if dropped for memory
    response = client.get("/api/values/5000/decimal")
    assert response.status_code == 409
    assert response.get_json()["code"] == "recomputing"
    assert queued_jobs(redis_client) == 1
    assert client.get("/api/values/5000/decimal").status_code == 409  # asked again: still one job
    assert queued_jobs(redis_client) == 1
    drain(redis_server.port)
    assert client.get("/api/values/5000/decimal").data == gmpy2.fib(5000).digits().encode()


def test_a_status_redis_lost_is_read_from_postgres_and_cached_again(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit(client, "20")
    drain(redis_server.port)
    redis_client.flushall()
    status = client.get("/api/values/20").get_json()
    assert (status["status"], status["value"]) == ("done", "6765")
    assert queued_jobs(redis_client) == 0  # known: never computed again for a read
    assert redis_client.hget(contract.status_key(20), "value") == b"6765"  # put back
    assert redis_client.zscore(contract.CACHE_BY_USE, contract.status_key(20)) is not None
    # A short value is in its status, so it downloads whatever the cache holds.
    redis_client.flushall()
    assert client.get("/api/values/20/decimal").data == b"6765"
    assert client.get("/api/values/current").get_json() == {"20": "6765"}
    assert queued_jobs(redis_client) == 0


def test_a_pending_status_is_never_cached(client: FlaskClient, redis_client: Redis) -> None:
    submit(client, "12")
    assert client.get("/api/values/12").get_json()["status"] == "pending"
    assert not redis_client.exists(contract.status_key(12))


def test_events_are_appended_for_each_status_change(
    client: FlaskClient, redis_client: Redis, redis_server: RedisServer
) -> None:
    submit(client, "9")
    drain(redis_server.port)
    entries = redis_client.xrange(contract.EVENTS_STREAM)
    payloads = [json.loads(fields[b"data"]) for _, fields in entries]
    assert [(p["index"], p["status"], p["value"]) for p in payloads] == [(9, "pending", None), (9, "done", "34")]


def test_surrounding_whitespace_is_accepted(client: FlaskClient, pg_conn: psycopg.Connection) -> None:
    status, payload = submit(client, " 7 ")
    assert (status, payload["index"]) == (202, 7)
    assert client.get("/api/values/all").get_json() == [{"number": 7}]


@pytest.mark.parametrize("digit", ["\u0663", "\uff13", "\U0001d7db"])
def test_paths_take_ascii_digits_only(client: FlaskClient, digit: str) -> None:
    # Arabic-Indic, fullwidth and mathematical 3s: POST refuses them, so must the paths.
    assert client.post("/api/values", json={"index": "3"}).status_code == 202
    assert client.get("/api/values/3").status_code == 200
    response = client.get(f"/api/values/{digit}")
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"
