"""Roll a model image out on Kubernetes, prove it answers, and roll back when it does not.

    result = deploy("127.0.0.1:5000/detectops/detector@sha256:...", "detectops", "detector",
                    smoke_via="pods", expect_label="person")

``deploy`` applies the Deployment and Service (create or replace: idempotent), waits for the
rollout (failing early on CrashLoopBackOff, ImagePullBackOff, exited containers, readiness that
never passes), smoke-tests the live endpoint with a real photo, and on any failure puts the
previous revision back (``kubectl rollout undo``), waits for it, and raises ``DeploymentRolledBack``
saying why and what is serving now. The deployer needs only the namespaced Role in
``include/k8s/serving/rbac.yaml``; ``prepare_namespace`` (an admin's job) creates it.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detectops.deploy.kube import Kube, apply, apply_all, connect
from detectops.deploy.manifests import (
    DEFAULT_PORT,
    deployer_pod_manifest,
    namespace_manifest,
    rbac_manifests,
    serving_manifests,
)
from detectops.deploy.rollout import (
    Revision,
    RolloutFailed,
    current_revision,
    revision_of,
    rollback,
    wait_for_rollout,
)
from detectops.deploy.smoke import SMOKE_VIA, SmokeFailed, SmokeResult, smoke_test
from detectops.errors import DeployError

__all__ = [
    "DeploymentResult", "DeploymentRolledBack", "RolloutFailed", "SmokeFailed", "configure_parser",
    "connect", "deploy", "deployer_pod_manifest", "prepare_namespace", "rollback", "run_from_args",
    "serving_manifests",
]

log_ = logging.getLogger(__name__)


class DeploymentRolledBack(DeployError):
    """The new version failed; ``rolled_back_to`` (a ``Revision`` or ``None``) is serving instead."""

    def __init__(self, message: str, *, reason: str, rolled_back_to: Revision | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.rolled_back_to = rolled_back_to


@dataclass
class DeploymentResult:
    """What is serving after a successful ``deploy`` (crosses XCom as ``to_dict()``)."""

    namespace: str
    name: str
    image: str
    revision: int
    ready_replicas: int
    previous_image: str | None
    previous_revision: int | None
    smoke: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploymentResult:
        return cls(**dict(data))


def prepare_namespace(namespace: str, *, kube: Kube | None = None, kubeconfig: str | None = None) -> None:
    """Create the namespace and the deployer's ServiceAccount/Role/RoleBinding (admin credentials)."""
    kube = kube or connect(kubeconfig)
    apply(kube, namespace_manifest(namespace))
    apply_all(kube, rbac_manifests(namespace))


def deploy(
    image: str,
    namespace: str,
    name: str = "detector",
    *,
    replicas: int = 1,
    timeout_s: float = 300,
    model_version: str = "",
    model_name: str = "detector",
    port: int = DEFAULT_PORT,
    env: Mapping[str, str] | None = None,
    smoke_via: str = "service",
    smoke_image_path: str | Path | None = None,
    min_detections: int = 1,
    expect_label: str | None = None,
    unready_after_s: float = 120,
    kube: Kube | None = None,
    kubeconfig: str | None = None,
    log: Callable[[str], None] = log_.info,
) -> DeploymentResult:
    """Roll ``image`` out as ``namespace/name``; smoke-test it; roll back and raise on failure.

    ``image`` should be pinned by digest (``repo@sha256:...``). ``smoke_via`` is ``service``
    (real clusters), ``pods`` (pod IPs; the local cluster) or ``port-forward`` (from outside).
    ``expect_label`` (e.g. ``person`` for the COCO model and the astronaut photo) must be among
    the detections. Raises ``DeploymentRolledBack`` after a failed rollout or smoke test.
    """
    if smoke_via not in SMOKE_VIA:
        raise DeployError(f"smoke_via must be one of {', '.join(SMOKE_VIA)} (got {smoke_via!r})")
    kube = kube or connect(kubeconfig)
    deployment, service = serving_manifests(
        image=image, namespace=namespace, name=name, replicas=replicas, model_version=model_version,
        model_name=model_name, port=port, env=env,
    )
    before = current_revision(kube, name, namespace)
    log(f"deploying {image} to {namespace}/{name}"
        + (f" (now serving revision {before.number}: {before.image})" if before else " (first deployment)"))
    apply(kube, service)
    applied = apply(kube, deployment)
    try:
        dep = wait_for_rollout(kube, name, namespace, generation=applied.metadata.generation,
                               timeout_s=timeout_s, unready_after_s=unready_after_s, log=log)
        smoke = smoke_test(kube, namespace, name, port=port, via=smoke_via, image_path=smoke_image_path,
                           model_name=model_name, min_detections=min_detections,
                           expect_label=expect_label, log=log)
    except (RolloutFailed, SmokeFailed) as exc:
        _roll_back_and_raise(kube, namespace, name, image, before, exc, timeout_s, log)
        raise  # unreachable: _roll_back_and_raise always raises
    return DeploymentResult(
        namespace=namespace, name=name, image=image, revision=revision_of(dep),
        ready_replicas=dep.status.ready_replicas or 0,
        previous_image=before.image if before else None,
        previous_revision=before.number if before else None,
        smoke=smoke.to_dict(),
    )


def _roll_back_and_raise(kube: Kube, namespace: str, name: str, image: str, before: Revision | None,
                         exc: RolloutFailed | SmokeFailed, timeout_s: float, log: Callable[[str], None]) -> None:
    what = "rollout" if isinstance(exc, RolloutFailed) else "smoke test"
    head = f"deploying {image} to {namespace}/{name} failed ({what}: {exc.reason}): {exc.detail}"
    after = current_revision(kube, name, namespace)
    if before is None or after is None:
        raise DeploymentRolledBack(
            f"{head}\nThis was the first deployment: nothing to roll back to. The failed Deployment is left "
            f"for inspection (kubectl -n {namespace} describe deployment/{name}); fix the image and deploy again.",
            reason=exc.reason, rolled_back_to=None) from exc
    if after.number == before.number:
        raise DeploymentRolledBack(
            f"{head}\nThe Deployment already ran this pod template (revision {before.number}), so nothing was "
            "rolled back: the running version itself fails. Deploy a known good image.",
            reason=exc.reason, rolled_back_to=None) from exc
    done = rollback(kube, name, namespace, to_revision=before.number, log=log)
    if done is None:
        raise DeploymentRolledBack(
            f"{head}\nThe previous revision {before.number} ({before.image}) is gone (revisionHistoryLimit); "
            "nothing was rolled back. Deploy a known good image.", reason=exc.reason, rolled_back_to=None) from exc
    target, generation = done
    try:
        wait_for_rollout(kube, name, namespace, generation=generation, timeout_s=timeout_s, log=log)
    except RolloutFailed as again:
        raise DeploymentRolledBack(
            f"{head}\nRolling back to revision {target.number} ({target.image}) did not complete either: "
            f"{again}. The service may be down: look at kubectl -n {namespace} get pods.",
            reason=exc.reason, rolled_back_to=target) from exc
    raise DeploymentRolledBack(
        f"{head}\nRolled back to revision {target.number} ({target.image}); it is serving again.",
        reason=exc.reason, rolled_back_to=target) from exc


# -- `detectops deploy` --------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``detectops deploy`` (the CLI calls this, then ``run_from_args``)."""
    parser.add_argument("--image", required=True, help="image to run, ideally pinned: repo@sha256:...")
    parser.add_argument("--namespace", default=os.environ.get("DETECTOPS_NAMESPACE", "detectops"))
    parser.add_argument("--name", default="detector", help="Deployment and Service name")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the rollout")
    parser.add_argument("--model-version", default="", help="recorded as an annotation")
    parser.add_argument("--model-name", default="detector", help="TF-Serving model name in the URL")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the serving container (repeatable)")
    parser.add_argument("--smoke-via", choices=SMOKE_VIA, default="service",
                        help="service (real clusters), pods (pod IPs: no kube-proxy/DNS), port-forward")
    parser.add_argument("--smoke-image", default=None, help="photo for the smoke test (default: astronaut)")
    parser.add_argument("--min-detections", type=int, default=1)
    parser.add_argument("--expect-label", default=None, help="a label the smoke photo must yield, e.g. person")
    parser.add_argument("--kubeconfig", default=None, help="default: in-cluster, else $KUBECONFIG")
    return parser


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``detectops deploy`` from parsed arguments; returns the DeploymentResult as a dict."""
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise DeployError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    return deploy(
        args.image, args.namespace, args.name, replicas=args.replicas, timeout_s=args.timeout,
        model_version=args.model_version, model_name=args.model_name, port=args.port, env=env,
        smoke_via=args.smoke_via, smoke_image_path=args.smoke_image, min_detections=args.min_detections,
        expect_label=args.expect_label, kubeconfig=args.kubeconfig,
    ).to_dict()
