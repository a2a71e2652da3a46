"""Watch a Deployment roll out, explain why it is stuck, and roll it back.

``wait_for_rollout`` is ``kubectl rollout status`` with early failure: it does not wait for the
progress deadline when a new pod already says why it will never become ready (CrashLoopBackOff,
ImagePullBackOff, a container that exited, a readiness probe failing for too long).
``rollback`` is ``kubectl rollout undo``: apps/v1 has no rollback API, so the previous
ReplicaSet's pod template is written back into the Deployment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from detectops.deploy.kube import Kube, api_error_message
from detectops.deploy.manifests import pod_template_without_hash
from detectops.errors import DeployError

log_ = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
#: Waiting reasons after which a pod will not become ready without a new rollout.
FATAL_WAITING = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
#: Annotations that describe what a Deployment runs; restored on rollback with the template.
OWN_ANNOTATIONS = ("detectops.io/model-name", "detectops.io/model-version", "detectops.io/image-digest", "detectops.io/image")


class RolloutFailed(DeployError):
    """A rollout will not complete: ``reason`` (short, e.g. CrashLoopBackOff) and ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Revision:
    number: int
    image: str
    replicaset: str


def revision_of(obj: Any) -> int:
    annotations = obj.metadata.annotations or {}
    try:
        return int(annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def owned_replicasets(kube: Kube, deployment: Any) -> list[Any]:
    """The Deployment's ReplicaSets, oldest revision first."""
    selector = ",".join(f"{k}={v}" for k, v in (deployment.spec.selector.match_labels or {}).items())
    rss = kube.apps.list_namespaced_replica_set(deployment.metadata.namespace, label_selector=selector).items
    uid = deployment.metadata.uid
    mine = [rs for rs in rss if any(o.uid == uid for o in (rs.metadata.owner_references or []))]
    return sorted(mine, key=revision_of)


def current_revision(kube: Kube, name: str, namespace: str) -> Revision | None:
    """The revision a Deployment runs now (``None`` if it does not exist)."""
    from kubernetes.client.rest import ApiException

    try:
        dep = kube.apps.read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    image = dep.spec.template.spec.containers[0].image
    rs_name = ""
    for rs in owned_replicasets(kube, dep):
        if revision_of(rs) == revision_of(dep):
            rs_name = rs.metadata.name
    return Revision(number=revision_of(dep), image=image, replicaset=rs_name)


def _age_s(ts: datetime | None) -> float:
    if ts is None:
        return 0.0
    return (datetime.now(timezone.utc) - ts).total_seconds()


def pod_problem(pod: Any, *, unready_after_s: float) -> tuple[str, str] | None:
    """(reason, message) if ``pod`` will not become ready by itself, else ``None``."""
    status = pod.status
    name = pod.metadata.name
    if status.phase in ("Failed", "Succeeded"):
        return status.reason or f"Pod{status.phase}", f"pod {name} is {status.phase}: {status.message or ''}".strip()
    for cs in status.container_statuses or []:
        waiting = cs.state.waiting if cs.state else None
        last = cs.last_state.terminated if cs.last_state else None
        exited = f" (last exit code {last.exit_code}, {last.reason})" if last else ""
        if waiting and waiting.reason in FATAL_WAITING:
            return waiting.reason, f"pod {name} container {cs.name}: {waiting.message or waiting.reason}{exited}"
        if cs.restart_count and last and last.exit_code != 0:
            return "ContainerExited", f"pod {name} container {cs.name} restarted {cs.restart_count}x{exited}"
        running = cs.state.running if cs.state else None
        if running and not cs.ready and _age_s(running.started_at) > unready_after_s:
            return "ReadinessFailing", (
                f"pod {name} container {cs.name} has run {int(_age_s(running.started_at))}s "
                "without passing its readiness probe (/readyz)"
            )
    return None


def events_for(kube: Kube, namespace: str, name: str, limit: int = 8) -> list[str]:
    """The latest events about an object, as ``Reason: message`` lines."""
    try:
        items = kube.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    except Exception as exc:  # diagnosis must never hide the real failure
        return [f"(events unavailable: {api_error_message(exc)})"]

    def when(e: Any) -> datetime:
        return e.last_timestamp or e.event_time or e.metadata.creation_timestamp or datetime.min.replace(
            tzinfo=timezone.utc)

    items = sorted(items, key=when)[-limit:]
    return [f"{e.type} {e.reason}: {(e.message or '').strip()}" + (f" (x{e.count})" if (e.count or 1) > 1 else "")
            for e in items]


def log_tail(kube: Kube, pod: Any, lines: int = 15) -> str:
    """The last log lines of a pod's first container: the crashed run's if it restarted, else the current one's.

    Right after a restart the kubelet may not serve the previous run's log yet (or has already
    replaced it), so both are tried.
    """
    cs = (pod.status.container_statuses or [None])[0]
    order = [True, False] if cs and cs.restart_count else [False]
    failure = ""
    for previous in order:
        try:
            resp = kube.core.read_namespaced_pod_log(  # raw bytes: the SDK's str() of them is b'...'
                pod.metadata.name, pod.metadata.namespace, tail_lines=lines, previous=previous,
                _preload_content=False)
            text = resp.data.decode(errors="replace").rstrip()
        except Exception as exc:
            failure = f"(logs unavailable: {api_error_message(exc)})"
            continue
        if text and not text.startswith("unable to retrieve container logs"):
            return text
        failure = failure or text
    return failure


def new_revision_pods(kube: Kube, deployment: Any) -> list[Any]:
    """Pods of the ReplicaSet that matches the Deployment's current revision."""
    rev = revision_of(deployment)
    for rs in owned_replicasets(kube, deployment):
        if revision_of(rs) == rev:
            h = (rs.metadata.labels or {}).get("pod-template-hash")
            if h:
                return kube.core.list_namespaced_pod(
                    deployment.metadata.namespace, label_selector=f"pod-template-hash={h}").items
    return []


def diagnose(kube: Kube, deployment: Any, pods: list[Any]) -> str:
    """Why a rollout is stuck, in a few lines: pod states, events, log tails."""
    lines = []
    for cond in deployment.status.conditions or []:
        if cond.status != "True" or cond.type == "ReplicaFailure":
            lines.append(f"deployment condition {cond.type}={cond.status} {cond.reason}: {cond.message}")
    for pod in pods[:3]:
        lines.append(f"pod {pod.metadata.name}: phase {pod.status.phase}")
        lines += [f"  event {e}" for e in events_for(kube, pod.metadata.namespace, pod.metadata.name)]
        tail = log_tail(kube, pod)
        if tail:
            lines.append("  last log lines:\n" + "\n".join(f"    {t}" for t in tail.splitlines()))
    return "\n".join(lines)


def wait_for_rollout(
    kube: Kube,
    name: str,
    namespace: str,
    *,
    generation: int,
    timeout_s: float = 300,
    unready_after_s: float = 120,
    poll_s: float = 2.0,
    log: Callable[[str], None] = log_.info,
) -> Any:
    """Block until every replica runs ``generation``'s template and is available; return the Deployment.

    Raises ``RolloutFailed`` as soon as a new pod shows a fatal reason, when the controller
    reports ProgressDeadlineExceeded, or after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    last_msg = ""
    while True:
        dep = kube.apps.read_namespaced_deployment(name, namespace)
        st = dep.status
        want = dep.spec.replicas if dep.spec.replicas is not None else 1
        pods: list[Any] = []
        if (st.observed_generation or 0) >= generation:
            updated, total, available = st.updated_replicas or 0, st.replicas or 0, st.available_replicas or 0
            msg = f"rollout of {namespace}/{name}: {updated}/{want} updated, {available} available, {total} total"
            if msg != last_msg:
                log(msg)
                last_msg = msg
            if updated == want and total == want and available >= want:
                return dep
            for cond in st.conditions or []:
                if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
                    raise RolloutFailed("ProgressDeadlineExceeded", f"{cond.message}\n{diagnose(kube, dep, pods)}")
            pods = new_revision_pods(kube, dep)
            for pod in pods:
                problem = pod_problem(pod, unready_after_s=unready_after_s)
                if problem:
                    reason, message = problem
                    raise RolloutFailed(reason, f"{message}\n{diagnose(kube, dep, [pod])}")
        if time.monotonic() > deadline:
            raise RolloutFailed(
                "Timeout", f"{namespace}/{name} did not finish rolling out in {timeout_s:.0f}s\n"
                f"{diagnose(kube, dep, pods or new_revision_pods(kube, dep))}"
            )
        time.sleep(poll_s)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def rollback(kube: Kube, name: str, namespace: str, *, to_revision: int | None = None,
             log: Callable[[str], None] = log_.info) -> tuple[Revision, int] | None:
    """Put the previous (or ``to_revision``'s) pod template back; return (that revision, new generation).

    ``None`` when there is nothing to go back to (a first deployment).
    """
    dep = kube.apps.read_namespaced_deployment(name, namespace)
    current = revision_of(dep)
    rss = owned_replicasets(kube, dep)
    if to_revision is not None:
        candidates = [rs for rs in rss if revision_of(rs) == to_revision]
    else:
        candidates = [rs for rs in rss if revision_of(rs) < current]
    if not candidates:
        return None
    target = candidates[-1]
    template = pod_template_without_hash(kube.api_client.sanitize_for_serialization(target.spec.template))
    annotations = dict(dep.metadata.annotations or {})
    for key in OWN_ANNOTATIONS:
        if key in (target.metadata.annotations or {}):
            annotations[key] = target.metadata.annotations[key]
    patch = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": dep.metadata.resource_version},
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    image = template["spec"]["containers"][0]["image"]
    log(f"rolling {namespace}/{name} back from revision {current} to revision {revision_of(target)} ({image})")
    patched = kube.apps.patch_namespaced_deployment(name, namespace, patch)
    return Revision(number=revision_of(target), image=image, replicaset=target.metadata.name), patched.metadata.generation
