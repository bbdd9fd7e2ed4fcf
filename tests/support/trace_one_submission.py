"""One POST traced end to end, in a process of its own (OpenTelemetry's state is global).

Run by tests/test_tracing.py with the services' environment and
OTEL_EXPORTER_OTLP_ENDPOINT set: the API (Flask test client) takes the
submission, the real worker code runs the job (RQ burst), and the spans,
kept in memory instead of exported, are printed as JSON lines.
"""

from __future__ import annotations

import json
import os

from fibapi import create_app
from fibapi.config import Settings
from fibworker import tracing as worker_tracing
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from queue_runner import drain


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # before the app: it then uses this one

    app = create_app(Settings.from_env())
    response = app.test_client().post("/api/values", json={"index": 40})
    assert response.status_code == 202, response.data
    worker_tracing.init()
    drain(int(os.environ["REDIS_PORT"]))
    app.extensions["fibstack.db"].close()
    for span in exporter.get_finished_spans():
        context = span.get_span_context()
        assert context is not None
        print(
            json.dumps(
                {
                    "name": span.name,
                    "trace_id": format(context.trace_id, "032x"),
                    "span_id": format(context.span_id, "016x"),
                    "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                    "attributes": {key: str(value) for key, value in (span.attributes or {}).items()},
                }
            )
        )


if __name__ == "__main__":
    main()
