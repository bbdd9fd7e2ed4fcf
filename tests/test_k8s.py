"""k8s/ without a cluster: every overlay renders, validates, passes checkov, and is wired right.

The pods themselves run in Docker in scripts/k8s-pods-check.sh (make k8s-pods-check).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from env_names import API_READS, MIGRATION_READS, WORKER_READS, router_reads
from kube import (
    DEV_PASSWORD_FILES,
    K8S,
    REPO,
    Object,
    component,
    container_env,
    ensure_dev_password,
    find,
    generated,
    one,
    quantity_bytes,
    render,
    render_deploy,
    workloads,
)

BIN = Path(sys.executable).parent
CHECKOV = REPO / ".work" / "checkov" / "bin" / "checkov"
CRD_SCHEMAS = K8S / "crd-schemas"
# The oldest and newest Kubernetes versions the manifests are written for.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CRD_GROUPS = ("gateway.networking.k8s.io", "keda.sh", "cert-manager.io", "monitoring.coreos.com")
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/component",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)


def prod_with_gateway_and_keda(workdir: Path) -> Path:
    """The prod overlay as a user edits it for the Gateway API, KEDA and monitoring (see its comments)."""
    shutil.copytree(K8S, workdir / "k8s", ignore=shutil.ignore_patterns("node_modules"))
    kustomization = workdir / "k8s" / "overlays" / "prod" / "kustomization.yaml"
    text = kustomization.read_text()
    enabled = "  - ../../components/ingress\n  - ../../components/cert-manager\n"
    assert enabled in text
    text = text.replace(
        enabled, "  - ../../components/gateway-api\n  - ../../components/keda\n  - ../../components/monitoring\n"
    )
    kustomization.write_text(text)
    return kustomization.parent


VARIANTS = {
    "dev": lambda workdir: K8S / "overlays" / "dev",
    "prod": lambda workdir: K8S / "overlays" / "prod",
    "prod-gateway-keda": prod_with_gateway_and_keda,
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Object]]:
    ensure_dev_password()
    name: str = request.param
    return name, render(VARIANTS[name](tmp_path_factory.mktemp(name)))


@pytest.fixture(scope="module")
def dev() -> list[Object]:
    ensure_dev_password()
    return render(K8S / "overlays" / "dev")


def write_yaml(objects: list[Object], path: Path) -> Path:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


def is_crd(obj: Object) -> bool:
    return obj["apiVersion"].split("/")[0] in CRD_GROUPS


def pod_specs(objects: list[Object]) -> Iterator[tuple[str, Object]]:
    for workload in workloads(objects):
        yield workload["metadata"]["name"], workload["spec"]["template"]["spec"]


# 1. Rendering and schemas.


def kubernetes_validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "-k", version, str(path)], capture_output=True, text=True
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_objects_validate_strictly(variant: tuple[str, list[Object]], version: str, tmp_path: Path) -> None:
    name, objects = variant
    built_in = [o for o in objects if not is_crd(o)]
    result = kubernetes_validate(write_yaml(built_in, tmp_path / f"{name}.yaml"), version)
    # It warns, and exits 0, for a kind it has no schema for: a warning is a failure.
    problems = [line for line in (result.stdout + result.stderr).splitlines() if not line.startswith("INFO")]
    assert result.returncode == 0, result.stdout + result.stderr
    assert problems == []


def validate_crds(objects: list[Object]) -> subprocess.CompletedProcess[str]:
    if not (CRD_SCHEMAS / "node_modules").exists():
        subprocess.run(
            [str(REPO / "scripts" / "with-node"), "npm", "ci", "--no-audit", "--no-fund"], cwd=CRD_SCHEMAS, check=True
        )
    return subprocess.run(
        [str(REPO / "scripts" / "with-node"), "node", "validate.mjs"],
        cwd=CRD_SCHEMAS,
        input=json.dumps(objects),
        capture_output=True,
        text=True,
    )


def test_custom_resources_validate_against_their_own_schemas(variant: tuple[str, list[Object]]) -> None:
    name, objects = variant
    crds = [o for o in objects if is_crd(o)]
    expected = {
        "dev": set(),
        "prod": {"Certificate", "Issuer"},
        "prod-gateway-keda": {"HTTPRoute", "ScaledObject", "PodMonitor"},
    }[name]
    assert {o["kind"] for o in crds} == expected
    result = validate_crds(crds)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validators_catch_mistakes(dev: list[Object], tmp_path: Path) -> None:
    # A check that cannot fail proves nothing: each one refuses a broken object.
    api = json.loads(json.dumps(one(dev, "Deployment", "api")))
    api["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/typo"
    result = kubernetes_validate(write_yaml([api], tmp_path / "broken.yaml"), KUBERNETES_VERSIONS[-1])
    assert result.returncode != 0
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "broken"},
        "spec": {"rules": [{"backendRefs": [{"name": "router", "port": "eighty"}]}]},
    }
    assert validate_crds([route]).returncode != 0
    assert validate_crds([{"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}}]).returncode


# 2. checkov and yamllint.


def test_checkov_passes(variant: tuple[str, list[Object]], tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: make checkov installs it (make test does)")
    name, objects = variant
    rendered = write_yaml(objects, tmp_path / f"{name}.yaml")
    result = subprocess.run(
        [
            str(CHECKOV),
            "--config-file",
            str(K8S / ".checkov.yaml"),
            "-f",
            str(rendered),
            "--skip-download",
            "--compact",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_yamllint() -> None:
    result = subprocess.run(
        [str(BIN / "yamllint"), "--strict", "-c", str(K8S / ".yamllint.yaml"), str(K8S)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# 3. Wiring.


def test_every_object_carries_the_recommended_labels(variant: tuple[str, list[Object]]) -> None:
    _, objects = variant
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in RECOMMENDED_LABELS if label not in labels]
        assert missing == [], f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
    for name, _ in pod_specs(objects):
        workload = next(w for w in workloads(objects) if w["metadata"]["name"] == name)
        assert workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"]


def test_nothing_is_left_for_the_overlay_to_set(variant: tuple[str, list[Object]]) -> None:
    _, objects = variant
    assert "set-by-overlay" not in yaml.safe_dump_all(objects)
    assert "set-by-site-yaml" not in yaml.safe_dump_all(objects)


def test_services_select_pods_and_name_their_ports(variant: tuple[str, list[Object]]) -> None:
    _, objects = variant
    for service in find(objects, "Service"):
        selector = service["spec"]["selector"]
        matching = [
            w for w in workloads(objects) if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, f"Service {service['metadata']['name']} selects {len(matching)} workloads"
        ports = {
            p["name"]: p["containerPort"]
            for c in matching[0]["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {service['metadata']['name']}: no port {port['targetPort']}"
    for workload in workloads(objects):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()


def test_every_deployment_and_statefulset_is_unique_per_selector(variant: tuple[str, list[Object]]) -> None:
    _, objects = variant
    selectors = [json.dumps(w["spec"]["selector"], sort_keys=True) for w in workloads(objects)]
    assert len(selectors) == len(set(selectors))


def test_names_read_by_the_code_are_found() -> None:
    # The helper above must see the names (a test of the test).
    assert {"REDIS_HOST", "REDIS_TLS", "PGPASSWORD", "PGSSLMODE", "WEB_CONCURRENCY", "PORT"} <= API_READS
    assert {"REDIS_HOST", "WORKER_HEARTBEAT_FILE", "WORKER_STALL_SECONDS"} <= WORKER_READS
    assert {"API_UPSTREAM", "CLIENT_UPSTREAM", "TRUSTED_PROXIES", "ROUTER_MODE"} <= router_reads()


@pytest.mark.parametrize(
    ("workload", "reads", "required"),
    [
        ("api", API_READS, {"REDIS_HOST", "REDIS_PASSWORD", "PGHOST", "PGUSER", "PGDATABASE", "PGPASSWORD"}),
        ("worker", WORKER_READS, {"REDIS_HOST", "REDIS_PASSWORD", "PGHOST", "PGUSER", "PGDATABASE", "PGPASSWORD"}),
        ("router", router_reads(), {"API_UPSTREAM", "CLIENT_UPSTREAM"}),
    ],
)
def test_env_names_are_the_ones_the_code_reads(
    dev: list[Object], workload: str, reads: set[str], required: set[str]
) -> None:
    container = one(dev, "Deployment", workload)["spec"]["template"]["spec"]["containers"][0]
    env = container_env(container, dev)  # raises if a referenced ConfigMap, Secret or key is missing
    assert set(env) <= reads, f"{workload} sets variables its code never reads: {set(env) - reads}"
    assert required <= set(env)
    assert all(value.strip() for name, value in env.items() if name in required)
    assert not {"MIGRATION_PGUSER", "MIGRATION_PGPASSWORD"} & set(env)  # the admin's, for the migration only


def test_prod_references_only_the_secret_the_user_creates(variant: tuple[str, list[Object]]) -> None:
    name, objects = variant
    secrets = {"fibstack-postgres-admin", "fibstack-postgres-password", "fibstack-redis-password"}
    if name == "dev":
        for secret in secrets:
            assert generated(objects, "Secret", secret)  # from the git-ignored files
        return
    assert find(objects, "Secret") == []  # no secret in the repo or the render
    keys = [
        v["valueFrom"]["secretKeyRef"]
        for _, spec in pod_specs(objects)
        for c in spec["containers"] + spec.get("initContainers", [])
        for v in c.get("env", [])
        if "secretKeyRef" in v.get("valueFrom", {})
    ]
    assert {key["name"] for key in keys} == secrets
    assert not any(key.get("optional") for key in keys)  # Redis's AUTH included: none may be absent


def test_only_the_migration_step_sees_the_database_admin(variant: tuple[str, list[Object]]) -> None:
    _, objects = variant
    for name, spec in pod_specs(objects):
        for container in spec["containers"] + spec.get("initContainers", []):
            refs = {v["valueFrom"]["secretKeyRef"]["name"] for v in container.get("env", []) if "valueFrom" in v
                    and "secretKeyRef" in v["valueFrom"]}  # fmt: skip
            if "fibstack-postgres-admin" in refs:
                assert (name, container["name"]) in {("api", "migrate"), ("postgres", "postgres")}
    migrate = one(objects, "Deployment", "api")["spec"]["template"]["spec"]["initContainers"][0]
    assert migrate["command"][:3] == ["python", "-m", "fibapi.migrate"]
    env = container_env(migrate, objects) if variant[0] == "dev" else {}
    assert set(env) <= MIGRATION_READS


def test_ports_and_probes_match_the_code(dev: list[Object]) -> None:
    from fibapi import create_app
    from fibapi.config import Settings

    env = {"REDIS_HOST": "r", "REDIS_PASSWORD": "y", "PGHOST": "p", "PGUSER": "u", "PGDATABASE": "d", "PGPASSWORD": "x"}
    env |= {"PGSSLMODE": "disable"}
    app = create_app(Settings.from_env(env | {"RECONCILE_INTERVAL_SECONDS": "0"}))
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    api = one(dev, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert api["ports"][0]["containerPort"] == int(container_env(api, dev)["PORT"])
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/readyz" in routes
    assert api["livenessProbe"]["httpGet"]["path"] == "/api/healthz" in routes

    router = one(dev, "Deployment", "router")["spec"]["template"]["spec"]["containers"][0]
    template = (REPO / "nginx/templates/default.conf.template").read_text()
    assert f"listen {router['ports'][0]['containerPort']};" in template
    assert f"location = {router['readinessProbe']['httpGet']['path']} " in template
    env = container_env(router, dev)
    assert env["API_UPSTREAM"] == f"api:{api['ports'][0]['containerPort']}"
    client = one(dev, "Deployment", "client")["spec"]["template"]["spec"]["containers"][0]
    assert f"listen {client['ports'][0]['containerPort']};" in (REPO / "client/nginx.conf").read_text()
    assert env["CLIENT_UPSTREAM"] == f"client:{client['ports'][0]['containerPort']}"

    worker = one(dev, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    assert worker["livenessProbe"]["exec"]["command"] == ["python", "-m", "fibworker.heartbeat"]
    assert (REPO / "worker/fibworker/heartbeat.py").exists()

    # Metrics: the ports the code serves them on by default, and nginx's stub_status.
    from fibworker.config import Settings as WorkerSettings

    ports = {c["name"]: {p["name"]: p["containerPort"] for p in c["ports"]} for c in (api, worker, router)}
    assert ports["api"]["metrics"] == Settings.metrics_port
    assert ports["worker"]["metrics"] == WorkerSettings.metrics_port
    assert f"listen {ports['router']['status']};" in template
    for workload, port in (("api", Settings.metrics_port), ("worker", WorkerSettings.metrics_port)):
        annotations = one(dev, "Deployment", workload)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)


def test_keda_scales_on_the_queue_the_api_fills(tmp_path: Path) -> None:
    from fibapi import contract
    from rq import Queue

    objects = render(prod_with_gateway_and_keda(tmp_path))
    trigger = one(objects, "ScaledObject", "worker")["spec"]["triggers"][0]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == Queue.redis_queue_namespace_prefix + contract.QUEUE_NAME
    worker = one(objects, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    # Prod's Secrets are the user's, not in the render: the names, not their values.
    env_names = {v["name"] for v in worker["env"]}
    for source in worker["envFrom"]:
        env_names |= set(generated(objects, "ConfigMap", source["configMapRef"]["name"].rsplit("-", 1)[0])["data"])
    metadata = trigger["metadata"]
    assert {metadata["hostFromEnv"], metadata["portFromEnv"], metadata["passwordFromEnv"]} <= env_names
    assert find(objects, "HorizontalPodAutoscaler", "worker") == []  # KEDA's autoscaler replaces it
    assert find(objects, "HorizontalPodAutoscaler", "api")


def test_shutdown_leaves_time_to_drain(dev: list[Object]) -> None:
    conf = (REPO / "server/gunicorn.conf.py").read_text()
    graceful = int(re.search(r"^graceful_timeout = (\d+)", conf, re.MULTILINE).group(1))  # type: ignore[union-attr]
    api = one(dev, "Deployment", "api")["spec"]["template"]["spec"]
    pre_stop = int(api["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert api["terminationGracePeriodSeconds"] > pre_stop + graceful
    for name in ("router", "client"):
        spec = one(dev, "Deployment", name)["spec"]["template"]["spec"]
        assert spec["containers"][0]["lifecycle"]["preStop"]


def test_images_are_never_latest(variant: tuple[str, list[Object]], tmp_path: Path) -> None:
    name, objects = variant
    for _, spec in pod_specs(objects):
        for container in spec["containers"]:
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{image} has no tag"
            assert not image.endswith(":latest")
    if name != "prod-gateway-keda":
        deployed = render_deploy(name, "registry.example:5000/team", "0123abcd")
        images = {c["image"] for _, spec in pod_specs(deployed) for c in spec["containers"]}
        ours = {image for image in images if "fibstack-" in image}
        assert ours == {
            f"registry.example:5000/team/fibstack-{s}:0123abcd" for s in ("api", "worker", "client", "router")
        }


# Pod Security "restricted" (https://kubernetes.io/docs/concepts/security/pod-security-standards/),
# plus what this project asks of every pod.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(name: str, spec: Object) -> list[str]:
    problems: list[str] = []
    pod = spec.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{name}: {flag}")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"{name}: volume {volume['name']} is {kinds}")
    if pod.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append(f"{name}: pod seccompProfile")
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        where = f"{name}/{container['name']}"
        sc = container.get("securityContext", {})
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{where}: capabilities must drop ALL")
        if set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: adds capabilities")
        if not (sc.get("runAsNonRoot") or pod.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot")
        if sc.get("runAsUser", pod.get("runAsUser")) in (0, None):
            problems.append(f"{where}: explicit non-root runAsUser")
        if sc.get("runAsGroup", pod.get("runAsGroup")) in (0, None):
            problems.append(f"{where}: explicit non-root runAsGroup")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem")
        resources = container.get("resources", {})
        for need in ("requests.cpu", "requests.memory", "limits.memory", "limits.cpu"):
            group, key = need.split(".")
            if key not in resources.get(group, {}):
                problems.append(f"{where}: no {need}")
        if container in spec.get("containers", []) and not (
            container.get("livenessProbe") and container.get("readinessProbe")
        ):
            problems.append(f"{where}: liveness and readiness probes")  # init containers run to completion
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: automountServiceAccountToken must be false (no pod here needs the API)")
    if spec.get("enableServiceLinks") is not False:
        problems.append(f"{name}: enableServiceLinks must be false (REDIS_PORT=tcp://...)")
    return problems


def test_every_pod_meets_pod_security_restricted(variant: tuple[str, list[Object]]) -> None:
    _, objects = variant
    problems = [p for name, spec in pod_specs(objects) for p in restricted_violations(name, spec)]
    assert problems == []
    namespace = find(objects, "Namespace")[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    own_images = [spec for name, spec in pod_specs(objects) if name not in ("postgres", "redis")]
    assert all(spec["securityContext"]["runAsUser"] >= 10000 for spec in own_images)


def test_the_restricted_check_catches_violations(dev: list[Object]) -> None:
    spec = json.loads(json.dumps(one(dev, "Deployment", "api")["spec"]["template"]["spec"]))
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations("api", spec)) == 2


def test_memory_limits_hold_what_the_services_need(dev: list[Object]) -> None:
    # Measured in scripts/k8s-pods-check.sh (F(10^7) in the worker, the page
    # through the router) with these very limits; here, that none shrank.
    worker = one(dev, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0]
    assert quantity_bytes(worker["resources"]["limits"]["memory"]) >= 256 * 2**20
    for name, spec in pod_specs(dev):
        for container in spec["containers"]:
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert quantity_bytes(requests["memory"]) <= quantity_bytes(limits["memory"]), name


# NetworkPolicies, evaluated: which pod may open which port on which.

OUTSIDE = "outside"  # any address not a pod of this namespace: other namespaces, the internet, DNS servers


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"the evaluator handles matchLabels only: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(peer: dict[str, Any], target: str, labels: dict[str, dict[str, str]]) -> bool:
    if "ipBlock" in peer or "namespaceSelector" in peer:
        return target == OUTSIDE
    return target != OUTSIDE and _selects(peer["podSelector"], labels[target])


def _port_matches(rule: dict[str, Any], port: int) -> bool:
    return "ports" not in rule or any(
        p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in rule["ports"]
    )


def allowed(policies: list[Object], labels: dict[str, dict[str, str]], source: str, target: str, port: int) -> bool:
    """Whether `source` may open TCP `port` on `target`: its egress and the target's ingress both allow it."""

    def side(direction: str, subject: str, other: str) -> bool:
        if subject == OUTSIDE:
            return True  # not ours to police
        selecting = [
            p
            for p in policies
            if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], labels[subject])
        ]
        if not selecting:
            return True  # no policy selects the pod for this direction: Kubernetes allows everything
        peers_key = "to" if direction == "Egress" else "from"
        for policy in selecting:
            for rule in policy["spec"].get(direction.lower(), []):
                peers = rule.get(peers_key)
                if _port_matches(rule, port) and (peers is None or any(_peer_matches(p, other, labels) for p in peers)):
                    return True
        return False

    return side("Egress", source, target) and side("Ingress", target, source)


def test_network_policies_allow_exactly_the_edges_the_app_uses(dev: list[Object]) -> None:
    labels = {component(w): w["spec"]["template"]["metadata"]["labels"] for w in workloads(dev)}
    policies = find(dev, "NetworkPolicy")
    ports = sorted(
        {
            p["containerPort"]
            for w in workloads(dev)
            for c in w["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        | {53, 443}
    )
    edges = {
        (source, target, port)
        for source in [*labels, OUTSIDE]
        for target in [*labels, OUTSIDE]
        for port in ports
        if source != target and allowed(policies, labels, source, target, port)
    }
    uses = {
        (OUTSIDE, "router", 8080),
        ("router", "api", 5000),
        ("router", "client", 3000),
        ("api", "postgres", 5432),
        ("api", "redis", 6379),
        ("worker", "postgres", 5432),
        ("worker", "redis", 6379),
    } | {(name, OUTSIDE, 53) for name in labels}
    assert edges == uses


def test_the_policy_evaluator_sees_a_hole(dev: list[Object]) -> None:
    labels = {component(w): w["spec"]["template"]["metadata"]["labels"] for w in workloads(dev)}
    policies = find(dev, "NetworkPolicy")
    assert not allowed(policies, labels, "client", "postgres", 5432)
    # A careless edit: the client may connect anywhere, and Postgres's own policy is gone...
    open_egress = {
        "metadata": {"name": "client-anywhere"},
        "spec": {"podSelector": {"matchLabels": labels["client"]}, "policyTypes": ["Egress"], "egress": [{}]},
    }
    careless = [p for p in policies if p["metadata"]["name"] != "postgres"] + [open_egress]
    assert not allowed(careless, labels, "client", "postgres", 5432)  # ...default-deny still holds
    without_default_deny = [p for p in careless if p["metadata"]["name"] != "default-deny"]
    assert allowed(without_default_deny, labels, "client", "postgres", 5432)


def test_prod_data_edges_go_only_to_the_managed_services(variant: tuple[str, list[Object]]) -> None:
    name, objects = variant
    if name == "dev":
        return
    site = yaml.safe_load((K8S / "overlays/prod/site.yaml").read_text())["data"]
    for policy_name, ports in (("api-to-data", [5432, 6379]), ("worker-to-data", [5432, 6379])):
        egress = one(objects, "NetworkPolicy", policy_name)["spec"]["egress"]
        assert [rule["to"] for rule in egress] == [[{"ipBlock": {"cidr": site["data-cidr"]}}]] * len(ports)
        assert [rule["ports"][0]["port"] for rule in egress] == ports
    assert find(objects, "StatefulSet") == []
    for service in ("postgres", "redis"):
        config = generated(objects, "ConfigMap", f"fibstack-{service}")["data"]
        lines = (K8S / f"overlays/prod/{service}.env").read_text().splitlines()
        assert dict(line.split("=", 1) for line in lines if line and not line.startswith("#")) == config
    router = generated(objects, "ConfigMap", "fibstack-router")["data"]
    assert router["TRUSTED_PROXIES"] == site["trusted-proxies"]


def test_prod_admits_only_the_ingress_namespace_and_trusts_only_its_proxies(variant: tuple[str, list[Object]]) -> None:
    name, objects = variant
    if name == "dev":
        return
    site = yaml.safe_load((K8S / "overlays/prod/site.yaml").read_text())["data"]
    (rule,) = one(objects, "NetworkPolicy", "router")["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": site["ingress-namespace"]}}}
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    import ipaddress

    for proxies in site["trusted-proxies"].split():
        # Exact ranges: not all of a private block, where any pod could claim to be a client.
        assert ipaddress.ip_network(proxies).prefixlen >= 16, proxies


def test_prod_verifies_the_managed_postgres(variant: tuple[str, list[Object]]) -> None:
    name, objects = variant
    config = generated(objects, "ConfigMap", "fibstack-postgres")["data"]
    if name == "dev":
        assert config["PGSSLMODE"] == "disable"  # the in-cluster Postgres, reached by the api pods only
        return
    assert config["PGSSLMODE"] == "verify-full"
    spec = one(objects, "Deployment", "api")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v.get("configMap", {}).get("name") == "fibstack-postgres-ca")
    for container in spec["containers"] + spec["initContainers"]:
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        assert config["PGSSLROOTCERT"] == f"{mount['mountPath']}/ca.pem"


def test_prod_scales_out_with_budgets(variant: tuple[str, list[Object]]) -> None:
    name, objects = variant
    if name == "dev":
        assert all(w["spec"]["replicas"] == 1 for w in workloads(objects))
        return
    for service in ("api", "worker", "client", "router"):
        assert one(objects, "Deployment", service)["spec"]["replicas"] >= 2
        assert one(objects, "PodDisruptionBudget", service)["spec"]["minAvailable"] == 1
    ingress = find(objects, "Ingress")
    if ingress:
        rule = ingress[0]["spec"]["rules"][0]
        assert rule["http"]["paths"][0]["pathType"] == "Prefix"
        assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "router"
        assert ingress[0]["spec"]["ingressClassName"]
        assert not ingress[0]["metadata"].get("annotations")


def test_data_stateful_sets_keep_their_data(dev: list[Object]) -> None:
    postgres = one(dev, "StatefulSet", "postgres")
    redis = one(dev, "StatefulSet", "redis")
    for sts in (postgres, redis):
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pg = postgres["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in pg["volumeMounts"] if m["name"] == "data")
    pgdata = next(v["value"] for v in pg["env"] if v["name"] == "PGDATA")
    assert pgdata.startswith(mount["mountPath"] + "/")  # a subdirectory, never the volume's root
    args: list[Any] = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"


def test_no_secret_is_committed() -> None:
    ensure_dev_password()
    for secret_file in DEV_PASSWORD_FILES:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(secret_file)], cwd=REPO)
        assert ignored.returncode == 0, f"{secret_file} must be git-ignored"
    tracked = subprocess.run(["git", "ls-files", "k8s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert not {path.name for path in DEV_PASSWORD_FILES} & {Path(line).name for line in tracked.split()}
    assert not re.search(r"^\s*password\s*[:=]", "".join((REPO / p).read_text() for p in tracked.split()), re.MULTILINE)
