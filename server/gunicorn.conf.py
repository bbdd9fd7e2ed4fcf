"""gunicorn settings for the API (development, Compose, Beanstalk, Kubernetes).

Worker class: gevent. GET /api/events holds a connection open for as long as
a page is open; with gevent each open stream is a cheap greenlet, so hundreds
of them do not starve the other routes (a sync or gthread worker would spend a
whole thread or process on each). `make bench` measures it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from fibapi.config import ConfigError, Settings
from fibapi.logs import gunicorn_dict_config

wsgi_app = "fibapi:create_app()"
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = 2000  # open event streams + requests, per worker
timeout = 30
# Shutdown waits this long for requests in flight; event streams are ended
# at once (below), and browsers reconnect to another replica.
graceful_timeout = 10
keepalive = 5
reload = os.environ.get("GUNICORN_RELOAD", "") == "1"  # Dockerfile.dev and make dev turn it on
# gunicorn's admin socket (in $HOME) is unused here, and clashes between
# several API processes on one machine (tests, the local stack).
control_socket_disable = True

accesslog = "-"
access_log_format = '%(m)s %(U)s %(s)s %(B)s bytes %(M)s ms "%(a)s"'
logconfig_dict = gunicorn_dict_config(os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO")


def on_starting(server: Any) -> None:
    """Refuse to start, with a clear message, when the configuration is wrong."""
    try:
        Settings.from_env()
    except ConfigError as exc:
        print(f"fibapi: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def post_worker_init(worker: Any) -> None:
    """Background work of a serving process, started once its app is loaded.

    The reconcile loop (fibapi/reconcile.py) runs here rather than in
    create_app, so the flask CLI and tests build apps without it. A watch ends
    open event streams as soon as this worker is asked to stop.
    """
    from fibapi import reconcile

    app = worker.wsgi
    interval = app.extensions["fibstack.settings"].reconcile_interval_seconds
    if interval > 0:
        reconcile.start_background(app, interval)

    def watch() -> None:
        while worker.alive:
            time.sleep(0.5)
        app.extensions["fibstack.events"].stop()

    threading.Thread(target=watch, name="shutdown-watch", daemon=True).start()
