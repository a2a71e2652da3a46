"""Infra validation of a candidate's serving image, as TFX's InfraValidator does it.

The image that would be deployed (by digest: the same bytes promotion deploys) is started in
a throwaway pod of the target namespace, must turn ready (the model loads and warms up), and
must answer a real predict request in the contract's shape. The pod is deleted whatever
happens. A candidate that cannot start or answer fails the gate instead of a rollout.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log_ = logging.getLogger(__name__)

PORT = 8080


@dataclass
class InfraValidation:
    passed: bool
    pod: str
    detail: str
    startup_s: float | None = None
    latency_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pod_manifest(name: str, namespace: str, image: str, model_name: str, serving_name: str) -> dict[str, Any]:
    """A bare pod of the serving image with the Deployment's security settings and readiness probe."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "detectops", "app.kubernetes.io/component": "infra-validation"},
            "annotations": {"detectops.io/model-name": model_name},
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
            "containers": [{
                "name": "detector", "image": image, "imagePullPolicy": "IfNotPresent", "args": ["serve"],
                "ports": [{"name": "http", "containerPort": PORT}],
                "env": [{"name": "DETECTOPS_PORT", "value": str(PORT)},
                        {"name": "DETECTOPS_MODEL_NAME", "value": serving_name}],
                "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2},
                "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def _pod_name(model_name: str, version: str | int) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", f"infraval-{model_name}-v{version}".lower())
    return base[:55].strip("-") + f"-{int(time.time()) % 100000}"


def _wait_ready(kube, namespace: str, name: str, timeout_s: float) -> tuple[bool, str]:
    from detectops.deploy.rollout import log_tail

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pod = kube.core.read_namespaced_pod(name, namespace)
        status = pod.status
        if status.phase in ("Failed", "Succeeded"):
            return False, f"the pod ended ({status.phase}) before it was ready:\n{log_tail(kube, pod)}"
        for cs in status.container_statuses or []:
            waiting = cs.state.waiting if cs.state else None
            if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"):
                return False, f"{waiting.reason}: {waiting.message or ''}"
        if any(c.type == "Ready" and c.status == "True" for c in status.conditions or []):
            return True, "ready"
        time.sleep(2)
    pod = kube.core.read_namespaced_pod(name, namespace)
    return False, f"not ready after {timeout_s:.0f} s:\n{log_tail(kube, pod)}"


def validate_image(
    kube,
    *,
    image: str,
    namespace: str,
    model_name: str,
    version: str | int,
    sample_image: str | Path | None = None,
    serving_name: str = "detector",
    timeout_s: float = 240,
    log: Callable[[str], None] = log_.info,
) -> InfraValidation:
    """Start ``image`` in a throwaway pod, wait until ready, send one real request, delete the pod."""
    from detectops.deploy.smoke import DEFAULT_IMAGE, PortForwardTarget, SmokeFailed, check_target

    name = _pod_name(model_name, version)
    kube.core.create_namespaced_pod(namespace, _pod_manifest(name, namespace, image, model_name, serving_name))
    log(f"infra validation: started pod {namespace}/{name} from {image}")
    started = time.monotonic()
    try:
        ready, detail = _wait_ready(kube, namespace, name, timeout_s)
        startup = round(time.monotonic() - started, 1)
        if not ready:
            return InfraValidation(False, name, detail, startup_s=startup)
        target = PortForwardTarget(kube, namespace, name, PORT)
        photo = Path(sample_image or DEFAULT_IMAGE).read_bytes()
        try:
            # Any number of detections is fine here: the gate judged accuracy; this judges that
            # the image starts and answers in the contract's shape.
            _, labels, latency, checks = check_target(target, photo, model_name=serving_name,
                                                      min_detections=0, expect_label=None)
        except (SmokeFailed, OSError) as exc:
            return InfraValidation(False, name, f"the pod did not answer correctly: {exc}", startup_s=startup)
        for c in checks:
            log(f"infra validation: {c}")
        return InfraValidation(True, name, f"ready in {startup} s, answered {labels}",
                               startup_s=startup, latency_ms=round(latency, 1))
    finally:
        try:
            kube.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except Exception as exc:  # already gone is fine; anything else is only worth a line
            log(f"infra validation: could not delete pod {name}: {exc}")
