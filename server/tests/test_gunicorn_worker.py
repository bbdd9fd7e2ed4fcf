"""The gunicorn worker's response: headers and the first piece of the body in one write, nothing held back."""

from __future__ import annotations

import socket

import pytest
from fibapi.gunicorn_worker import Response
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser


class Recorded:
    """A client socket that records each write gunicorn makes to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def response_to(request: bytes) -> tuple[Response, Recorded]:
    server, client = socket.socketpair()
    with server, client:
        client.sendall(request)
        req = next(iter(RequestParser(Config(), server, ("127.0.0.1", 1))))
    recorded = Recorded()
    return Response(req, recorded, Config()), recorded


GET = b"GET /api/values/current HTTP/1.1\r\nHost: test\r\n\r\n"


def test_a_small_answer_is_one_write() -> None:
    response, recorded = response_to(GET)
    response.start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    response.write(b"{}")
    response.close()
    assert len(recorded.writes) == 1
    assert recorded.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert recorded.writes[0].endswith(b"\r\n\r\n{}")


def test_a_stream_sends_its_headers_with_its_first_piece_and_each_piece_at_once() -> None:
    response, recorded = response_to(GET)
    response.start_response("200 OK", [("Content-Type", "text/event-stream")])  # no length: chunked
    response.write(b"retry: 1000\n\n")
    assert len(recorded.writes) == 1
    assert recorded.writes[0].endswith(b"\r\n\r\nD\r\nretry: 1000\n\n\r\n")
    response.write(b"data: {}\n\n")
    response.close()
    assert recorded.writes[1:] == [b"A\r\ndata: {}\n\n\r\n", b"0\r\n\r\n"]


@pytest.mark.parametrize("request_line", [b"HEAD / HTTP/1.1", b"GET / HTTP/1.1"])
def test_headers_are_never_held_past_the_write_that_follows_them(request_line: bytes) -> None:
    response, recorded = response_to(request_line + b"\r\nHost: test\r\n\r\n")
    response.start_response("200 OK", [("Content-Type", "text/event-stream")])
    response.write(b"")  # HEAD omits the body; an empty piece sends nothing of it
    assert len(recorded.writes) == 1
    assert recorded.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert recorded.writes[0].endswith(b"\r\n\r\n")


def test_an_answer_with_no_body_written_is_its_headers_then_its_end() -> None:
    response, recorded = response_to(GET)
    response.start_response("204 No Content", [])
    response.close()
    assert len(recorded.writes) == 1
    assert recorded.writes[0].startswith(b"HTTP/1.1 204 No Content\r\n")
