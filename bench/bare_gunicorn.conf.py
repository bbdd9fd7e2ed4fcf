"""gunicorn settings for bench/bare_app.py: the API's own (server/gunicorn.conf.py), without its app's hooks.

Same worker class, processes, connections, keep-alive and access log as the
API, so the difference between the two is the API itself.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

_api = runpy.run_path(str(Path(__file__).resolve().parents[1] / "server" / "gunicorn.conf.py"))
globals().update({name: value for name, value in _api.items() if not name.startswith("__")})

wsgi_app = "bare_app:app"


def post_worker_init(worker: Any) -> None:
    """No app to start (the API starts its background loops here)."""


def worker_exit(server: Any, worker: Any) -> None:
    """No pools to close."""
