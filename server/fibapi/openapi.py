"""GET /api/openapi.json: the API described for people and tools.

tests/test_openapi.py checks that it is a valid OpenAPI document and that it
lists exactly the routes the app serves.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from .timeline import STAGES

bp = Blueprint("openapi", __name__, url_prefix="/api")

_INDEX = {"name": "n", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"$ref": "#/components/schemas/Error"}
_STATUS = {"$ref": "#/components/schemas/Status"}
_UNAVAILABLE = _json(_ERROR, "Postgres or Redis is unavailable; retry after Retry-After seconds")
_REFUSED = _json(
    _ERROR,
    "Postgres or Redis is unavailable, or (code over_capacity) new work is refused for now: the queue or "
    "Redis's memory is past its bound; retry after Retry-After seconds",
)


def spec(max_index: int) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fibstack API",
            "version": "1.0.0",
            "description": "Submit Fibonacci indexes, read the results. F(0)=0, F(1)=1, F(10)=55.",
        },
        "paths": {
            "/api/values": {
                "post": {
                    "summary": "Submit an index to compute",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}},
                    },
                    "responses": {
                        "202": _json(
                            {"allOf": [_STATUS, {"type": "object", "properties": {"working": {"const": True}}}]},
                            "Recorded; queued unless already computed or queued",
                        ),
                        "400": _json(_ERROR, "The body is not UTF-8 JSON"),
                        "413": _json(_ERROR, "The body is too large"),
                        "415": _json(_ERROR, "The body is not application/json"),
                        "422": _json(_ERROR, f"The index is not a whole number from 0 to {max_index}"),
                        "503": _REFUSED,
                    },
                }
            },
            "/api/values/all": {
                "get": {
                    "summary": "The most recent submissions, newest first (RECENT_LIMIT of them)",
                    "responses": {
                        "200": _json(
                            {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"number": {"type": "integer"}},
                                    "required": ["number"],
                                },
                            },
                            "Submissions",
                        ),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/api/values/current": {
                "get": {
                    "summary": "Display strings of the most recently submitted distinct indexes",
                    "description": "Values over 1,000 digits are summarised as head…tail (N digits).",
                    "responses": {
                        "200": _json(
                            {"type": "object", "additionalProperties": {"type": "string"}}, "index -> display string"
                        ),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/api/values/recent": {
                "get": {
                    "summary": "Status objects of the most recently submitted distinct indexes, newest first",
                    "responses": {
                        "200": _json({"type": "array", "items": _STATUS}, "Statuses"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/api/values/{n}": {
                "get": {
                    "summary": "The status of one index",
                    "parameters": [_INDEX],
                    "responses": {
                        "200": _json(_STATUS, "Status"),
                        "404": _json(_ERROR, "Never submitted (or above the largest index)"),
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/api/values/{n}/decimal": {
                "get": {
                    "summary": "The full decimal value, streamed as a download",
                    "parameters": [_INDEX],
                    "responses": {
                        "200": {
                            "description": "The digits of F(n)",
                            "content": {"text/plain": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}},
                        },
                        "404": _json(_ERROR, "Never submitted, or not computed yet"),
                        "409": _json(_ERROR, "Dropped to make room, and being computed again; retry after Retry-After"),
                        "503": _REFUSED,
                    },
                }
            },
            "/api/events": {
                "get": {
                    "summary": "Server-Sent Events: one `status` event (a Status object) per change",
                    "description": "Send Last-Event-ID on reconnect to receive the events missed meanwhile.",
                    "responses": {
                        "200": {
                            "description": "An endless event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/api/healthz": {
                "get": {
                    "summary": "Liveness: the process answers",
                    "responses": {"200": _json({"type": "object"}, "Alive")},
                }
            },
            "/api/readyz": {
                "get": {
                    "summary": "Readiness: Postgres and Redis are reachable",
                    "responses": {
                        "200": _json({"type": "object"}, "Ready"),
                        "503": _json({"type": "object"}, "Not ready; checks says which service is down"),
                    },
                }
            },
            "/api/system": {
                "get": {
                    "summary": "What the pipeline is doing now: readiness, queue, workers, rates, the last timelines",
                    "description": "Cheap reads of what exists already; workers are counted, never named. "
                    "All but ready are null while Redis is unavailable. "
                    "Kept about a second by each API process.",
                    "responses": {"200": _json({"$ref": "#/components/schemas/System"}, "The pipeline now")},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
        },
        "components": {
            "schemas": {
                "System": {
                    "type": "object",
                    "properties": {
                        "ready": {
                            "type": "object",
                            "properties": {"postgres": {"type": "string"}, "redis": {"type": "string"}},
                            "description": '"ok", or why not',
                        },
                        "api": {
                            "type": ["object", "null"],
                            "properties": {"processes": {"type": "integer", "minimum": 0}},
                            "description": "API processes (gunicorn workers of every replica) alive in the last 30 s",
                        },
                        "queue": {
                            "type": ["object", "null"],
                            "properties": {
                                "depth": {"type": "integer", "minimum": 0},
                                "oldest_age_seconds": {"type": ["number", "null"]},
                            },
                        },
                        "workers": {
                            "type": ["object", "null"],
                            "properties": {
                                "alive": {"type": "integer", "minimum": 0},
                                "busy": {"type": "integer", "minimum": 0},
                            },
                        },
                        "rates": {
                            "type": ["object", "null"],
                            "properties": {
                                "submissions_per_second": {"type": "number"},
                                "computations_per_second": {"type": "number"},
                                "refused_per_second": {"type": "number"},
                                "rate_capped": {"type": "boolean", "description": "true: at least these rates"},
                            },
                        },
                        "refused": {
                            "type": ["object", "null"],
                            "additionalProperties": {"type": "integer"},
                            "description": "admission control's refusals in the window, by reason (queue, memory)",
                        },
                        "recent": {
                            "type": ["array", "null"],
                            "items": {"$ref": "#/components/schemas/Timeline"},
                            "description": "the last few accepted submissions, newest first",
                        },
                        "reconcile": {
                            "type": ["object", "null"],
                            "description": "the reconcile pass's last figures (null: none since Redis began)",
                            "properties": {
                                "age_seconds": {"type": "number", "description": "since the last pass"},
                                "pending": {"type": "integer", "description": "pending indexes it looked at"},
                                "healed": {"type": "integer", "description": "of those, queued again"},
                                "healed_total": {"type": "integer", "description": "queued again since Redis began"},
                                "heal_within_seconds": {
                                    "type": "integer",
                                    "description": "a lost job is queued again within this long "
                                    "(RECONCILE_GRACE_SECONDS + RECONCILE_INTERVAL_SECONDS)",
                                },
                            },
                            "required": ["age_seconds", "pending", "healed", "healed_total", "heal_within_seconds"],
                        },
                        "window_seconds": {"type": "integer", "description": "the rates are over this window"},
                    },
                    "required": [
                        "ready",
                        "api",
                        "queue",
                        "workers",
                        "rates",
                        "refused",
                        "recent",
                        "reconcile",
                        "window_seconds",
                    ],
                },
                "Timeline": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "age_seconds": {"type": "number", "description": "since it was accepted"},
                        "outcome": {
                            "enum": ["waiting", "done", "failed", "computed before"],
                            "description": "waiting: its computation has not ended (or is past what was read)",
                        },
                        "stages": {
                            "type": "object",
                            "description": "milliseconds from accepted to each stage, null if not reached; "
                            "each stamped by its own process's clock",
                            "properties": {name: {"type": ["number", "null"], "minimum": 0} for name in STAGES},
                            "required": list(STAGES),
                        },
                    },
                    "required": ["index", "age_seconds", "outcome", "stages"],
                },
                "Submission": {
                    "type": "object",
                    "properties": {
                        "index": {
                            "oneOf": [
                                {"type": "string", "pattern": "^\\s*[0-9]+\\s*$"},
                                {"type": "integer", "minimum": 0, "maximum": max_index},
                            ]
                        }
                    },
                    "required": ["index"],
                    "additionalProperties": False,
                },
                "Status": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "status": {"enum": ["pending", "done", "failed"]},
                        "digits": {"type": ["integer", "null"]},
                        "head": {"type": ["string", "null"], "description": "First 20 digits"},
                        "tail": {"type": ["string", "null"], "description": "Last 20 digits"},
                        "value": {"type": ["string", "null"], "description": "Whole value, if at most 1,000 digits"},
                        "compute_ms": {"type": ["number", "null"]},
                        "error": {"type": ["string", "null"]},
                    },
                    "required": ["index", "status", "digits", "head", "tail", "value", "compute_ms", "error"],
                },
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
                    "required": ["error", "code"],
                },
            }
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> dict[str, Any]:
    return spec(current_app.config["MAX_INDEX"])
