"""OpenTelemetry traces, only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

The API puts its trace context in each job's meta (W3C traceparent); the
worker's span for the job is its child, so one submission is one trace from
the router's request to the computation. Without the variable nothing here
imports OpenTelemetry.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

SERVICE_NAME = "fibstack-worker"

_active = False


def enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())


def init() -> None:
    """Export spans (once per process), if tracing is on."""
    global _active
    if not enabled():
        return
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or SERVICE_NAME
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    _active = True


@contextlib.contextmanager
def job_span(name: str, meta: dict[str, Any], **attributes: Any) -> Iterator[None]:
    """A span for a job's work, continuing the trace whose context is in the job's meta."""
    if not _active:
        yield
        return
    from opentelemetry import propagate, trace

    parent = propagate.extract(meta)
    with trace.get_tracer("fibworker").start_as_current_span(name, context=parent, attributes=attributes):
        yield
