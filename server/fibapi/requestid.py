"""One id per request (X-Request-ID), in every log line about it, to the worker's included.

The router sends one (the client's, or its own); a request straight to the
API gets one here. It is echoed in the response, written in the access log
and in every log line of the request (a logging filter), and carried in the
job's meta to the worker, whose lines for that job carry it too. So `grep`
with one id finds one submission from router to worker.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# The same rule as the router's (nginx/templates/default.conf.template).
VALID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
ENVIRON_KEY = "fibstack.request_id"

current: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestId:
    """WSGI middleware: the request's id in `current`, the environ and the response."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        sent = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = sent if VALID.fullmatch(sent) else uuid.uuid4().hex
        environ[ENVIRON_KEY] = request_id
        token = current.set(request_id)

        def with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, ("X-Request-ID", request_id)], exc_info)

        try:
            return self.app(environ, with_id)
        finally:
            current.reset(token)


class LogFilter(logging.Filter):
    """Adds the current request's id to every log record made while handling it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True
