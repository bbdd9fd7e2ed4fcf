"""The bench's baseline app: a bare WSGI app under the API's own gunicorn settings.

It answers every request with the body in BENCH_BODY_FILE, as fast as a WSGI
app can: whatever the API costs on top of it is Flask, the middleware and the
API's own work; what it costs itself is gunicorn's gevent worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]
