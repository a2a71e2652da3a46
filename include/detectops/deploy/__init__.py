"""Roll a model image out on Kubernetes, prove it answers, and roll back when it does not.

    result = deploy("127.0.0.1:5000/detectops/detector@sha256:...", "detectops", "detector",
                    smoke_via="pods", expect_label="person")

``deploy`` takes a ``DeploySpec`` (``detectops.deploy.spec``), applies the Deployment and Service (create or replace: idempotent), waits for the
rollout (failing early on CrashLoopBackOff, ImagePullBackOff, exited containers, readiness that
never passes), smoke-tests the live endpoint with a real photo, and on any failure puts the
previous revision back (``kubectl rollout undo``), waits for it, and raises ``DeploymentRolledBack``
saying why and what is serving now. The deployer needs only the namespaced Role in
``include/k8s/serving/rbac.yaml``; ``prepare_namespace`` (an admin's job) creates it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detectops.deploy.kube import Kube, apply, apply_all, connect
from detectops.deploy.manifests import (
    deployer_args,
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
from detectops.deploy.smoke import DEFAULT_NODE_HOST, SMOKE_VIA, SmokeFailed, SmokeResult, smoke_test
from detectops.deploy.spec import DeploySpec, Resources
from detectops.errors import DeployError

__all__ = [
    "DeploySpec", "DeploymentResult", "DeploymentRolledBack", "Resources", "RolloutFailed", "SmokeFailed",
    "SmokeResult", "configure_parser", "connect", "deploy", "deployer_args", "deployer_pod_manifest",
    "prepare_namespace", "rollback", "rollback_record", "run_from_args", "serving_manifests", "smoke_test", "undo",
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
    spec: DeploySpec | Mapping[str, Any],
    *,
    smoke_via: str = "service",
    node_host: str = DEFAULT_NODE_HOST,
    smoke_image_path: str | Path | None = None,
    unready_after_s: float = 120,
    kube: Kube | None = None,
    kubeconfig: str | None = None,
    log: Callable[[str], None] = log_.info,
) -> DeploymentResult:
    """Roll ``spec.image`` out as ``spec.namespace/spec.deployment``; smoke-test; roll back and raise on failure.

    ``smoke_via`` is ``service`` (the Service's ClusterIP: from inside the cluster, the deployer
    pod), ``nodeport`` (``node_host``:nodePort: from the host) or ``port-forward``/``pods``
    (see ``detectops.deploy.smoke``). Raises ``DeploymentRolledBack`` after a failed rollout or
    smoke test, with what serves now.
    """
    spec = DeploySpec.from_dict(spec)
    if smoke_via not in SMOKE_VIA:
        raise DeployError(f"smoke_via must be one of {', '.join(SMOKE_VIA)} (got {smoke_via!r})")
    kube = kube or connect(kubeconfig)
    namespace, name, image = spec.namespace, spec.deployment, spec.image
    deployment, service = serving_manifests(spec, progress_deadline_s=int(spec.rollout_timeout_s))
    before = current_revision(kube, name, namespace)
    log(f"deploying {spec.model_name} version {spec.model_version} ({image}) to {namespace}/{name}"
        + (f" (now serving revision {before.number}: {before.image})" if before else " (first deployment)"))
    apply(kube, service)
    applied = apply(kube, deployment)
    try:
        dep = wait_for_rollout(kube, name, namespace, generation=applied.metadata.generation,
                               timeout_s=spec.rollout_timeout_s, unready_after_s=unready_after_s, log=log)
        smoke = smoke_test(kube, spec, via=smoke_via, node_host=node_host, image_path=smoke_image_path, log=log)
    except (RolloutFailed, SmokeFailed) as exc:
        _roll_back_and_raise(kube, namespace, name, image, before, exc, spec.rollout_timeout_s, log)
        raise  # unreachable: _roll_back_and_raise always raises
    return DeploymentResult(
        namespace=namespace, name=name, image=image, revision=revision_of(dep),
        ready_replicas=dep.status.ready_replicas or 0,
        previous_image=before.image if before else None,
        previous_revision=before.number if before else None,
        smoke=smoke.to_dict(),
    )


def undo(spec: DeploySpec | Mapping[str, Any], to_revision: int | None, *, kube: Kube | None = None,
         kubeconfig: str | None = None, log: Callable[[str], None] = log_.info) -> Revision | None:
    """Put ``to_revision`` back if the Deployment still runs ``spec.image``; return what serves then.

    For a version rejected after its rollout (a failed smoke test from outside): the registry's
    ``champion`` stays where it was, so the cluster must serve that version again. A Deployment
    that runs another image (someone deployed since) or a first deployment (``to_revision`` None)
    is left alone.
    """
    spec = DeploySpec.from_dict(spec)
    kube = kube or connect(kubeconfig)
    now = current_revision(kube, spec.deployment, spec.namespace)
    if now is None or now.image != spec.image or to_revision is None or now.number == to_revision:
        return now
    done = rollback(kube, spec.deployment, spec.namespace, to_revision=to_revision, log=log)
    if done is None:
        raise DeployError(f"cannot roll {spec.namespace}/{spec.deployment} back: revision {to_revision} is gone "
                          "(revisionHistoryLimit). Deploy the champion's image again.")
    target, generation = done
    wait_for_rollout(kube, spec.deployment, spec.namespace, generation=generation, timeout_s=spec.rollout_timeout_s,
                     log=log)
    return target


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
    parser.add_argument("--spec", required=True, metavar="JSON|@FILE",
                        help="the DeploySpec as a JSON object, or @path of a JSON file, e.g. "
                             '\'{"model_name": "detector", "model_version": "3", "image": "repo@sha256:...", '
                             '"namespace": "detectops"}\' (fields: detectops.deploy.spec.DeploySpec)')
    parser.add_argument("--smoke-via", choices=SMOKE_VIA, default="service",
                        help="service: the ClusterIP (from a pod); nodeport: 127.0.0.1:<nodePort> (from the host); "
                             "port-forward; pods")
    parser.add_argument("--node-host", default=DEFAULT_NODE_HOST, help="where NodePorts answer (--smoke-via nodeport)")
    parser.add_argument("--smoke-image", default=None, help="photo for the smoke test (default: astronaut)")
    parser.add_argument("--kubeconfig", default=None, help="default: in-cluster, else $KUBECONFIG")
    parser.add_argument("--record-rollback", action="store_true",
                        help="a rollback is a result, not an error: print it (and write --xcom-file) and exit 0. "
                             "The orchestrator then fails the version without retrying a deterministic failure")
    return parser


def parse_spec_argument(value: str) -> DeploySpec:
    """``--spec``: a JSON object, or ``@path`` of a file holding one."""
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not path.is_file():
            raise DeployError(f"--spec {value}: no such file")
        value = path.read_text()
    return DeploySpec.from_json(value)


def run_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``detectops deploy`` from parsed arguments; returns the DeploymentResult as a dict.

    With ``--record-rollback`` a rollback returns ``{"rolled_back": true, "reason", "message", ...}``.
    """
    spec = parse_spec_argument(args.spec)
    try:
        result = deploy(spec, smoke_via=args.smoke_via, node_host=args.node_host, smoke_image_path=args.smoke_image,
                        kubeconfig=args.kubeconfig).to_dict()
    except DeploymentRolledBack as exc:
        if not args.record_rollback:
            raise
        log_.error("%s", exc)
        return rollback_record(spec, exc)
    return {**result, "rolled_back": False}


def rollback_record(spec: DeploySpec, exc: DeploymentRolledBack) -> dict[str, Any]:
    """What a rolled-back deploy reports (XCom-safe)."""
    back = exc.rolled_back_to
    return {
        "rolled_back": True, "namespace": spec.namespace, "name": spec.deployment, "image": spec.image,
        "reason": exc.reason, "message": str(exc),
        "serving_image": back.image if back else None, "serving_revision": back.number if back else None,
    }
