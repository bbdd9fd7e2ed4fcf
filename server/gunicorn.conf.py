"""gunicorn settings for the API (development, Compose, Beanstalk, Kubernetes).

Worker class: gevent. GET /api/events holds a connection open for as long as
a page is open; with gevent each open stream is a cheap greenlet, so hundreds
of them do not starve the other routes (a sync or gthread worker would spend a
whole thread or process on each). `make bench` measures it.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

from fibapi.config import ConfigError, Settings
from fibapi.logs import gunicorn_dict_config

# prometheus-client's multiprocess mode (fibapi/metrics.py): set before any
# process imports it. Under /tmp, which is writable everywhere the API runs.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fibstack-metrics-")

wsgi_app = "fibapi:create_app()"
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# gunicorn's gevent worker, ending event streams and idle keep-alive
# connections at once when asked to stop (fibapi/gunicorn_worker.py).
worker_class = "fibapi.gunicorn_worker.GeventWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = 4000  # open event streams + requests, per worker
timeout = 30
# Shutdown waits this long for requests in flight; event streams and idle
# keep-alive connections are ended at once (fibapi/gunicorn_worker.py), and
# browsers reconnect to another replica.
graceful_timeout = 10
keepalive = 5
reload = os.environ.get("GUNICORN_RELOAD", "") == "1"  # Dockerfile.dev and make dev turn it on
# gunicorn's admin socket (in $HOME) is unused here, and clashes between
# several API processes on one machine (tests, the local stack).
control_socket_disable = True

accesslog = "-"
# One JSON line per request, written by fibapi/accesslog.py (a quarter of a
# list request's CPU went to gunicorn's general-purpose access logging).
logger_class = "fibapi.accesslog.AccessLogger"
logconfig_dict = gunicorn_dict_config(os.environ.get("LOG_LEVEL", "INFO").strip().upper() or "INFO")


def on_starting(server: Any) -> None:
    """Refuse to start, with a clear message, when the configuration is wrong."""
    try:
        Settings.from_env()
    except ConfigError as exc:
        print(f"fibapi: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    raise_open_files_limit(server)
    # Samples of an earlier run would be added to this one's. Only
    # prometheus-client's own files: the directory may be one the user chose.
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for samples in metrics_dir.glob("*.db"):
        samples.unlink()


def when_ready(server: Any) -> None:
    """Serve the metrics of every worker process, added up, on METRICS_PORT (from the master)."""
    port = Settings.from_env().metrics_port
    if not port:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        print(
            f"fibapi: cannot serve metrics on port {port} ({exc.strerror}): set METRICS_PORT to a free port, "
            "or to 0 to turn the metrics off",
            file=sys.stderr,
            flush=True,
        )
        server.log.error("metrics port %s unavailable", port)
        os._exit(2)


def child_exit(server: Any, worker: Any) -> None:
    """A worker process is gone: its live gauges (open streams) no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def raise_open_files_limit(server: Any) -> None:
    """Let each process open a file per connection it may hold, as far as the hard limit allows.

    Some runtimes (containerd 2 on Kubernetes among them) start containers
    with a soft limit of 1,024 open files, which would refuse connections
    long before worker_connections; the hard limit is usually far higher.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = worker_connections + 256  # connections, plus Redis, Postgres and log files
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < wanted:
            server.log.warning("open files limited to %d (hard limit): fewer than %d connections", raised, wanted)


def post_worker_init(worker: Any) -> None:
    """Background work of a serving process, started once its app is loaded.

    The reconcile loop (fibapi/reconcile.py) and the alive beat
    (fibapi/presence.py) run here rather than in create_app, so the flask
    CLI and tests build apps without them.
    """
    from fibapi import presence, reconcile

    app = worker.wsgi
    presence.start_background(app.extensions["fibstack.store"])
    interval = app.extensions["fibstack.settings"].reconcile_interval_seconds
    if interval > 0:
        reconcile.start_background(app, interval)


def worker_exit(server: Any, worker: Any) -> None:
    """Stop being counted among the API processes; close the Postgres pool while the process can do so cleanly.

    Left to the interpreter's exit, the pool's finaliser runs after gevent's
    hub is gone and prints a traceback ("greenlet is being finalized").
    """
    app = getattr(worker, "wsgi", None)  # absent if the worker failed to load the app
    if app is not None:
        from fibapi import presence

        presence.say_gone(app.extensions["fibstack.store"])
        app.extensions["fibstack.db"].close()
