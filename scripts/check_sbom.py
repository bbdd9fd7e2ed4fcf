"""Check the images' SBOMs (scripts/sbom.sh) against what the app pins.

    .venv/bin/python scripts/check_sbom.py DIRECTORY [PYTHON_VERSION]

DIRECTORY holds fibstack-{api,worker,client,router}.spdx.json (SPDX JSON, as
syft writes it). The API's and the worker's must list every package of their
lock (server/requirements.txt, worker/requirements.txt) at its locked
version (those whose marker holds for PYTHON_VERSION, the images' Python,
on Linux: default 3.12.0); the client's and the router's, nginx (the JavaScript bundle the
client serves is built files, not packages, so no scanner can list it: the
client's npm packages are locked in client/package-lock.json instead).
Exits 1 naming what is missing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from packaging.markers import Marker

REPO = Path(__file__).resolve().parents[1]
LOCKS = {"fibstack-api": REPO / "server" / "requirements.txt", "fibstack-worker": REPO / "worker" / "requirements.txt"}
NGINX_IMAGES = ("fibstack-client", "fibstack-router")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def environment(python_version: str) -> dict[str, str]:
    """The marker environment of a Linux CPython image."""
    return {
        "python_full_version": python_version,
        "python_version": ".".join(python_version.split(".")[:2]),
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def locked(lock: Path, python_version: str = "3.12.0") -> set[tuple[str, str]]:
    """(name, version) of each package the lock installs on that Python."""
    pattern = r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)(?: ; ([^\\]+?))?\s*\\?$"
    return {
        (canonical(m.group(1)), m.group(2))
        for m in re.finditer(pattern, lock.read_text(), re.M)
        if not m.group(3) or Marker(m.group(3)).evaluate(environment(python_version))
    }


def listed(sbom: Path) -> set[tuple[str, str]]:
    document = json.loads(sbom.read_text())
    return {(canonical(p["name"]), p.get("versionInfo", "")) for p in document.get("packages", [])}


def problems(directory: Path, python_version: str = "3.12.0") -> list[str]:
    found: list[str] = []
    for image, lock in LOCKS.items():
        missing = sorted(locked(lock, python_version) - listed(directory / f"{image}.spdx.json"))
        found += [
            f"{image}: {name}=={version} (from {lock.relative_to(REPO)}) is not in its SBOM"
            for name, version in missing
        ]
    for image in NGINX_IMAGES:
        if "nginx" not in {name for name, _ in listed(directory / f"{image}.spdx.json")}:
            found.append(f"{image}: nginx is not in its SBOM")
    return found


def main() -> int:
    directory = Path(sys.argv[1])
    found = problems(directory, *sys.argv[2:3])
    for problem in found:
        print(f"check-sbom: {problem}", file=sys.stderr)
    if found:
        return 1
    counts = {image: len(listed(directory / f"{image}.spdx.json")) for image in (*LOCKS, *NGINX_IMAGES)}
    print(
        "check-sbom: every locked package listed; packages per image: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
