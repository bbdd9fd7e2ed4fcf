"""scripts/push-images.sh and the Dockerfiles it builds: one image for amd64 and arm64 where Buildx exists.

The build itself is Docker's (docker-check builds every image here); what is
ours is that nothing in a Dockerfile ties it to one architecture, and which
docker calls the script makes with and without Buildx (a recording docker).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(REPO.glob("*/Dockerfile*"))
# Official images, each published for linux/amd64 and linux/arm64.
MULTI_ARCH_BASES = {"python", "node", "nginx"}
ARCH_SPECIFIC = re.compile(
    r"amd64|x86_64|x86-64|i386|i686|aarch64|arm64|armhf|armv7|--platform|uname -m", re.IGNORECASE
)
SERVICES = {
    "fibstack-api": "server",
    "fibstack-worker": "worker",
    "fibstack-client": "client",
    "fibstack-router": "nginx",
}


def test_every_dockerfile_builds_for_any_architecture() -> None:
    assert len(DOCKERFILES) == 9  # four services, two each, and the Dev Container's
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        for number, line in enumerate(text.splitlines(), 1):
            assert not ARCH_SPECIFIC.search(line), f"{dockerfile.relative_to(REPO)}:{number}: {line.strip()!r}"
        bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
        stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE))
        for base in bases:
            if base in stages:
                continue
            assert base.split(":")[0] in MULTI_ARCH_BASES, f"{dockerfile.relative_to(REPO)}: {base} is not multi-arch"


@pytest.fixture
def fake_docker(tmp_path: Path) -> Path:
    """A docker that records its calls; `docker buildx version` works only with HAVE_BUILDX=1."""
    docker = tmp_path / "docker"
    docker.write_text(
        f"""#!/usr/bin/env bash
if [ "$1 $2" = "buildx version" ]; then [ "${{HAVE_BUILDX:-0}}" = 1 ]; exit; fi
echo "$*" >> "{tmp_path}/calls"
"""
    )
    docker.chmod(0o755)
    return tmp_path


def push(fake_docker: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    environment = os.environ | {"PATH": f"{fake_docker}:{os.environ['PATH']}", "TAG": "c0ffee", "ALLOW_DIRTY": "1"}
    result = subprocess.run(
        [str(REPO / "scripts" / "push-images.sh")],
        env=environment | env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    log = fake_docker / "calls"
    return result, log.read_text().splitlines() if log.exists() else []


def test_with_buildx_each_image_is_one_multi_arch_push_with_sbom_and_provenance(fake_docker: Path) -> None:
    result, calls = push(fake_docker, HAVE_BUILDX="1", REGISTRY="ghcr.io/Fibstack-Org")
    assert result.returncode == 0, result.stderr
    assert calls == [
        f"buildx build --platform linux/amd64,linux/arm64 --sbom=true --provenance=mode=max "
        f"--tag ghcr.io/fibstack-org/{image}:c0ffee --push {context}"
        for image, context in SERVICES.items()
    ]
    assert "one image per service for linux/amd64,linux/arm64, with SBOM and provenance" in result.stdout


def test_without_buildx_it_builds_for_this_machine_and_says_so(fake_docker: Path) -> None:
    result, calls = push(fake_docker, REGISTRY="registry.example/team")
    assert result.returncode == 0, result.stderr
    expected = []
    for image, context in SERVICES.items():
        expected += [
            f"build --tag registry.example/team/{image}:c0ffee {context}",
            f"push registry.example/team/{image}:c0ffee",
        ]
    assert calls == expected
    assert "no Buildx (docker buildx) here: building for this machine's platform only" in result.stdout


def test_push_0_builds_locally_even_with_buildx(fake_docker: Path) -> None:
    result, calls = push(fake_docker, HAVE_BUILDX="1", PUSH="0", REGISTRY="local")
    assert result.returncode == 0, result.stderr
    assert calls == [f"build --tag local/{image}:c0ffee {context}" for image, context in SERVICES.items()]
