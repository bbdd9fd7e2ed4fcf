"""fibapi: the fibstack JSON API (Flask, served by gunicorn)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Settings

if TYPE_CHECKING:
    from flask import Flask


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from `settings` (default: the environment, validated)."""
    # Imported here rather than at the top: gunicorn.conf.py imports this package
    # in gunicorn's master process, and anything imported there (ssl, sockets)
    # would escape the gevent patching each worker applies after forking.
    from flask import Flask
    from werkzeug.routing import IntegerConverter

    from . import (
        db,
        errors,
        events,
        health,
        listcache,
        metrics,
        openapi,
        requestid,
        store,
        submissions,
        system,
        tracing,
        values,
    )

    class AsciiIntegerConverter(IntegerConverter):
        """<int:...> as ASCII digits only. Werkzeug's accepts any Unicode digit,
        so /api/values/٣ (Arabic-Indic 3) would be index 3, which POST refuses."""

        regex = r"[0-9]+"

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.url_map.converters["int"] = AsciiIntegerConverter
    # /api//values is no spelling of /api/values: a JSON 404, where Werkzeug
    # would answer an HTML 308 redirect to the merged path.
    app.url_map.merge_slashes = False
    app.config.update(
        MAX_INDEX=settings.max_index,
        RECENT_LIMIT=settings.recent_limit,
        # Werkzeug answers 413 past this, before the body is read.
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
    )
    # Keep JSON keys in the order the code writes them.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["fibstack.settings"] = settings
    errors.register(app)
    database = db.init_app(app, settings)
    store.init_app(app, settings)
    submissions.init_app(app)
    lists = listcache.ListCache(app.wsgi_app, events.init_app(app, settings))
    app.extensions["fibstack.listcache"] = lists
    app.wsgi_app = lists  # type: ignore[method-assign]
    if settings.metrics_port:
        app.wsgi_app = metrics.Instrument(app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = requestid.RequestId(app.wsgi_app)  # type: ignore[method-assign]
    metrics.init_app(app)
    for blueprint in (values.bp, health.bp, system.bp, openapi.bp):
        app.register_blueprint(blueprint)
    # Outermost, and before the pool's first connection (which it instruments).
    tracing.init_app(app, database)
    database.open()
    return app


__all__ = ["Settings", "create_app"]
