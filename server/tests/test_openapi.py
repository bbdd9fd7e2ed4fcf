from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate


def test_document_is_valid_openapi(client: FlaskClient) -> None:
    validate(client.get("/api/openapi.json").get_json())


def test_document_lists_exactly_the_served_routes(app: Flask, client: FlaskClient) -> None:
    documented = {
        (path, method.upper())
        for path, operations in client.get("/api/openapi.json").get_json()["paths"].items()
        for method in operations
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?\w+>", "{n}", rule.rule).rstrip("/") or "/"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method))
    assert documented == served
