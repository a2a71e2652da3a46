"""The local infrastructure from ``scripts/infra/up.sh``, checked through the real clients.

Docker engine (docker SDK), registry (Distribution HTTP API v2) and the single-node cluster
(kubernetes SDK, ``kubectl port-forward``). These are the paths the build and deploy stages
rely on: an image pushed to 127.0.0.1:5000 is pullable by the cluster, a pod from the base
image runs, pods reach each other by pod IP, and the host reaches a pod through port-forward.

Services route (kube-proxy): a NodePort answers on 127.0.0.1 and balances across its pods; a
pod reaches a Service at the ClusterIP of its injected ``<NAME>_SERVICE_HOST``; a pod without
hostNetwork reaches the apiserver through the ``kubernetes`` Service with its ServiceAccount
(in-cluster config), and MLflow (tracking and artifacts) at the bridge address; the Service
range is routed onto the cluster's bridge, so none of its packets can leave the machine.

Needs the infrastructure up: ``sudo scripts/infra/up.sh`` (it writes ``$STATE/env.sh``).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from detectops.platform_net import bridge_ip, pod_reachable_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("DETECTOPS_INFRA_DIR") or Path(os.environ.get("DETECTOPS_HOME", REPO / ".state")) / "infra")
BASE_IMAGE_REPO = "detectops/base"
BASE_IMAGE_TAG = "bookworm"
NAMESPACE = "default"
POD_TIMEOUT_S = 120


def _read_env_sh(path: Path) -> dict[str, str]:
    """The ``export NAME="value"`` lines that up.sh writes (no shell needed to read them)."""
    env = {}
    for line in path.read_text().splitlines():
        m = re.match(r'^export ([A-Z_][A-Z0-9_]*)="(.*)"$', line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    return env


@pytest.fixture(scope="module")
def infra_env() -> dict[str, str]:
    env_file = STATE / "env.sh"
    if not env_file.exists():
        pytest.skip(
            f"local infrastructure is not up ({env_file} missing): run `sudo scripts/infra/up.sh` "
            "(after `scripts/infra/install-deps.sh` on a fresh machine); stop it with scripts/infra/down.sh"
        )
    return _read_env_sh(env_file)


@pytest.fixture(scope="module")
def docker_client(infra_env):
    import docker

    client = docker.DockerClient(base_url=infra_env["DOCKER_HOST"], timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def registry(infra_env) -> str:
    return infra_env["DETECTOPS_REGISTRY"]


@pytest.fixture(scope="module")
def core_v1(infra_env):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=infra_env["KUBECONFIG"])
    yield client.CoreV1Api(api_client)
    api_client.close()


# --------------------------------------------------------------------------- helpers
def _pod(name: str, image: str, command: list[str], **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "detectops-infra-test"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": command, **spec.pop("container", {})}],
            **spec,
        },
    }


def _wait_phase(core_v1, name: str, phases: set[str], timeout: float = POD_TIMEOUT_S) -> object:
    """Poll the pod until its phase is in ``phases``; fail with its events otherwise."""
    deadline = time.monotonic() + timeout
    pod = None
    while time.monotonic() < deadline:
        pod = core_v1.read_namespaced_pod(name, NAMESPACE)
        if pod.status.phase in phases:
            return pod
        if pod.status.phase == "Failed":
            break
        time.sleep(0.5)
    events = core_v1.list_namespaced_event(NAMESPACE, field_selector=f"involvedObject.name={name}")
    logs = ""
    try:
        logs = _logs(core_v1, name)
    except Exception as exc:  # noqa: BLE001 - only for the failure message
        logs = f"(no logs: {exc})"
    pytest.fail(
        f"pod {name} phase {pod.status.phase if pod else None}, wanted {phases}; "
        f"events: {[e.message for e in events.items]}; logs: {logs}"
    )


@pytest.fixture()
def pods(core_v1) -> Iterator[list[str]]:
    """Names of pods a test created; deleted afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            core_v1.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _run_pod(core_v1, pods: list[str], name_prefix: str, image: str, command: list[str], **spec) -> str:
    name = f"{name_prefix}-{uuid.uuid4().hex[:6]}"
    core_v1.create_namespaced_pod(NAMESPACE, _pod(name, image, command, **spec))
    pods.append(name)
    return name


def _logs(core_v1, name: str) -> str:
    """A pod's log as text (kubernetes client 36 returns ``str(bytes)`` with preloaded content)."""
    return core_v1.read_namespaced_pod_log(name, NAMESPACE, _preload_content=False).data.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- docker + registry
def test_docker_daemon_answers(docker_client, infra_env):
    assert infra_env["DOCKER_HOST"] == f"unix://{STATE}/docker.sock"
    assert docker_client.ping() is True
    info = docker_client.info()
    assert info["DockerRootDir"].startswith(str(STATE)), "not the project's own dockerd"
    assert docker_client.images.get("local/bookworm:base").attrs["Os"] == "linux"


def test_registry_answers_v2(registry):
    r = httpx.get(f"http://{registry}/v2/", timeout=10)
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_pushed_image_digest_is_readable_from_registry(docker_client, registry):
    # A fresh one-layer image (a unique file in scratch), so the push really uploads a blob.
    marker = uuid.uuid4().hex
    ctx = io.BytesIO()
    with tarfile.open(fileobj=ctx, mode="w") as tar:
        for name, data in {"Dockerfile": b"FROM scratch\nCOPY marker /marker\n", "marker": marker.encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    ctx.seek(0)
    repo = f"{registry}/detectops/infra-test"
    image, _ = docker_client.images.build(fileobj=ctx, custom_context=True, tag=f"{repo}:{marker}", rm=True)
    try:
        digest = None
        for line in docker_client.images.push(repo, tag=marker, stream=True, decode=True):
            assert "error" not in line, line
            digest = line.get("aux", {}).get("Digest", digest)
        assert digest and digest.startswith("sha256:")

        r = httpx.get(
            f"http://{registry}/v2/detectops/infra-test/manifests/{marker}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=10,
        )
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] == digest
        manifest = r.json()
        assert len(manifest["layers"]) == 1
        # The config blob the registry serves is the image the daemon built.
        cfg = httpx.get(f"http://{registry}/v2/detectops/infra-test/blobs/{manifest['config']['digest']}", timeout=10)
        assert cfg.status_code == 200 and image.id == manifest["config"]["digest"]
        # Leave the registry as we found it (deletion is enabled in up.sh's config).
        assert httpx.delete(f"http://{registry}/v2/detectops/infra-test/manifests/{digest}", timeout=10).status_code == 202
    finally:
        docker_client.images.remove(image.id, force=True)


def test_base_image_is_in_registry(registry):
    r = httpx.head(
        f"http://{registry}/v2/{BASE_IMAGE_REPO}/manifests/{BASE_IMAGE_TAG}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert r.status_code == 200


# --------------------------------------------------------------------------- cluster
def test_node_is_ready(core_v1):
    node = core_v1.read_node("localhost")
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert core_v1.read_namespaced_service_account("default", NAMESPACE).metadata.name == "default"


def test_pod_from_base_image_succeeds_and_logs_are_readable(core_v1, pods, registry):
    image = f"{registry}/{BASE_IMAGE_REPO}:{BASE_IMAGE_TAG}"
    name = _run_pod(
        core_v1, pods, "infra-hello", image,
        ["python3", "-c", "import sys; print('python', sys.version_info[:2]); import venv, ssl; print('ok')"],
    )
    _wait_phase(core_v1, name, {"Succeeded"})
    logs = _logs(core_v1, name)
    assert "python (3, 11)" in logs and logs.strip().endswith("ok")


def test_pod_reaches_apiserver_through_kubernetes_service(core_v1, pods, registry):
    """In-cluster config as any client library does it: injected KUBERNETES_SERVICE_HOST/PORT
    (the `kubernetes` Service, 10.0.0.1:443), the ServiceAccount token and CA; no hostNetwork.
    The certificate check includes the hostname (the Service IP is a SAN)."""
    script = (
        "import json, os, ssl, urllib.request\n"
        "d = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx = ssl.create_default_context(cafile=d + '/ca.crt')\n"
        "host, port = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']\n"
        "req = urllib.request.Request('https://%s:%s/api' % (host, port),\n"
        "                             headers={'Authorization': 'Bearer ' + open(d + '/token').read()})\n"
        "api = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))\n"
        "print(json.dumps({'host': host, 'port': port, 'api': api}))\n"
    )
    name = _run_pod(core_v1, pods, "infra-api", f"{registry}/{BASE_IMAGE_REPO}:{BASE_IMAGE_TAG}", ["python3", "-c", script])
    _wait_phase(core_v1, name, {"Succeeded"})
    pod = core_v1.read_namespaced_pod(name, NAMESPACE)
    assert not pod.spec.host_network
    out = json.loads(_logs(core_v1, name).strip().splitlines()[-1])
    service = core_v1.read_namespaced_service("kubernetes", NAMESPACE)
    assert (out["host"], out["port"]) == (service.spec.cluster_ip, "443")
    assert out["api"]["kind"] == "APIVersions" and "v1" in out["api"]["versions"]


def test_kubernetes_service_endpoint_is_the_bridge_address(core_v1, infra_env):
    endpoints = core_v1.read_namespaced_endpoints("kubernetes", NAMESPACE)
    addresses = [(a.ip, p.port) for sub in endpoints.subsets for a in sub.addresses for p in sub.ports]
    assert addresses == [(infra_env["DETECTOPS_BRIDGE_IP"], 6443)]


def test_service_range_is_routed_onto_the_bridge(infra_env):
    """If kube-proxy is down, a packet for a ClusterIP must stay on the cluster's own bridge.

    ``ip route get`` asks the kernel which route it would use; it sends nothing."""
    assert infra_env["DETECTOPS_SERVICE_CIDR"] == "10.0.0.0/24"
    for ip in ("10.0.0.1", "10.0.0.200"):
        route = subprocess.run(["ip", "-o", "route", "get", ip], capture_output=True, text=True, check=True).stdout
        assert re.search(r"\bdev detectops0\b", route) or route.startswith(("unreachable", "blackhole")), route
        assert "eth" not in route and " via " not in route, route


def test_apiserver_and_forwarders_listen_only_on_loopback_and_the_bridge(infra_env):
    """Nothing of ours listens on 0.0.0.0 or an outside interface (ports of the cluster and proxy)."""
    allowed = {"127.0.0.1", infra_env["DETECTOPS_BRIDGE_IP"]}
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    for port in (6443, 10249, 10256):
        hosts = {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.split()[3].endswith(f":{port}")}
        assert hosts and hosts <= allowed, (port, hosts)


@pytest.fixture()
def web_pod(core_v1, pods, registry) -> tuple[str, str]:
    """A pod serving a unique text on port 8080; returns (name, text)."""
    text = f"detectops-{uuid.uuid4().hex}"
    name = _run_pod(
        core_v1, pods, "infra-web", f"{registry}/{BASE_IMAGE_REPO}:{BASE_IMAGE_TAG}",
        ["sh", "-c", f"mkdir -p /srv && echo {text} > /srv/index.html && exec python3 -m http.server 8080 -d /srv"],
        container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
    )
    deadline = time.monotonic() + POD_TIMEOUT_S
    while time.monotonic() < deadline:
        pod = _wait_phase(core_v1, name, {"Running"})
        if any(c.ready for c in pod.status.container_statuses or []):
            return name, text
        time.sleep(0.5)
    pytest.fail(f"pod {name} never became ready")


def test_port_forward_to_pod(web_pod, infra_env):
    name, text = web_pod
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH: run scripts/infra/install-deps.sh")
    port = _free_port()
    proc = subprocess.Popen(
        [kubectl, "--kubeconfig", infra_env["KUBECONFIG"], "-n", NAMESPACE, "port-forward",
         "--address", "127.0.0.1", f"pod/{name}", f"{port}:8080"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert body is not None and body.strip() == text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_pods_reach_each_other_by_pod_ip(web_pod, core_v1, pods, registry):
    name, text = web_pod
    ip = core_v1.read_namespaced_pod(name, NAMESPACE).status.pod_ip
    assert ip, "web pod has no IP"
    client = _run_pod(
        core_v1, pods, "infra-client", f"{registry}/{BASE_IMAGE_REPO}:{BASE_IMAGE_TAG}",
        ["python3", "-c", f"import urllib.request; print(urllib.request.urlopen('http://{ip}:8080/', timeout=10).read().decode())"],
    )
    _wait_phase(core_v1, client, {"Succeeded"})
    assert _logs(core_v1, client).strip() == text


# --------------------------------------------------------------------------- Services (kube-proxy)
def _wait_ready(core_v1, names: list[str], timeout: float = POD_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            pod = core_v1.read_namespaced_pod(name, NAMESPACE)
            if pod.status.phase == "Failed":
                _wait_phase(core_v1, name, {"Running"}, timeout=0)  # fails with events and logs
            if any(c.ready for c in pod.status.container_statuses or []):
                pending.discard(name)
        time.sleep(0.3)
    assert not pending, f"pods never became ready: {pending}"


@pytest.fixture(scope="module")
def balanced_service(core_v1, registry) -> Iterator[dict]:
    """A NodePort Service in front of two pods, each answering its own text; deleted afterwards.

    Returns ``{"name", "node_port", "texts"}`` once the Service has both pods as endpoints."""
    uid = uuid.uuid4().hex[:6]
    name = f"infra-svc-{uid}"
    labels = {"app.kubernetes.io/part-of": "detectops-infra-test", "detectops-infra-test/svc": uid}
    texts = {f"{name}-{i}": f"detectops-backend-{i}-{uuid.uuid4().hex}" for i in range(2)}
    created_pods: list[str] = []
    try:
        for pod_name, text in texts.items():
            pod = _pod(
                pod_name, f"{registry}/{BASE_IMAGE_REPO}:{BASE_IMAGE_TAG}",
                ["sh", "-c", f"mkdir -p /srv && echo {text} > /srv/index.html && exec python3 -m http.server 8080 -d /srv"],
                container={"readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}},
            )
            pod["metadata"]["labels"] = labels
            core_v1.create_namespaced_pod(NAMESPACE, pod)
            created_pods.append(pod_name)
        service = core_v1.create_namespaced_service(NAMESPACE, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "detectops-infra-test"}},
            "spec": {"type": "NodePort", "selector": labels,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        })
        _wait_ready(core_v1, created_pods)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            eps = core_v1.read_namespaced_endpoints(name, NAMESPACE)
            if sum(len(s.addresses or []) for s in eps.subsets or []) == 2:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"Service {name} never got both pods as endpoints")
        yield {"name": name, "node_port": service.spec.ports[0].node_port, "texts": set(texts.values())}
    finally:
        try:
            core_v1.delete_namespaced_service(name, NAMESPACE)
        except Exception:  # noqa: BLE001 - never created or already gone
            pass
        for pod_name in created_pods:
            try:
                core_v1.delete_namespaced_pod(pod_name, NAMESPACE, grace_period_seconds=0)
            except Exception:  # noqa: BLE001 - already gone
                pass


def test_node_port_answers_on_loopback_and_balances_across_pods(balanced_service):
    """Host -> Service through its NodePort on 127.0.0.1 (kube-proxy --nodeport-addresses=127.0.0.1/32)."""
    url = f"http://127.0.0.1:{balanced_service['node_port']}/"
    deadline = time.monotonic() + 15  # kube-proxy applies a new Service within about a second
    while True:
        try:
            httpx.get(url, timeout=3).raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    # A new connection per request, so kube-proxy picks a backend each time (chance of missing one of
    # two in 40 tries: 2 * 0.5**40).
    seen = [httpx.get(url, timeout=5, headers={"Connection": "close"}).text.strip() for _ in range(40)]
    assert set(seen) == balanced_service["texts"], {t: seen.count(t) for t in set(seen)}


def test_pod_reaches_service_at_its_injected_cluster_ip(balanced_service, core_v1, pods, registry):
    """Pod -> Service ClusterIP, found as the kubelet injects it (no cluster DNS here)."""
    env = balanced_service["name"].upper().replace("-", "_")
    script = (
        "import json, os, urllib.request\n"
        f"host, port = os.environ['{env}_SERVICE_HOST'], os.environ['{env}_SERVICE_PORT']\n"
        "seen = [urllib.request.urlopen('http://%s:%s/' % (host, port), timeout=5).read().decode().strip()\n"
        "        for _ in range(20)]\n"
        "print(json.dumps({'host': host, 'seen': seen}))\n"
    )
    name = _run_pod(core_v1, pods, "infra-svc-client", f"{registry}/{BASE_IMAGE_REPO}:{BASE_IMAGE_TAG}",
                    ["python3", "-c", script])
    _wait_phase(core_v1, name, {"Succeeded"})
    out = json.loads(_logs(core_v1, name).strip().splitlines()[-1])
    assert out["host"] == core_v1.read_namespaced_service(balanced_service["name"], NAMESPACE).spec.cluster_ip
    assert set(out["seen"]) == balanced_service["texts"]


# --------------------------------------------------------------------------- host services for pods
def test_pod_reaches_mlflow_and_its_artifacts_at_the_bridge_address(mlflow_server, core_v1, pods, registry):
    """MLflow listens on 127.0.0.1; pods use pod_reachable_url(), served by the fixture's bridge forwarder.

    The pod reads a run through the tracking API and downloads its artifact through the server
    (--serve-artifacts), as a training pod fetches a dataset version or a checkpoint."""
    from mlflow import MlflowClient

    pod_url = pod_reachable_url(mlflow_server)
    assert pod_url.startswith(f"http://{bridge_ip()}:")
    client = MlflowClient(mlflow_server)
    run = client.create_run(client.create_experiment(f"infra-{uuid.uuid4().hex[:8]}"))
    marker = uuid.uuid4().hex
    client.log_text(run.info.run_id, marker, "probe/marker.txt")
    artifacts = run.info.artifact_uri
    assert artifacts.startswith("mlflow-artifacts:/"), artifacts
    path = artifacts.removeprefix("mlflow-artifacts:").lstrip("/")
    script = (
        "import json, urllib.request\n"
        f"base = {pod_url!r}\n"
        f"run = json.load(urllib.request.urlopen(base + '/api/2.0/mlflow/runs/get?run_id={run.info.run_id}', timeout=10))\n"
        f"art = urllib.request.urlopen(base + '/api/2.0/mlflow-artifacts/artifacts/{path}/probe/marker.txt', timeout=10)\n"
        "print(json.dumps({'run_id': run['run']['info']['run_id'], 'artifact': art.read().decode()}))\n"
    )
    name = _run_pod(core_v1, pods, "infra-mlflow", f"{registry}/{BASE_IMAGE_REPO}:{BASE_IMAGE_TAG}", ["python3", "-c", script])
    _wait_phase(core_v1, name, {"Succeeded"})
    out = json.loads(_logs(core_v1, name).strip().splitlines()[-1])
    assert out == {"run_id": run.info.run_id, "artifact": marker}
