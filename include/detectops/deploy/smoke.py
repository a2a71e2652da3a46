"""Smoke-test a live detector service with a real photo.

Where the requests go (``via``), always through the Service unless said otherwise:

- ``service``: the Service's ClusterIP, read from the API (there is no cluster DNS here) — from
  inside the cluster: the deployer pod. Never from the host: a ClusterIP is not a host address.
- ``nodeport``: ``http://<node_host>:<nodePort>`` — from the host; with kube-proxy's
  ``--nodeport-addresses=127.0.0.1/32`` that is loopback, so the traffic never leaves the machine.
- ``pods``: every ready pod's IP from the Service's Endpoints — from inside the cluster only;
  tests every replica, not a random one (diagnosis).
- ``port-forward``: through the API server to each ready pod (the SDK's portforward) — from
  outside the cluster with a kubeconfig and no NodePort; traffic stays on loopback.

Checks per target: ``/readyz`` is 200; TF-Serving ``:predict`` answers the contract's outputs;
``/detect`` finds at least ``min_detections`` objects (and ``expect_label`` among them, if given).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detectops.deploy.kube import Kube, api_error_message
from detectops.deploy.spec import DeploySpec
from detectops.errors import DeployError

log_ = logging.getLogger(__name__)

DEFAULT_IMAGE = Path(__file__).resolve().parent / "data" / "astronaut.jpg"  # skimage's astronaut (public domain)
SMOKE_VIA = ("service", "nodeport", "pods", "port-forward")
#: Where a NodePort answers from the host: loopback (kube-proxy --nodeport-addresses=127.0.0.1/32).
DEFAULT_NODE_HOST = "127.0.0.1"
PREDICT_KEYS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


class SmokeFailed(DeployError):
    """The new version is up but does not answer correctly."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class SmokeResult:
    targets: list[str]
    num_detections: int
    labels: list[str]
    latency_ms: float
    checks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Target:
    """One place to send HTTP requests to; ``request`` returns (status, body)."""

    label = ""

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, bytes]:
        raise NotImplementedError


class UrlTarget(Target):
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.label = self.base_url

    def request(self, method, path, body=None, headers=None, timeout=60):
        from urllib.parse import urlsplit

        parts = urlsplit(self.base_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


class PortForwardTarget(Target):
    """HTTP to a pod through the API server's portforward (one forwarded connection per request)."""

    def __init__(self, kube: Kube, namespace: str, pod: str, port: int) -> None:
        self.kube, self.namespace, self.pod, self.port = kube, namespace, pod, port
        self.label = f"port-forward pod/{pod}:{port}"

    def request(self, method, path, body=None, headers=None, timeout=60):
        from kubernetes.stream import portforward

        pf = portforward(self.kube.core.connect_get_namespaced_pod_portforward, self.pod, self.namespace,
                         ports=str(self.port), _request_timeout=timeout)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.sock = pf.socket(self.port)
        conn.sock.settimeout(timeout)
        try:
            conn.request(method, path, body=body, headers={**(headers or {}), "Connection": "close"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()
            pf.close()


def ready_pod_ips(kube: Kube, namespace: str, name: str) -> list[tuple[str, str]]:
    """(pod name, IP) of the Service's ready endpoints."""
    ep = kube.core.read_namespaced_endpoints(name, namespace)
    out = []
    for subset in ep.subsets or []:
        for addr in subset.addresses or []:  # not_ready_addresses are left out on purpose
            pod = addr.target_ref.name if addr.target_ref else addr.ip
            out.append((pod, addr.ip))
    return out


def service_address(kube: Kube, namespace: str, service: str, port: int) -> tuple[str, int | None]:
    """(ClusterIP, nodePort) of the Service's port ``port`` (nodePort is None unless type NodePort)."""
    svc = kube.core.read_namespaced_service(service, namespace)
    node_port = next((p.node_port for p in svc.spec.ports or [] if p.port == port), None)
    return svc.spec.cluster_ip, node_port


def smoke_targets(kube: Kube, namespace: str, service: str, port: int, via: str,
                  *, node_host: str = DEFAULT_NODE_HOST, wait_s: float = 30) -> list[Target]:
    """Where to send the smoke requests (see the module docstring)."""
    if via not in SMOKE_VIA:
        raise DeployError(f"smoke_via must be one of {', '.join(SMOKE_VIA)} (got {via!r})")
    if via in ("service", "nodeport"):
        cluster_ip, node_port = service_address(kube, namespace, service, port)
        if via == "service":
            if not cluster_ip or cluster_ip == "None":
                raise SmokeFailed("NoClusterIP", f"service {namespace}/{service} has no ClusterIP")
            return [UrlTarget(f"http://{cluster_ip}:{port}")]
        if not node_port:
            raise SmokeFailed("NoNodePort", f"service {namespace}/{service} has no nodePort for port {port}: "
                              "it must be of type NodePort (include/k8s/serving/service.yaml)")
        return [UrlTarget(f"http://{node_host}:{node_port}")]
    deadline = time.monotonic() + wait_s
    while True:  # Endpoints trail pod readiness by a moment
        pods = ready_pod_ips(kube, namespace, service)
        if pods or time.monotonic() > deadline:
            break
        time.sleep(1)
    if not pods:
        raise SmokeFailed("NoEndpoints", f"service {namespace}/{service} has no ready endpoints to test")
    if via == "pods":
        return [UrlTarget(f"http://{ip}:{port}") for _, ip in pods]
    return [PortForwardTarget(kube, namespace, pod, port) for pod, _ in pods]


def _multipart(field_name: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{filename}\"\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _json(status: int, body: bytes, what: str) -> Any:
    if status != 200:
        raise SmokeFailed("BadStatus", f"{what} answered HTTP {status}: {body[:300].decode(errors='replace')}")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise SmokeFailed("BadResponse", f"{what} did not answer JSON: {body[:200]!r}") from exc


def check_target(target: Target, image: bytes, *, model_name: str, min_detections: int,
                 expect_label: str | None, retries: int = 3) -> tuple[int, list[str], float, list[str]]:
    """Run the three checks against one target; return (detections, labels, latency ms, checks done)."""
    checks = []
    for attempt in range(retries):
        try:
            status, _ = target.request("GET", "/readyz", timeout=10)
            break
        except OSError as exc:  # a pod that just turned ready may refuse for a moment
            if attempt == retries - 1:
                raise SmokeFailed("Unreachable", f"{target.label}/readyz: {exc}") from exc
            time.sleep(1)
    if status != 200:
        raise SmokeFailed("NotReady", f"{target.label}/readyz answered HTTP {status}")
    checks.append(f"{target.label}/readyz 200")

    body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]}).encode()
    what = f"{target.label}/v1/models/{model_name}:predict"
    pred = _json(*target.request("POST", f"/v1/models/{model_name}:predict", body,
                                 {"Content-Type": "application/json"}), what)
    predictions = pred.get("predictions") if isinstance(pred, dict) else None
    if not predictions or any(k not in predictions[0] for k in PREDICT_KEYS):
        raise SmokeFailed("ContractBroken", f"{what} did not return {', '.join(PREDICT_KEYS)}: {str(pred)[:300]}")
    checks.append(f"{what} 200, {predictions[0]['num_detections']} raw detections")

    form, ctype = _multipart("file", "smoke.jpg", image, "image/jpeg")
    started = time.perf_counter()
    det = _json(*target.request("POST", "/detect", form, {"Content-Type": ctype}), f"{target.label}/detect")
    latency = (time.perf_counter() - started) * 1000
    labels = [d.get("label", "?") for d in det.get("detections", [])]
    if len(labels) < min_detections:
        raise SmokeFailed("TooFewDetections",
                          f"{target.label}/detect found {len(labels)} objects in the smoke photo, "
                          f"expected at least {min_detections}")
    if expect_label and expect_label not in labels:
        raise SmokeFailed("ExpectedLabelMissing",
                          f"{target.label}/detect found {labels or 'nothing'}, expected a {expect_label!r}")
    checks.append(f"{target.label}/detect 200, {labels}")
    return len(labels), labels, latency, checks


def smoke_test(
    kube: Kube,
    spec: DeploySpec,
    *,
    via: str = "service",
    node_host: str = DEFAULT_NODE_HOST,
    image_path: str | Path | None = None,
    rounds: int | None = None,
    log: Callable[[str], None] = log_.info,
) -> SmokeResult:
    """Send a real photo to the spec's Service (or its pods); raise ``SmokeFailed`` on the first wrong answer.

    Through a Service each round may reach another replica, so ``rounds`` (default: one per
    replica) repeats the checks; through ``pods``/``port-forward`` every replica is checked once.
    """
    namespace, name, port = spec.namespace, spec.service, spec.port
    model_name, min_detections, expect_label = spec.serving_name, spec.min_detections, spec.expect_label
    image = Path(image_path or DEFAULT_IMAGE).read_bytes()
    try:
        targets = smoke_targets(kube, namespace, name, port, via, node_host=node_host)
        if via in ("service", "nodeport"):
            targets = targets * (rounds or max(spec.replicas, 1))
    except SmokeFailed:
        raise
    except Exception as exc:
        raise SmokeFailed("NoTargets", f"could not find the pods of {namespace}/{name}: {api_error_message(exc)}") from exc
    result = SmokeResult(targets=[t.label for t in targets], num_detections=0, labels=[], latency_ms=0.0)
    for target in targets:
        try:
            n, labels, latency, checks = check_target(target, image, model_name=model_name,
                                                      min_detections=min_detections, expect_label=expect_label)
        except SmokeFailed:
            raise
        except Exception as exc:  # connection reset, timeouts, portforward errors
            raise SmokeFailed("Unreachable", f"{target.label}: {exc}") from exc
        for c in checks:
            log(f"smoke: {c}")
        result.num_detections, result.labels = n, labels
        result.latency_ms = max(result.latency_ms, round(latency, 1))
        result.checks += checks
    return result
