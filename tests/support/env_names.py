"""The environment variable names each service's code reads, found in its source.

For the wiring tests of every deploy target (tests/test_k8s.py,
tests/test_beanstalk.py): a manifest that sets a name no code reads is a typo
or a leftover, and one that leaves out a required name fails at start-up.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def names_read_by(*sources: Path) -> set[str]:
    """Environment variable names a Python source reads: string literals passed to env lookups."""
    names: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and node.args:
                first = node.args[0]
                if (
                    isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and re.fullmatch(r"[A-Z][A-Z0-9_]+", first.value)
                ):
                    names.add(first.value)
    return names


API_READS = names_read_by(
    REPO / "server/fibapi/config.py",
    REPO / "server/fibapi/pgconf.py",
    REPO / "server/fibapi/redisconf.py",
    REPO / "server/gunicorn.conf.py",
)
# The migration step (python -m fibapi.migrate), in the API's image.
MIGRATION_READS = names_read_by(REPO / "server/fibapi/migrate.py", REPO / "server/fibapi/pgconf.py")
WORKER_READS = names_read_by(
    REPO / "worker/fibworker/config.py", REPO / "worker/fibworker/pgconf.py", REPO / "worker/fibworker/redisconf.py"
)


def router_reads() -> set[str]:
    names: set[str] = set()
    for template in (REPO / "nginx/templates").glob("*.template"):
        names |= set(re.findall(r"\$\{(\w+)\}", template.read_text()))
    for script in (REPO / "nginx/docker-entrypoint.d").iterdir():
        names |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", script.read_text()))
    return names - {"REAL_IP_CONFIG", "TRUSTED_PROXY_RANGES", "CONTENT_SECURITY_POLICY"}  # computed by the scripts
