"""scripts/check_sbom.py: an image's SBOM must list every package its lock pins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import check_sbom  # noqa: E402


def write_sboms(directory: Path, drop: str | None = None) -> None:
    for image, lock in check_sbom.LOCKS.items():
        packages = [{"name": n, "versionInfo": v} for n, v in sorted(check_sbom.locked(lock)) if n != drop]
        (directory / f"{image}.spdx.json").write_text(json.dumps({"packages": packages}))
    for image in check_sbom.NGINX_IMAGES:
        packages = [{"name": "nginx", "versionInfo": "1.27.5"}, {"name": "libc6", "versionInfo": "2.36"}]
        (directory / f"{image}.spdx.json").write_text(json.dumps({"packages": packages}))


def check(directory: Path) -> subprocess.CompletedProcess[str]:
    script = REPO / "scripts" / "check_sbom.py"
    return subprocess.run([sys.executable, str(script), str(directory)], capture_output=True, text=True, timeout=30)


def test_sboms_listing_every_locked_package_pass(tmp_path: Path) -> None:
    write_sboms(tmp_path)
    result = check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "every locked package listed" in result.stdout


def test_a_locked_package_missing_from_an_sbom_is_named(tmp_path: Path) -> None:
    write_sboms(tmp_path, drop="gmpy2")
    result = check(tmp_path)
    assert result.returncode == 1
    version = dict(check_sbom.locked(check_sbom.LOCKS["fibstack-worker"]))["gmpy2"]
    assert f"fibstack-worker: gmpy2=={version} (from worker/requirements.txt) is not in its SBOM" in result.stderr
