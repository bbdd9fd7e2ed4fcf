"""A local AWS stand-in for scripts/deploy_eb.py: moto in server mode, plus what moto lacks.

moto serves S3 fully and Elastic Beanstalk applications and environments, but
(in 5.2) not create_storage_location, create_application_version,
update_environment or describe_events, nor describe_environments filtered by
name. This module adds those to moto's Beanstalk backend, modelled on what
Beanstalk does: a version's bundle must be in S3 and its label unused; an
update takes the environment through Updating to Ready a few polls later,
with events along the way. Its health afterwards is Green, or whatever the
environment's tag "fake-eb:health" says (set through the real
UpdateTagsForResource call), so tests can make a deploy fail.

What it cannot show: that Beanstalk accepts the bundle, pulls the images and
starts the containers (tests/test_beanstalk_bundle.py runs the bundle in
Docker instead), IAM permissions, real timings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.elasticbeanstalk.exceptions import InvalidParameterValueError
from moto.elasticbeanstalk.models import EBBackend, Environment
from moto.elasticbeanstalk.responses import EBResponse
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

from stack.servers import free_port

HEALTH_TAG = "fake-eb:health"
POLLS_TO_READY = 2


@dataclass
class BeanstalkState:
    """What this stand-in adds to one account and region's Beanstalk backend."""

    versions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    polls_left: dict[str, int] = field(default_factory=dict)


def _state(backend: EBBackend) -> BeanstalkState:
    if not hasattr(backend, "fake_state"):
        backend.fake_state = BeanstalkState()  # type: ignore[attr-defined]
    state: BeanstalkState = backend.fake_state  # type: ignore[attr-defined]
    return state


def _event(
    backend: EBBackend, app: str, env: str | None, message: str, severity: str = "INFO", label: str = ""
) -> None:
    _state(backend).events.append(
        {
            "EventDate": utcnow(),
            "Message": message,
            "ApplicationName": app,
            "EnvironmentName": env or "",
            "VersionLabel": label,
            "Severity": severity,
        }
    )


def _environment(backend: EBBackend, app: str, name: str) -> Environment:
    try:
        return backend.applications[app].environments[name]
    except KeyError:
        raise InvalidParameterValueError(f"No Environment found for EnvironmentName = '{name}'.") from None


def _describe(env: Environment) -> dict[str, Any]:
    return {
        "EnvironmentName": env.environment_name,
        "EnvironmentId": env.environment_id,
        "ApplicationName": env.application_name,
        "VersionLabel": str(env.version_label),
        "SolutionStackName": env.solution_stack_name,
        "CNAME": f"{env.environment_name}.eb.localhost",
        "DateCreated": env.date_created,
        "DateUpdated": env.date_updated,
        "Status": env.status,
        "Health": env.health,
        "HealthStatus": env.health_status,
        "EnvironmentArn": env.environment_arn,
    }


class FakeBeanstalk:
    """The added operations, as methods moto's EBResponse dispatches to by name."""

    @staticmethod
    def create_storage_location(self: EBResponse) -> ActionResult:
        backend = self.elasticbeanstalk_backend
        bucket = f"elasticbeanstalk-{backend.region_name}-{backend.account_id}"
        s3 = s3_backends[backend.account_id]["aws"]
        if bucket not in s3.buckets:
            s3.create_bucket(bucket, backend.region_name)
        return ActionResult({"S3Bucket": bucket})

    @staticmethod
    def create_application_version(self: EBResponse) -> ActionResult:
        backend = self.elasticbeanstalk_backend
        app, label = self._get_param("ApplicationName"), self._get_param("VersionLabel")
        if app not in backend.applications:
            raise InvalidParameterValueError(f"No Application named '{app}' found.")
        if (app, label) in _state(backend).versions:
            raise InvalidParameterValueError(f"Application Version {label} already exists.")
        bundle = self._get_param("SourceBundle") or {}
        bucket, key = str(bundle.get("S3Bucket", "")), str(bundle.get("S3Key", ""))
        try:
            found = s3_backends[backend.account_id]["aws"].get_object(bucket, key)
        except Exception:  # moto raises its own errors for a missing bucket
            found = None
        if found is None:
            raise InvalidParameterValueError(f"Unable to download from S3 location (Bucket: {bucket}  Key: {key}).")
        version = {
            "ApplicationName": app,
            "VersionLabel": label,
            "Description": self._get_param("Description") or "",
            "SourceBundle": {"S3Bucket": bucket, "S3Key": key},
            "DateCreated": utcnow(),
            "DateUpdated": utcnow(),
            "Status": "PROCESSED" if self._get_param("Process") else "UNPROCESSED",
        }
        _state(backend).versions[(app, label)] = version
        _event(backend, app, None, f"Created new Application Version ({label})", label=label)
        return ActionResult({"ApplicationVersion": version})

    @staticmethod
    def describe_application_versions(self: EBResponse) -> ActionResult:
        backend = self.elasticbeanstalk_backend
        app = self._get_param("ApplicationName")
        versions = [v for (a, _), v in _state(backend).versions.items() if not app or a == app]
        return ActionResult({"ApplicationVersions": versions})

    @staticmethod
    def update_environment(self: EBResponse) -> ActionResult:
        backend = self.elasticbeanstalk_backend
        app, name, label = (self._get_param(p) for p in ("ApplicationName", "EnvironmentName", "VersionLabel"))
        env = _environment(backend, app, name)
        if (app, label) not in _state(backend).versions:
            raise InvalidParameterValueError(f"No Application Version named '{label}' found.")
        if env.status != "Ready":
            raise InvalidParameterValueError(
                f"Environment named {name} is in an invalid state for this operation. Must be Ready."
            )
        env.version_label = label
        env.status, env.health, env.date_updated = "Updating", "Grey", utcnow()
        _state(backend).polls_left[name] = POLLS_TO_READY
        _event(backend, app, name, "Environment update is starting.", label=label)
        return ActionResult(_describe(env))

    @staticmethod
    def describe_environments(self: EBResponse) -> ActionResult:
        backend = self.elasticbeanstalk_backend
        names = self._get_param("EnvironmentNames") or []
        found = [e for e in backend.describe_environments() if not names or e.environment_name in names]
        for env in found:
            _advance(backend, env)
        return ActionResult({"Environments": [_describe(env) for env in found]})

    @staticmethod
    def describe_events(self: EBResponse) -> ActionResult:
        backend = self.elasticbeanstalk_backend
        app, env = self._get_param("ApplicationName"), self._get_param("EnvironmentName")
        events = [
            e
            for e in _state(backend).events
            if e["ApplicationName"] == app and (not env or e["EnvironmentName"] in ("", env))
        ]
        return ActionResult({"Events": list(reversed(events))})  # newest first, as Beanstalk lists them


def _advance(backend: EBBackend, env: Environment) -> None:
    """An update in progress finishes after a few polls, healthy unless the tag says otherwise."""
    state = _state(backend)
    if env.status != "Updating":
        return
    state.polls_left[env.environment_name] -= 1
    if state.polls_left[env.environment_name] > 0:
        return
    env.status = "Ready"
    env.health = env.tags.get(HEALTH_TAG, "Green")
    app, name, label = env.application_name, env.environment_name, str(env.version_label)
    if env.health == "Green":
        _event(backend, app, name, "New application version was deployed to running EC2 instances.", label=label)
        _event(backend, app, name, "Environment update completed successfully.", label=label)
    else:
        _event(
            backend, app, name, "ECS task stopped due to: Essential container in task exited. (router)", "ERROR", label
        )
        _event(backend, app, name, f"Environment health has transitioned from Ok to {env.health}.", "WARN", label)


def install() -> None:
    """Add the operations to moto's Beanstalk responses (once, in this process)."""
    for name, method in vars(FakeBeanstalk).items():
        if not name.startswith("_"):
            setattr(EBResponse, name, method.__func__)


def start(port: int) -> ThreadedMotoServer:
    install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


@contextmanager
def serving() -> Iterator[str]:
    """The stand-in on a free port for as long as the block runs; yields its endpoint URL."""
    port = free_port()
    server = start(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
