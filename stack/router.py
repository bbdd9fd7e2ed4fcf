"""Render the nginx configurations for local runs, as the nginx image would.

The official nginx image renders /etc/nginx/templates/*.template with envsubst,
substituting only variables that are defined. render() does the same, so the
local stack and the tests run nginx/templates/default.conf.template exactly
as the containers do, only with local ports and paths.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stack.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "nginx" / "templates" / "default.conf.template"
CSP_FILE = REPO / "nginx" / "csp.env"
ROUTER_MAIN_CONF = REPO / "nginx" / "nginx.conf"
REAL_IP_SCRIPT = REPO / "nginx" / "docker-entrypoint.d" / "06-fibstack-real-ip.envsh"
WORKERS_SCRIPT = REPO / "nginx" / "docker-entrypoint.d" / "07-fibstack-worker-processes.envsh"
CLIENT_CONF = REPO / "client" / "nginx.conf"


def render(template: str, variables: dict[str, str]) -> str:
    """envsubst restricted to `variables`: anything else (nginx's $host) stays."""
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), template)


def csp(mode: str) -> str:
    """The Content-Security-Policy for ROUTER_MODE `mode` (nginx/csp.env)."""
    for line in CSP_FILE.read_text().splitlines():
        name, _, value = line.partition("=")
        if name == mode.upper() and value:
            return value
    raise KeyError(f"no policy for mode {mode!r} in {CSP_FILE}")


def entrypoint_variable(script: Path, name: str, env: dict[str, str] | None = None) -> str:
    """A variable one of the image's entrypoint scripts (nginx/docker-entrypoint.d) computes.

    Runs the image's own script, so the local stack and the containers cannot drift apart.
    """
    result = subprocess.run(
        ["sh", "-c", f'. "$1" && printf %s "${name}"', "sh", str(script)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")} | (env or {}),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def real_ip_config(trusted_proxies: str) -> str:
    """nginx's realip directives for TRUSTED_PROXIES, as the image computes them."""
    return entrypoint_variable(REAL_IP_SCRIPT, "REAL_IP_CONFIG", {"TRUSTED_PROXIES": trusted_proxies})


def write_router(
    workdir: Path,
    port: int,
    api: str,
    client: str,
    mode: str,
    trusted_proxies: str = "",
    event_streams_max: int = 6000,
    event_streams_per_client: int = 100,
    requests_per_client: int = 100,
    status_port: int | None = None,
) -> Path:
    """The router listening on 127.0.0.1:`port`; returns the main config's path.

    nginx's stub_status listens on 127.0.0.1:`status_port` (a free port if None).

    Uses the image's nginx.conf and site template, with local paths and port.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    site = render(
        TEMPLATE.read_text(),
        {
            "API_UPSTREAM": api,
            "CLIENT_UPSTREAM": client,
            "CONTENT_SECURITY_POLICY": csp(mode),
            "REAL_IP_CONFIG": real_ip_config(trusted_proxies),
            "TRUSTED_PROXY_RANGES": entrypoint_variable(
                REAL_IP_SCRIPT, "TRUSTED_PROXY_RANGES", {"TRUSTED_PROXIES": trusted_proxies}
            ),
            "EVENT_STREAMS_MAX": str(event_streams_max),
            "EVENT_STREAMS_PER_CLIENT": str(event_streams_per_client),
            "REQUESTS_PER_CLIENT": str(requests_per_client),
        },
    )
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    site = site.replace("listen 8081;", f"listen 127.0.0.1:{status_port or free_port()};")
    (workdir / "fibstack.conf").write_text(site)
    main = ROUTER_MAIN_CONF.read_text()
    # The image's temporary paths first, before `workdir` (which may itself be under /tmp) is written in.
    main = main.replace("/tmp/", f"{workdir}/")  # noqa: S108
    main = main.replace("include /etc/nginx/conf.d/*.conf;", f"include {workdir}/fibstack.conf;")
    workers = entrypoint_variable(WORKERS_SCRIPT, "NGINX_WORKER_PROCESSES")
    main = main.replace("include /etc/nginx/conf.d/*.main;", f"worker_processes {workers};")
    path = workdir / "nginx.conf"
    path.write_text(main)
    return path


def write_client_server(workdir: Path, port: int, dist: Path) -> Path:
    """client/nginx.conf serving `dist` on 127.0.0.1:`port`; returns its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = CLIENT_CONF.read_text()
    # The image's temporary paths first, before `dist` (which may itself be under /tmp) is written in.
    conf = conf.replace("/tmp/", f"{workdir}/")  # noqa: S108
    conf = conf.replace("listen 3000;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("root /usr/share/nginx/html;", f"root {dist};")
    path = workdir / "nginx.conf"
    path.write_text(conf)
    return path


def nginx_command(conf: Path) -> list[str]:
    """nginx serving `conf` in the foreground."""
    return ["nginx", "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"]


@contextmanager
def serving(conf: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """nginx serving `conf` until the block ends, once it listens on `port` (tests, benchmarks)."""
    process = subprocess.Popen(nginx_command(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def nginx_check_command(conf: Path) -> list[str]:
    """`nginx -t`: parse and check `conf` without serving it."""
    return ["nginx", "-t", "-p", str(conf.parent), "-c", str(conf)]
