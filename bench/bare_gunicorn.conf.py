"""gunicorn settings for the bench's baseline apps (bare_app.py, floor_app.py): the API's own, without its hooks.

Same worker class, processes, connections, keep-alive and access log as the
API, so the difference between the two is the API itself.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

_api = runpy.run_path(str(Path(__file__).resolve().parents[1] / "server" / "gunicorn.conf.py"))
globals().update({name: value for name, value in _api.items() if not name.startswith("__")})

# bare_app.py unless the command line names another app (floor_app:app).
wsgi_app = "bare_app:app"


def post_worker_init(worker: Any) -> None:
    """No app to start (the API starts its background loops here)."""


def worker_exit(server: Any, worker: Any) -> None:
    """No pools to close."""
