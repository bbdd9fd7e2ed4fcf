"""client/nginx.conf, run by a real nginx over the client's production build."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from stack.router import nginx_check_command, serving, write_client_server
from stack.servers import free_port

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "client" / "dist"


@pytest.fixture
def client_nginx(tmp_path: Path) -> Iterator[str]:
    if not (DIST / "index.html").exists():
        pytest.fail("client/dist is missing: `make test` builds it before running pytest (make client-test)")
    port = free_port()
    conf = write_client_server(tmp_path, port, DIST)
    check = subprocess.run(nginx_check_command(conf), capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    with serving(conf, port):
        yield f"http://127.0.0.1:{port}"


def test_deep_links_get_the_app(client_nginx: str) -> None:
    index = requests.get(f"{client_nginx}/", timeout=5)
    for path in ("/system", "/otherpage", "/some/client/route"):
        response = requests.get(f"{client_nginx}{path}", timeout=5)
        assert response.status_code == 200
        assert response.text == index.text
        assert '<div id="root">' in response.text


def test_index_html_is_never_cached(client_nginx: str) -> None:
    for path in ("/", "/index.html", "/system"):
        assert requests.get(f"{client_nginx}{path}", timeout=5).headers["Cache-Control"] == "no-cache"


def test_hashed_assets_are_cached_for_good_and_compressed(client_nginx: str) -> None:
    script = next((DIST / "assets").glob("index-*.js")).name
    response = requests.get(f"{client_nginx}/assets/{script}", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Content-Encoding"] == "gzip"
    assert "javascript" in response.headers["Content-Type"]


def test_missing_asset_is_404_not_the_app(client_nginx: str) -> None:
    assert requests.get(f"{client_nginx}/assets/index-missing.js", timeout=5).status_code == 404
