"""The fib queue as the worker reads it: jobs in JSON, and only fibstack's own functions run.

RQ's defaults would let anyone who can write to Redis run code here: a job
is pickled (unpickling can itself run code) and names the function to call
by its dotted path, any importable one (os.system included), and so do its
callbacks. So jobs are JSON (RQ's JSONSerializer: only data can come out),
and FibJob refuses, before importing anything, a job or callback that is not
one of the names in contract.py. A refused job fails like any other, with
the reason in RQ's log line and in its failed registry; nothing of it runs.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from . import contract


class ForbiddenJob(Exception):
    """A job (or callback) that names something other than fibstack's own functions."""


def _allowed(name: str | None, allowed: tuple[str, ...], what: str) -> None:
    if name and name not in allowed:
        raise ForbiddenJob(f"refused to run {what} {name!r}: not one of fibstack's own ({', '.join(allowed)})")


class FibJob(Job):
    """RQ's Job, which runs only the job functions and callbacks that contract.py names."""

    @property
    def func(self) -> Any:
        _allowed(self.func_name, contract.JOB_FUNCTIONS, "the job function")
        if self.instance is not None:
            raise ForbiddenJob("refused to run a method of an object sent with the job")
        return super().func

    @property
    def success_callback(self) -> Any:
        _allowed(self._success_callback_name, (), "the success callback")
        return super().success_callback

    @property
    def failure_callback(self) -> Any:
        _allowed(self._failure_callback_name, (contract.JOB_FAILURE_CALLBACK,), "the failure callback")
        return super().failure_callback

    @property
    def stopped_callback(self) -> Any:
        _allowed(self._stopped_callback_name, (), "the stopped callback")
        return super().stopped_callback


def fib_queue(connection: Redis) -> Queue:
    """The queue the API fills (contract.QUEUE_NAME), with FibJob and the JSON serializer."""
    return Queue(contract.QUEUE_NAME, connection=connection, job_class=FibJob, serializer=JSONSerializer)
