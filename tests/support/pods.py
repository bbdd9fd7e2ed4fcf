"""The dev overlay's pods, run in Docker the way the kubelet would run them.

    python tests/support/pods.py [--keep]      (scripts/k8s-pods-check.sh, make k8s-pods-check)

No cluster can run here, so this is the next best thing: every Deployment and
StatefulSet that `kubectl kustomize k8s/overlays/dev` renders becomes a
`docker run` of the same image with the same command and args, the
environment resolved from the rendered ConfigMaps and Secret, the pod's
uid/gid/fsGroup, a read-only root, a fresh volume for each declared emptyDir
and claim (its root owned as the kubelet's fsGroup handling leaves it), all
capabilities dropped, no-new-privileges, and the memory and CPU limits.
Each Service name resolves on one Docker network (a network alias). Then
every probe is run as the kubelet would run it, F(10^7) is computed through
the router, the browser test runs through the router, and each container is
stopped with its termination grace period. Any drift between the manifests
and the images (a path the app writes under a read-only root, an env name,
a port, a probe) fails here.

What Docker cannot show: scheduling, the NetworkPolicies (no policy engine;
tests/test_k8s.py evaluates them), Services' load balancing across replicas,
rolling updates, PVC provisioning, emptyDir size limits and the memory
medium, and the admission of Pod Security.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import hostile
import requests
from docker_cli import docker, host_port, logs
from kube import (
    REPO,
    Object,
    component,
    container_env,
    ensure_dev_password,
    find,
    quantity_bytes,
    quantity_cpus,
    render_deploy,
    workloads,
)
from through_router import browser_test, compute_through_router

# The images this check builds: REGISTRY/fibstack-<service>:TAG.
REGISTRY = "fibstack-pods"
TAG = "k8s-pods-check"
PREFIX = "fibstack-pods"
# The kubelet starts every pod at once and Service names resolve before any
# pod is ready; a Docker alias exists only once its container runs, and nginx
# refuses to start with an upstream it cannot resolve. So: data, then the
# services the router proxies to, then the router.
START_ORDER = ("postgres", "redis", "api", "worker", "client", "router")


def say(message: str) -> None:
    print(f"k8s-pods-check: {message}", flush=True)


@dataclass
class Pod:
    """One workload's pod (its one container) as a Docker container."""

    workload: Object
    objects: list[Object]
    network: str
    container: str = field(init=False)
    host_ports: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.container = f"{PREFIX}-{self.name}"

    @property
    def name(self) -> str:
        return component(self.workload)

    @property
    def spec(self) -> Object:
        spec: Object = self.workload["spec"]["template"]["spec"]
        return spec

    @property
    def main(self) -> Object:
        containers: list[Object] = self.spec["containers"]
        assert len(containers) == 1, "one container per pod here"
        return containers[0]

    @property
    def init_containers(self) -> list[Object]:
        init: list[Object] = self.spec.get("initContainers", [])
        return init

    def aliases(self) -> list[str]:
        labels = self.workload["spec"]["template"]["metadata"]["labels"]
        services = find(self.objects, "Service")
        return [s["metadata"]["name"] for s in services if s["spec"]["selector"].items() <= labels.items()]

    def volume_name(self, volume: str) -> str:
        return f"{PREFIX}-{self.name}-{volume}"

    def volume_modes(self) -> dict[str, str]:
        """Each volume the container mounts, with the mode the kubelet gives its root.

        A claim's root: group-writable and setgid for the fsGroup; an emptyDir:
        0777, likewise with the fsGroup. (Docker's tmpfs would copy the image's
        directory and its permissions first, which an emptyDir never does.)
        """
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in self.workload["spec"].get("volumeClaimTemplates", [])}
        modes = {}
        mounts = [m for c in [*self.init_containers, self.main] for m in c.get("volumeMounts", [])]
        for mount in mounts:
            assert "subPath" not in mount, "subPath is not emulated"
            if mount["name"] in claims:
                modes[mount["name"]] = "2775"
            else:
                assert set(volumes[mount["name"]]) == {"name", "emptyDir"}, "only emptyDirs and claims are emulated"
                modes[mount["name"]] = "2777"
        return modes

    def run_args(self, container: Object | None = None) -> list[str]:
        """`docker run` for the pod's main container, or (to run to completion first) one of its init containers."""
        c = container or self.main
        pod_sc, sc = self.spec.get("securityContext", {}), c.get("securityContext", {})
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        if container is None:
            args = ["run", "-d", "--name", self.container, "--hostname", f"{self.name}-0", "--network", self.network]
            for alias in self.aliases():
                args += ["--network-alias", alias]
        else:
            args = ["run", "--rm", "--name", f"{self.container}-{c['name']}", "--network", self.network]
        args += ["--user", f"{uid}:{gid}"]
        if "fsGroup" in pod_sc:
            args += ["--group-add", str(pod_sc["fsGroup"])]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        for capability in sc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", capability]
        for capability in sc.get("capabilities", {}).get("add", []):
            args += ["--cap-add", capability]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        limits = c.get("resources", {}).get("limits", {})
        if "memory" in limits:
            memory = str(quantity_bytes(limits["memory"]))
            args += ["--memory", memory, "--memory-swap", memory]  # no swap, as on a node
        if "cpu" in limits:
            args += ["--cpus", str(quantity_cpus(limits["cpu"]))]
        args += ["--stop-timeout", str(self.spec.get("terminationGracePeriodSeconds", 30))]
        env = container_env(c, self.objects)
        for name, value in env.items():
            args += ["--env", f"{name}={value}"]
        for port in c.get("ports", []):
            # Loopback only: the host reaches the pod as kubectl port-forward would.
            args += ["--publish", f"127.0.0.1::{port['containerPort']}"]
        for mount in c.get("volumeMounts", []):
            # volume-nocopy: a fresh emptyDir or claim is empty, never a copy of the image's directory.
            volume = self.volume_name(mount["name"])
            args += ["--mount", f"type=volume,src={volume},dst={mount['mountPath']},volume-nocopy=true"]
        # The kubelet's own expansion of $(VAR) in command and args ($$ escapes it).
        command = [expand(part, env) for part in c.get("command", [])]
        container_args = [expand(part, env) for part in c.get("args", [])]
        if command:
            args += ["--entrypoint", command[0], c["image"], *command[1:], *container_args]
        else:
            args += [c["image"], *container_args]
        return args

    def prepare_volumes(self) -> None:
        """A fresh volume per emptyDir and claim, its root as the kubelet leaves it."""
        fs_group = self.spec.get("securityContext", {}).get("fsGroup", 0)
        for name, mode in self.volume_modes().items():
            volume = self.volume_name(name)
            docker("volume", "create", volume)
            docker(
                "run", "--rm", "--user", "0", "--entrypoint", "sh",
                "--mount", f"type=volume,src={volume},dst=/volume,volume-nocopy=true",
                self.main["image"], "-c", f"chown 0:{fs_group} /volume && chmod {mode} /volume",
            )  # fmt: skip

    def start(self) -> None:
        self.prepare_volumes()
        for init in self.init_containers:
            # As the kubelet: each init container to completion, in order, before the pod's containers.
            say(f"{self.name}: init container {init['name']} runs to completion")
            result = docker(*self.run_args(init), check=False, timeout=300)
            if result.returncode != 0:
                raise RuntimeError(
                    f"{self.name}: init container {init['name']} failed:\n{result.stdout}{result.stderr}"
                )
            said = result.stdout.strip().splitlines()
            say(f"{self.name}: {init['name']}: {said[-1] if said else 'done'}")
        docker(*self.run_args())
        for port in self.main.get("ports", []):
            self.host_ports[port["containerPort"]] = host_port(self.container, port["containerPort"])

    def resolve_port(self, port: int | str) -> int:
        if isinstance(port, int):
            return port
        number: int = next(p["containerPort"] for p in self.main["ports"] if p["name"] == port)
        return number

    def probe(self, kind: str) -> tuple[bool, str]:
        """Run the container's `kind` probe once, as the kubelet would."""
        probe = self.main.get(kind)
        if probe is None:
            return True, "none"
        timeout = probe.get("timeoutSeconds", 1)
        if "exec" in probe:
            try:
                result = docker("exec", self.container, *probe["exec"]["command"], check=False, timeout=timeout + 5)
            except subprocess.TimeoutExpired:
                return False, f"exec timed out after {timeout} s"
            return result.returncode == 0, f"exec {' '.join(probe['exec']['command'])} -> {result.returncode}"
        get = probe["httpGet"]
        port = self.host_ports[self.resolve_port(get["port"])]
        try:
            response = requests.get(f"http://127.0.0.1:{port}{get['path']}", timeout=timeout)
        except requests.RequestException as exc:
            return False, f"GET {get['path']}: {type(exc).__name__}"
        return 200 <= response.status_code < 400, f"GET {get['path']} -> {response.status_code}"

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            while True:
                ok, what = self.probe(kind)
                if ok:
                    say(f"{self.name}: {kind} passes ({what})")
                    break
                state = self.state()
                if not state["Running"]:
                    raise RuntimeError(f"{self.name} stopped (exit {state['ExitCode']}):\n{self.logs()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: {kind} still fails ({what}):\n{self.logs()}")
                time.sleep(1)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(docker("inspect", "--format", "{{json .State}}", self.container).stdout)
        return state

    def logs(self) -> str:
        return logs(self.container)

    def memory_peak(self) -> int | None:
        """The container's peak memory use so far (cgroup v1 or v2), in bytes."""
        for path in ("/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"):
            result = docker("exec", self.container, "cat", path, check=False)
            if result.returncode == 0 and result.stdout.strip().isdigit():
                return int(result.stdout)
        return None

    def stop(self) -> int:
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        docker("stop", "--time", str(grace), self.container, timeout=grace + 30)
        code: int = self.state()["ExitCode"]
        return code

    def remove(self) -> None:
        docker("rm", "-f", self.container, check=False)
        for name in self.volume_modes():
            docker("volume", "rm", "-f", self.volume_name(name), check=False)


HOSTILE = REPO / "tests/support/hostile.py"


def other_client_inside(pod: Pod) -> None:
    """hostile.py's other-client check from inside the pods' network (`pod`'s container), via the router's name."""
    result = subprocess.run(
        ["docker", "exec", "-i", pod.container, "python", "-", "http://router:8080", "other-client"],
        input=HOSTILE.read_text(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) references in a command or an argument, from the container's environment."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


def build_images() -> None:
    """The production images, built by the script that builds them for a deploy."""
    say(f"building {REGISTRY}/fibstack-*:{TAG} with scripts/push-images.sh (no push)")
    env = os.environ | {"REGISTRY": REGISTRY, "TAG": TAG, "PUSH": "0", "ALLOW_DIRTY": "1"}
    subprocess.run([str(REPO / "scripts/push-images.sh")], env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the containers running at the end")
    parser.add_argument("--no-build", action="store_true", help="use the images already tagged " + TAG)
    options = parser.parse_args()

    if not options.no_build:
        build_images()
    ensure_dev_password()
    # What the deploy script would apply, with these images.
    objects = render_deploy("dev", REGISTRY, TAG)
    network = f"{PREFIX}-{os.getpid()}"
    pods = {component(w): Pod(w, objects, network) for w in workloads(objects)}
    assert set(pods) == set(START_ORDER), f"workloads: {sorted(pods)}"
    docker("network", "create", network)
    failed = False
    try:
        for name in START_ORDER:
            say(f"starting {name}: docker {' '.join(pods[name].run_args()[:12])} ...")
            pods[name].start()
            pods[name].wait_ready()
        base = f"http://127.0.0.1:{pods['router'].host_ports[8080]}"
        say(f"every probe passes; the router is at {base} (as kubectl port-forward svc/router would give)")

        status = compute_through_router(base, 10_000_000)
        assert status["status"] == "done", status
        assert status["digits"] == 2_089_877, status
        say(f"F(10^7) through the router: {status['digits']:,} digits in {status['compute_ms']:.0f} ms")

        browser_test(base)
        say("the browser test passes through the router")

        # What a hostile client tries, against the pods' router: from this machine, and from inside.
        checks = ["submit-spellings", "other-spellings", "slow-clients", "system-flood"]
        subprocess.run([sys.executable, str(HOSTILE), base, *checks], check=True, timeout=300)
        hostile.check_caps_while_another_is_served(base, lambda: other_client_inside(pods["api"]))

        say("memory, peak against limit (for sizing requests and limits):")
        for name in START_ORDER:
            pod = pods[name]
            peak, limit = pod.memory_peak(), quantity_bytes(pod.main["resources"]["limits"]["memory"])
            assert not pod.state()["OOMKilled"], f"{name} was OOM-killed"
            shown = f"{peak / 2**20:6.1f} MiB" if peak is not None else "   n/a   "
            say(f"  {name:8} {shown} of {limit / 2**20:4.0f} MiB")
            if peak is not None:
                assert peak < limit, f"{name} reached its memory limit"
        for name in START_ORDER:
            ok, what = pods[name].probe("livenessProbe")
            assert ok, f"{name}: liveness fails after the load: {what}"

        if not options.keep:
            for name in reversed(START_ORDER):
                code = pods[name].stop()
                say(f"{name} stopped with exit code {code}")
                assert code == 0, f"{name} did not stop cleanly within its grace period:\n{pods[name].logs()}"
    except Exception:
        failed = True
        raise
    finally:
        if failed:
            for pod in pods.values():
                print(f"--- {pod.name} ---\n{pod.logs()}", file=sys.stderr)
        if not options.keep:
            for pod in pods.values():
                pod.remove()
            docker("network", "rm", network, check=False)
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
