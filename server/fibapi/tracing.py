"""OpenTelemetry traces, only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

With it, each request is a trace: Flask's span, with the request's Postgres
queries and Redis commands and the queueing of a computation as children;
the context travels in the job's meta (W3C traceparent), so the worker's
span for the job continues the same trace. The standard OTEL_* variables
configure the exporter (OTLP over HTTP) and OTEL_SERVICE_NAME the name.
Without the variable nothing here imports or sets up OpenTelemetry: no
instrumentation, no exporter, no cost. (redis-py imports OpenTelemetry's API
by itself whenever it is installed; it stays inert.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from .db import Database

SERVICE_NAME = "fibstack-api"

_active = False


def enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())


def init_app(app: Flask, db: Database) -> None:
    """Instrument the app, Redis and Postgres, and export spans (once per process)."""
    global _active
    if not enabled():
        return
    from opentelemetry import trace
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(exporting_provider())
    FlaskInstrumentor().instrument_app(app)  # type: ignore[no-untyped-call]
    if not RedisInstrumentor().is_instrumented_by_opentelemetry:
        RedisInstrumentor().instrument()
    db.configure_connections(PsycopgInstrumentor.instrument_connection)
    _active = True


def exporting_provider() -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A span of our own around a step (a no-op without tracing)."""
    if not _active:
        yield
        return
    from opentelemetry import trace

    with trace.get_tracer("fibapi").start_as_current_span(name, attributes=attributes):
        yield


def inject(carrier: dict[str, Any]) -> dict[str, Any]:
    """Add the current trace context to `carrier` (a job's meta), for the worker to continue it."""
    if _active:
        from opentelemetry import propagate

        propagate.inject(carrier)
    return carrier
