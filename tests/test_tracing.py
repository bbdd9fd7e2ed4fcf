"""OpenTelemetry: one submission is one trace, from the API's request to the worker's computation."""

from __future__ import annotations

import json
import subprocess
import sys

from processes import REPO, _env


def run(code_or_script: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *code_or_script], env=_env(env), cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_one_post_is_one_trace_down_to_the_worker(services_env: dict[str, str]) -> None:
    env = services_env | {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "RECONCILE_INTERVAL_SECONDS": "0"}
    result = run([str(REPO / "tests/support/trace_one_submission.py")], env)
    assert result.returncode == 0, result.stderr
    spans = [json.loads(line) for line in result.stdout.splitlines()]
    by_id = {span["span_id"]: span for span in spans}
    request = next(span for span in spans if span["name"] == "POST /api/values")
    ours = [span for span in spans if span["trace_id"] == request["trace_id"]]
    assert len(ours) == len(spans) - sum(1 for span in spans if span["trace_id"] != request["trace_id"])

    def ancestors(span: dict) -> list[str]:
        names = []
        while span["parent_id"] in by_id:
            span = by_id[span["parent_id"]]
            names.append(span["name"])
        return names

    insert = next(s for s in ours if "INSERT INTO submissions" in s["attributes"].get("db.statement", ""))
    queue = next(s for s in ours if s["name"] == "fibstack.queue")
    compute = next(s for s in spans if s["name"] == "fibstack.compute")
    assert "POST /api/values" in ancestors(insert)
    assert "POST /api/values" in ancestors(queue)
    # The worker's span continues the trace, under the submission that created its job.
    assert compute["trace_id"] == request["trace_id"]
    assert compute["attributes"]["fibstack.index"] == "40"
    assert ancestors(compute)[:2] == ["fibstack.submission", "POST /api/values"]
    # Redis commands show up too (the queueing script among them).
    assert any(s["attributes"].get("db.system") == "redis" for s in ours)


def test_without_an_endpoint_nothing_is_traced(services_env: dict[str, str]) -> None:
    # redis-py imports OpenTelemetry's API itself when it is installed; what
    # matters is that none of ours is loaded, set up or wrapped around anything.
    code = (
        "import sys, threading; from fibapi import create_app; from fibapi.config import Settings; "
        "app = create_app(Settings.from_env()); app.test_client().get('/api/values/all'); "
        "import fibworker.tracing as t; t.init(); "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.instrumentation', "
        "'opentelemetry.exporter', 'opentelemetry.sdk.trace'))), "
        "sorted(t.name for t in threading.enumerate() if 'Span' in t.name))"
    )
    env = {k: v for k, v in services_env.items() if not k.startswith("OTEL_")} | {"RECONCILE_INTERVAL_SECONDS": "0"}
    result = run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] []"
