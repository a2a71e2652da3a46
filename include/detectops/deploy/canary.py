"""Canary releases behind the one production Service: start, remove, promote.

Kubernetes' documented canary pattern: a second Deployment, ``<deployment>-canary``, runs the new
version beside the stable one. Both Deployments' pods carry ``detectops.io/service: <service>``,
which is all the production Service selects, so the canary takes a share of the traffic equal to
its share of the ready replicas (kube-proxy picks an endpoint per connection). Each Deployment
selects only its own pods (``app.kubernetes.io/name``), so neither touches the other's.

    stable = DeploySpec(...)                                   # what serves now
    canary = canary_spec(stable, image="repo@sha256:...", model_version="8", replicas=1)
    start_canary(canary)                                       # rolled out + its own pods smoke-tested
    verdict = analyse_canary(canary, thresholds={...})         # load + window analysis -> promote/rollback
    promote_canary(stable, canary, tracking_uri=..., holder=...)   # or remove_canary(canary, ...)

- ``start_canary``: the Deployment from the same template as every deploy (``manifests``), the
  same rollout watch (``rollout.wait_for_rollout``), then the smoke photo against each canary pod
  alone (not through the Service, which would mostly reach stable). A canary that fails either is
  removed again and ``CanaryFailed`` says why. ``smoke_probe`` repeats that smoke test once per
  analysis window (``detectops.monitoring.canary_analysis.run_analysis(probe=...)``).
- ``remove_canary`` (the rollback): ship the canary pods' prediction log to the store first
  (``monitoring.collect.ship_before_removal``), then delete the Deployment and wait until its pods
  are gone. Each pod drains first (the template's preStop), so removal fails no client request.
- ``promote_canary``: the stable Deployment takes the canary's image by digest through the normal
  readiness-gated rolling update with automatic rollback (``detectops.deploy.deploy``), then the
  canary is removed.

Every function takes a ``DeploySpec`` or its dict (XCom) and returns an XCom-safe dict. With
``holder``, the model's deploy lock is renewed before any change (fencing, as ``release`` does).
The Role in ``include/k8s/serving/rbac.yaml`` has no ``delete``: removal runs with the
orchestrator's credentials, not as the deployer pod.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from detectops.deploy.kube import Kube, api_error_message, apply, connect
from detectops.deploy.manifests import serving_manifests
from detectops.deploy.rollout import RolloutFailed, wait_for_rollout
from detectops.deploy.smoke import DEFAULT_IMAGE, PortForwardTarget, SmokeFailed, Target, UrlTarget, check_target
from detectops.deploy.spec import DeploySpec
from detectops.errors import DeployError

log_ = logging.getLogger(__name__)

CANARY_SUFFIX = "-canary"
#: How the canary's pods are reached for their smoke test: ``pods`` (pod IPs, from inside the
#: cluster) or ``port-forward`` (through the API server, from the host).
CANARY_SMOKE_VIA = ("pods", "port-forward")


class CanaryFailed(DeployError):
    """The canary did not roll out or did not pass its smoke test; it has been removed again."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def canary_name(deployment: str) -> str:
    return f"{deployment}{CANARY_SUFFIX}"


def canary_spec(stable: DeploySpec | Mapping[str, Any], *, image: str, model_version: str, replicas: int = 1,
                **changes: Any) -> DeploySpec:
    """The canary of ``stable``: another image and version, ``track: canary``, behind ``stable``'s Service.

    ``changes`` override anything else (env, score_threshold, model_name, resources, ...).
    """
    stable = DeploySpec.from_dict(stable)
    if stable.track != "stable":
        raise DeployError(f"{stable.namespace}/{stable.deployment} is a {stable.track} spec: a canary starts "
                          "from the stable track's spec")
    return stable.with_changes(**{
        "deployment": canary_name(stable.deployment), "service": stable.service, "track": "canary",
        "image": image, "model_version": str(model_version), "replicas": replicas, **changes})


def promoted_spec(stable: DeploySpec | Mapping[str, Any], canary: DeploySpec | Mapping[str, Any]) -> DeploySpec:
    """What the stable track runs after promotion: the canary's version (image, env, ...), stable's place."""
    stable, canary = DeploySpec.from_dict(stable), DeploySpec.from_dict(canary)
    _check_pair(stable, canary)
    return canary.with_changes(deployment=stable.deployment, service=stable.service, track="stable",
                               replicas=stable.replicas)


def _check_pair(stable: DeploySpec, canary: DeploySpec) -> None:
    if canary.track != "canary" or stable.track != "stable":
        raise DeployError(f"expected a stable and a canary spec, got tracks {stable.track!r} and {canary.track!r}")
    if (canary.namespace, canary.service) != (stable.namespace, stable.service):
        raise DeployError(f"the canary {canary.namespace}/{canary.deployment} is not behind the stable track's "
                          f"Service {stable.namespace}/{stable.service}")


def _fence(kube: Kube, spec: DeploySpec, holder: str | None) -> None:
    if holder:
        from detectops.deploy.lock import renew

        renew(kube, spec.model_name, holder)


def _canary_only(spec: DeploySpec | Mapping[str, Any]) -> DeploySpec:
    spec = DeploySpec.from_dict(spec)
    if spec.track != "canary" or not spec.deployment.endswith(CANARY_SUFFIX):
        raise DeployError(f"{spec.namespace}/{spec.deployment} (track {spec.track}) is not a canary: "
                          "only a canary Deployment is started or removed here")
    return spec


# -- start --------------------------------------------------------------------------------------
def start_canary(
    canary: DeploySpec | Mapping[str, Any],
    *,
    smoke_via: str = "port-forward",
    smoke_image_path: str | Path | None = None,
    unready_after_s: float = 120,
    holder: str | None = None,
    kube: Kube | None = None,
    kubeconfig: str | None = None,
    log: Callable[[str], None] = log_.info,
) -> dict[str, Any]:
    """Roll the canary Deployment out beside the stable one and smoke-test each of its pods.

    The production Service must exist (the stable track is deployed first) and is not changed.
    Idempotent: starting the same canary again changes nothing. On a failed rollout or smoke test
    the canary is deleted (it never shipped a prediction worth keeping) and ``CanaryFailed`` raised.
    Returns ``{namespace, deployment, service, image, model_version, replicas, ready_replicas, smoke}``.
    """
    from kubernetes.client.rest import ApiException

    spec = _canary_only(canary)
    if smoke_via not in CANARY_SMOKE_VIA:
        raise DeployError(f"smoke_via must be one of {', '.join(CANARY_SMOKE_VIA)} (got {smoke_via!r})")
    kube = kube or connect(kubeconfig)
    _fence(kube, spec, holder)
    try:
        kube.core.read_namespaced_service(spec.service, spec.namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise DeployError(f"no Service {spec.namespace}/{spec.service}: deploy the stable track first; "
                              "a canary only joins an existing production Service") from exc
        raise
    deployment, _ = serving_manifests(spec, progress_deadline_s=int(spec.rollout_timeout_s))
    log(f"starting canary {spec.namespace}/{spec.deployment}: {spec.model_name} version {spec.model_version} "
        f"({spec.image}), {spec.replicas} replica(s) behind Service {spec.service}")
    applied = apply(kube, deployment)
    try:
        dep = wait_for_rollout(kube, spec.deployment, spec.namespace, generation=applied.metadata.generation,
                               timeout_s=spec.rollout_timeout_s, unready_after_s=unready_after_s, log=log)
        smoke = smoke_canary(kube, spec, via=smoke_via, image_path=smoke_image_path, log=log)
    except (RolloutFailed, SmokeFailed) as exc:
        what = "rollout" if isinstance(exc, RolloutFailed) else "smoke test"
        _delete_and_wait(kube, spec, timeout_s=60, log=log)
        raise CanaryFailed(exc.reason, f"the canary's {what} failed, the canary was removed: {exc.detail}") from exc
    return {"namespace": spec.namespace, "deployment": spec.deployment, "service": spec.service,
            "image": spec.image, "model_version": spec.model_version, "replicas": spec.replicas,
            "ready_replicas": dep.status.ready_replicas or 0, "smoke": smoke}


def canary_pods(kube: Kube, spec: DeploySpec, *, ready_only: bool = True) -> list[Any]:
    """The canary Deployment's pods (by its own selector), the ready ones unless ``ready_only=False``."""
    pods = kube.core.list_namespaced_pod(spec.namespace,
                                         label_selector=f"app.kubernetes.io/name={spec.deployment}").items
    if not ready_only:
        return pods

    def ready(pod: Any) -> bool:
        return (pod.metadata.deletion_timestamp is None and pod.status.pod_ip and
                any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []))

    return [p for p in pods if ready(p)]


def smoke_canary(kube: Kube, spec: DeploySpec, *, via: str = "port-forward", image_path: str | Path | None = None,
                 log: Callable[[str], None] = log_.info) -> dict[str, Any]:
    """The deploy smoke checks (``smoke.check_target``) against every ready canary pod, bypassing the Service."""
    pods = canary_pods(kube, spec)
    if not pods:
        raise SmokeFailed("NoPods", f"canary {spec.namespace}/{spec.deployment} has no ready pod to test")
    targets: list[Target] = [
        UrlTarget(f"http://{p.status.pod_ip}:{spec.port}") if via == "pods"
        else PortForwardTarget(kube, spec.namespace, p.metadata.name, spec.port) for p in pods]
    image = Path(image_path or DEFAULT_IMAGE).read_bytes()
    out: dict[str, Any] = {"targets": [], "labels": [], "checks": []}
    for target in targets:
        try:
            _, labels, _, checks = check_target(target, image, model_name=spec.serving_name,
                                                min_detections=spec.min_detections, expect_label=spec.expect_label)
        except SmokeFailed:
            raise
        except Exception as exc:  # connection reset, portforward errors
            raise SmokeFailed("Unreachable", f"{target.label}: {exc}") from exc
        for c in checks:
            log(f"canary smoke: {c}")
        out["targets"].append(target.label)
        out["labels"] = labels
        out["checks"] += checks
    return out


def smoke_probe(canary: DeploySpec | Mapping[str, Any], *, via: str = "port-forward",
                image_path: str | Path | None = None, kube: Kube | None = None,
                kubeconfig: str | None = None) -> Callable[[], str | None]:
    """A probe for ``canary_analysis.run_analysis``: the smoke photo against the canary pods, per window.

    Returns the failure as a message (the window fails), ``None`` when every pod answered right.
    Its own requests reach the canary directly and count among the canary's model requests.
    """
    spec = _canary_only(canary)
    kube = kube or connect(kubeconfig)

    def probe() -> str | None:
        try:
            smoke_canary(kube, spec, via=via, image_path=image_path, log=lambda _: None)
        except SmokeFailed as exc:
            return str(exc)
        return None

    return probe


# -- analyse ---------------------------------------------------------------------------------
def analyse_canary(
    canary: DeploySpec | Mapping[str, Any],
    *,
    thresholds: Mapping[str, Any] | None = None,
    load: Mapping[str, Any] | None = None,
    probe: bool = True,
    probe_via: str = "port-forward",
    prometheus_url: str | None = None,
    kube: Kube | None = None,
    kubeconfig: str | None = None,
    log: Callable[[str], None] = log_.info,
) -> dict[str, Any]:
    """Live traffic judges the canary: bounded load through the NodePort while the windows are analysed.

    The load (``detectops.deploy.loadgen``) sends the smoke photo to ``/detect`` through the
    production Service's NodePort on 127.0.0.1, at ``rate_per_s`` 5 with 2 workers, for at most the
    analysis' length (override with ``load``: ``rate_per_s``, ``concurrency``, ``max_requests``,
    ``max_seconds``). ``probe``: the smoke test against the canary's pods in every window.
    Returns ``canary_analysis.decide``'s dict plus ``"load"`` (what the clients saw).
    """
    from detectops.deploy.loadgen import LoadGenerator, detect_request, nodeport_url
    from detectops.monitoring.canary_analysis import CanaryThresholds, run_analysis
    from detectops.monitoring.prometheus import PrometheusClient

    spec = _canary_only(canary)
    th = CanaryThresholds.from_dict(thresholds)
    kube = kube or connect(kubeconfig)
    seconds = th.warmup_s + th.max_windows * th.window_s + 10
    options = {"rate_per_s": 5.0, "concurrency": 2, "max_seconds": seconds, **(load or {})}
    options.setdefault("max_requests", int(options["rate_per_s"] * options["max_seconds"]) + 1)
    url = nodeport_url(kube, spec.namespace, spec.service, spec.port)
    log(f"load on {url}/detect: {options}")
    with LoadGenerator(url, **detect_request(DEFAULT_IMAGE.read_bytes()), **options) as generator:
        verdict = run_analysis(PrometheusClient(prometheus_url), namespace=spec.namespace, service=spec.service,
                               thresholds=th, probe=smoke_probe(spec, via=probe_via, kube=kube) if probe else None,
                               log=log)
    verdict["load"] = generator.result().to_dict()
    log(f"load seen by the clients: {verdict['load']}")
    return verdict


# -- remove ----------------------------------------------------------------------------------
def remove_canary(
    canary: DeploySpec | Mapping[str, Any],
    *,
    tracking_uri: str | None,
    holder: str | None,
    reason: str = "",
    ship: bool = True,
    timeout_s: float = 120,
    kube: Kube | None = None,
    kubeconfig: str | None = None,
    log: Callable[[str], None] = log_.info,
) -> dict[str, Any]:
    """Ship the canary's prediction log, then delete its Deployment and wait until its pods are gone.

    ``tracking_uri`` (the prediction store in MLflow) and ``holder`` (the store's lock holder, the
    run's deploy-lock holder) are needed to ship; ``ship=False`` skips it on purpose (a canary that
    never served). Idempotent: a canary that is already gone is a success.
    Returns ``{namespace, deployment, removed, shipped, reason, seconds}``.
    """
    from detectops.monitoring.collect import ship_before_removal

    spec = _canary_only(canary)
    kube = kube or connect(kubeconfig)
    _fence(kube, spec, holder)
    started = time.monotonic()
    shipped = None
    if ship:
        if not tracking_uri or not holder:
            raise DeployError("remove_canary ships the canary's prediction log first: pass tracking_uri and holder "
                              "(or ship=False for a canary that never served)")
        shipped = ship_before_removal(kube, spec.to_dict(), tracking_uri=tracking_uri, holder=holder)
    log(f"removing canary {spec.namespace}/{spec.deployment}" + (f": {reason}" if reason else ""))
    existed = _delete_and_wait(kube, spec, timeout_s=timeout_s, log=log)
    return {"namespace": spec.namespace, "deployment": spec.deployment, "removed": existed, "shipped": shipped,
            "reason": reason, "seconds": round(time.monotonic() - started, 1)}


def _delete_and_wait(kube: Kube, spec: DeploySpec, *, timeout_s: float, log: Callable[[str], None]) -> bool:
    """Delete the Deployment (foreground: its pods go first, each draining); True if it existed."""
    from kubernetes.client import V1DeleteOptions
    from kubernetes.client.rest import ApiException

    existed = True
    try:
        kube.apps.delete_namespaced_deployment(spec.deployment, spec.namespace,
                                               body=V1DeleteOptions(propagation_policy="Foreground"))
    except ApiException as exc:
        if exc.status != 404:
            raise DeployError(f"could not delete {spec.namespace}/{spec.deployment}: HTTP {exc.status} "
                              f"{api_error_message(exc)}") from exc
        existed = False
    deadline = time.monotonic() + timeout_s
    while True:
        left = canary_pods(kube, spec, ready_only=False)
        if not left and not _deployment_exists(kube, spec):
            log(f"canary {spec.namespace}/{spec.deployment} removed")
            return existed
        if time.monotonic() > deadline:
            raise DeployError(f"canary {spec.namespace}/{spec.deployment} still has {len(left)} pod(s) after "
                              f"{timeout_s:.0f}s: kubectl -n {spec.namespace} get pods "
                              f"-l app.kubernetes.io/name={spec.deployment}")
        time.sleep(1)


def _deployment_exists(kube: Kube, spec: DeploySpec) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        kube.apps.read_namespaced_deployment(spec.deployment, spec.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


# -- promote ---------------------------------------------------------------------------------
def promote_canary(
    stable: DeploySpec | Mapping[str, Any],
    canary: DeploySpec | Mapping[str, Any],
    *,
    tracking_uri: str | None,
    holder: str | None,
    ship: bool = True,
    smoke_via: str = "service",
    node_host: str | None = None,
    kube: Kube | None = None,
    kubeconfig: str | None = None,
    log: Callable[[str], None] = log_.info,
) -> dict[str, Any]:
    """Stable takes the canary's image (by digest) in a readiness-gated rolling update, then the canary goes.

    The rolling update is ``detectops.deploy.deploy`` (rollout watch, smoke test through the
    Service with ``smoke_via``, automatic rollback). Before it, the stable pods' prediction log is
    shipped (they are about to be replaced). If the update is rolled back, the canary is removed all
    the same and ``DeploymentRolledBack`` is raised: stable serves its old version, as before the canary.
    Returns ``{"promoted": True, "deployed": DeploymentResult dict, "canary_removed": remove_canary's dict}``.
    """
    from detectops.deploy import DeploymentRolledBack, deploy
    from detectops.deploy.smoke import DEFAULT_NODE_HOST
    from detectops.monitoring.collect import ship_before_removal

    stable, canary = DeploySpec.from_dict(stable), _canary_only(canary)
    target = promoted_spec(stable, canary)
    kube = kube or connect(kubeconfig)
    _fence(kube, stable, holder)
    if ship:
        if not tracking_uri or not holder:
            raise DeployError("promote_canary ships the stable pods' prediction log first: pass tracking_uri and "
                              "holder (or ship=False)")
        ship_before_removal(kube, stable.to_dict(), tracking_uri=tracking_uri, holder=holder)
    log(f"promoting canary {canary.namespace}/{canary.deployment} ({canary.image}) to {stable.deployment}")
    try:
        deployed = deploy(target, smoke_via=smoke_via, node_host=node_host or DEFAULT_NODE_HOST, kube=kube, log=log)
    except DeploymentRolledBack as exc:
        remove_canary(canary, tracking_uri=tracking_uri, holder=holder, ship=ship,
                      reason=f"promotion rolled back ({exc.reason})", kube=kube, log=log)
        raise
    removed = remove_canary(canary, tracking_uri=tracking_uri, holder=holder, ship=ship, reason="promoted",
                            kube=kube, log=log)
    return {"promoted": True, "model_name": target.model_name, "model_version": target.model_version,
            "image": target.image, "deployed": deployed.to_dict(), "canary_removed": removed}
