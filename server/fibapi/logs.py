"""Structured JSON logs on stdout (the API's and gunicorn's)."""

from __future__ import annotations

import logging
import sys
from typing import Any

FORMATTER: dict[str, Any] = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "{asctime}{levelname}{name}{message}",
    "style": "{",
    "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    "static_fields": {"service": "api"},
}


def configure(level: str) -> None:
    """For processes not started by gunicorn (the flask CLI, tests)."""
    from pythonjsonlogger.json import JsonFormatter

    from .requestid import LogFilter

    options = {key: value for key, value in FORMATTER.items() if key != "()"}
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(**options))
    handler.addFilter(LogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def gunicorn_dict_config(level: str) -> dict[str, Any]:
    """gunicorn's logconfig_dict: its error and access logs as JSON too."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stdout",
        "filters": ["request_id"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": FORMATTER},
        "filters": {"request_id": {"()": "fibapi.requestid.LogFilter"}},
        "handlers": {"stdout": handler},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }
