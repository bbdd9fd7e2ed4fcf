from __future__ import annotations

from collections.abc import Iterator

import pytest
from fibapi import create_app
from fibapi.config import Settings
from flask import Flask
from flask.testing import FlaskClient


@pytest.fixture
def settings(services_env: dict[str, str]) -> Settings:
    return Settings.from_env(services_env)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["fibstack.db"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
