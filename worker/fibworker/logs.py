"""Structured JSON logs on stdout, one object per line."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter
from rq import get_current_job

from . import contract


class JobFilter(logging.Filter):
    """Adds the job's id and its request's X-Request-ID (from the API, in the job's meta) to each line about it."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = get_current_job()
        if job is not None:
            if not hasattr(record, "job_id"):
                record.job_id = job.id
            request_id = job.meta.get(contract.JOB_META_REQUEST_ID)
            if request_id and not hasattr(record, "request_id"):
                record.request_id = request_id
        return True


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": "worker"},
        )
    )
    handler.addFilter(JobFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
