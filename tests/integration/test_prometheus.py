"""Prometheus and Alertmanager from ``scripts/infra/up.sh`` against a real serving pod.

1. The alert rules themselves, with ``promtool test rules`` (include/monitoring/rules_test.yml):
   each alert fires on the series it is meant for and stays quiet on the others.
2. The tiny-detector image is deployed the way test_deploy.py deploys it (its fixtures, the one
   deploy path), requests go to it through its NodePort on 127.0.0.1, and Prometheus' HTTP API
   (through ``detectops.monitoring.prometheus``) shows the pod's request counter with its
   labels (namespace, pod, model, model_version, track, service), its process metrics and the
   kubelet's cAdvisor series for the pod.
3. An alert for real: the serving process in the pod is stopped (``kill 1`` in the container),
   the kubelet restarts it, and ``DetectOpsPodRestarted`` reaches a webhook receiver this test
   runs on 127.0.0.1, through Alertmanager.

For speed, the running Prometheus and Alertmanager get test settings for the module (scrape and
evaluation every 5 s, group_wait 1 s, the webhook URL of this test's receiver) through
``scripts/infra/prometheus.sh start`` — a configuration reload, no restart — and the settings
they had are put back afterwards. If up.sh has not started them, the same call starts them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.test_deploy import _node_port, _spec, good_image, kube, namespace  # noqa: F401  (fixtures)
from tests.integration.test_image import REPO, astronaut_jpeg, infra_env, multipart

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMETHEUS_SH = REPO / "scripts" / "infra" / "prometheus.sh"
TEST_SETTINGS = {
    "DETECTOPS_PROMETHEUS_SCRAPE_INTERVAL": "5s",
    "DETECTOPS_PROMETHEUS_EVAL_INTERVAL": "5s",
    "DETECTOPS_ALERTMANAGER_GROUP_WAIT": "1s",
    "DETECTOPS_ALERTMANAGER_GROUP_INTERVAL": "5s",
}
PREDICT = "/v1/models/detector:predict"
REQUESTS = 4  # :predict requests this test sends (plus as many /detect)


def eventually(check, timeout_s: float, what: str, interval_s: float = 1.0):
    """Call ``check`` until it returns something truthy; fail with ``what`` and the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f}s (last: {value!r})"
        time.sleep(interval_s)


# ------------------------------------------------------------------------------ 1. the rules alone
def test_alert_rules_fire_on_what_they_are_meant_for() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/infra/install-deps.sh installs Debian's prometheus"
    out = subprocess.run([promtool, "test", "rules", "rules_test.yml"], cwd=REPO / "include" / "monitoring",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


# ------------------------------------------------------------------- the webhook and the settings
class _Receiver(BaseHTTPRequestHandler):
    notifications: list[dict] = []
    arrived = threading.Condition()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with self.arrived:
            self.notifications.append({"path": self.path, **body})
            self.arrived.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_) -> None:
        pass


@pytest.fixture(scope="module")
def webhook():
    """A webhook receiver on 127.0.0.1 (Alertmanager's JSON, version 4); yields (url, notifications)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Receiver.notifications
    server.shutdown()
    server.server_close()


def _prometheus_sh_start(settings: dict[str, str]) -> None:
    out = subprocess.run([str(PROMETHEUS_SH), "start"], env={**os.environ, **settings},
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"prometheus.sh start failed:\n{out.stdout}\n{out.stderr}"


@pytest.fixture(scope="module")
def prometheus(webhook):
    """A PrometheusClient for the stack's Prometheus, set to the test settings for this module."""
    from detectops.monitoring.prometheus import PrometheusClient

    env = infra_env()
    if env.get("DETECTOPS_KUBE_EXTERNAL"):
        pytest.skip("KUBECONFIG points at an external cluster: Prometheus here scrapes only the local "
                    "cluster's pods (scripts/infra/prometheus.sh)")
    settings_file = Path(env["DETECTOPS_INFRA_DIR"]) / "prometheus" / "settings.env"
    before = {}
    if settings_file.is_file():  # what the running instances were given, to put back afterwards
        before = dict(line.split("=", 1) for line in settings_file.read_text().splitlines()
                      if line and not line.startswith("#"))
    _prometheus_sh_start({**before, **TEST_SETTINGS, "DETECTOPS_ALERT_WEBHOOK_URL": webhook[0]})
    url = env.get("DETECTOPS_PROMETHEUS_URL") or "http://127.0.0.1:{}".format(
        before.get("DETECTOPS_PROMETHEUS_PORT", "9090"))
    try:
        yield PrometheusClient(url)
    finally:
        _prometheus_sh_start(before)


# ------------------------------------------------------------------------------- 2. a serving pod
@pytest.fixture(scope="module")
def served(kube, namespace, good_image, prometheus):  # noqa: F811
    """The tiny detector deployed, smoke-tested, and sent REQUESTS :predict and /detect requests."""
    from detectops.deploy import deploy

    spec = _spec(good_image, namespace, expect_label="person", rollout_timeout_s=240)
    result = deploy(spec, smoke_via="nodeport", kube=kube, log=lambda _: None)
    assert result.ready_replicas == 1
    (pod,) = kube.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={spec.deployment}").items
    target = _node_port(kube, spec)  # http://127.0.0.1:<nodePort>: loopback only
    photo = astronaut_jpeg()
    body = json.dumps({"instances": [{"b64": base64.b64encode(photo).decode()}]}).encode()
    form, ctype = multipart(photo)
    for _ in range(REQUESTS):
        status, raw = target.request("POST", PREDICT, body, {"Content-Type": "application/json"})
        assert status == 200, raw[:300]
        status, raw = target.request("POST", "/detect", form, {"Content-Type": ctype})
        assert status == 200, raw[:300]
    return spec, pod, target


def _pod_counter(target, endpoint: str) -> float:
    """detectops_http_requests_total{endpoint, status="200"} as the pod itself reports it now."""
    from prometheus_client.parser import text_string_to_metric_families

    status, raw = target.request("GET", "/metrics")
    assert status == 200
    return sum(s.value for fam in text_string_to_metric_families(raw.decode()) for s in fam.samples
               if s.name == "detectops_http_requests_total"
               and s.labels == {"endpoint": endpoint, "method": "POST", "status": "200"})


def test_prometheus_scrapes_the_pod_with_its_model_labels(prometheus, served) -> None:
    spec, pod, target = served
    name = pod.metadata.name
    labels = {"namespace": spec.namespace, "pod": name, "model": spec.model_name,
              "model_version": spec.model_version, "track": "stable", "service": spec.service}
    selector = ", ".join(f'{k}="{v}"' for k, v in labels.items())

    # The pod's own count (the smoke test's requests and ours; nothing else reaches this pod) ...
    in_pod = _pod_counter(target, "/v1/models/{name}:predict")
    assert in_pod >= REQUESTS
    # ... is what Prometheus scrapes, with the labels from the pod's labels and annotations.
    query = f'detectops_http_requests_total{{{selector}, endpoint="/v1/models/{{name}}:predict", status="200"}}'
    (series,) = eventually(
        lambda: [s for s in prometheus.query(query) if float(s["value"][1]) == in_pod],
        60, f"Prometheus reporting {in_pod:.0f} for {query}")
    assert series["metric"]["job"] == "detectops-serving"
    assert series["metric"]["instance"] == f"{pod.status.pod_ip}:{spec.port}"  # scraped at the pod IP

    # The serving process's own metrics, same labels.
    for metric in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                   "process_start_time_seconds"):
        (sample,) = prometheus.query(f"{metric}{{{selector}}}")
        assert float(sample["value"][1]) > 0, (metric, sample)
    (started,) = prometheus.query(f"process_start_time_seconds{{{selector}}}")
    assert abs(float(started["value"][1]) - pod.status.start_time.timestamp()) < 120

    # cAdvisor (the kubelet): the pod's memory and CPU, and the recording rule adding the model
    # labels. cAdvisor stamps its samples with its own housekeeping time, so the first ones of a
    # new pod may predate the process (0 bytes): wait for a sample of the running process.
    pod_sel = f'namespace="{spec.namespace}", pod="{name}"'
    big = 10 * 2**20  # a Python process with TensorFlow loaded uses far more

    def over(query: str, floor: float) -> list[dict]:
        return [s for s in prometheus.query(query) if float(s["value"][1]) > floor]

    (memory,) = eventually(lambda: over(f'container_memory_working_set_bytes{{job="kubelet-cadvisor", {pod_sel}}}', big),
                           30, "cAdvisor's container_memory_working_set_bytes for the pod")
    assert memory["metric"]["id"].startswith("/kubepods/")  # the pod's own cgroup
    eventually(lambda: over(f'container_cpu_usage_seconds_total{{job="kubelet-cadvisor", {pod_sel}}}', 0),
               30, "cAdvisor's container_cpu_usage_seconds_total for the pod")
    (joined,) = eventually(lambda: over(f"detectops:pod_memory_working_set_bytes{{{selector}}}", big),
                           30, "the recording rule detectops:pod_memory_working_set_bytes")
    assert joined["metric"]["job"] == "kubelet-cadvisor" and joined["metric"]["id"] == memory["metric"]["id"]

    # A range query over the same series (the client's other call).
    now = time.time()
    (ranged,) = prometheus.query_range(f"process_resident_memory_bytes{{{selector}}}", start=now - 60, end=now, step=5)
    assert len(ranged["values"]) >= 2


# --------------------------------------------------------------------------------- 3. a real alert
def test_a_restarted_serving_process_fires_an_alert_to_the_webhook(kube, prometheus, served, webhook) -> None:  # noqa: F811
    spec, pod, _ = served
    name = pod.metadata.name
    url, notifications = webhook
    selector = f'namespace="{spec.namespace}", pod="{name}"'
    (before,) = prometheus.query(f"process_start_time_seconds{{{selector}}}")

    # Stop the serving process (PID 1 of the container; uvicorn exits on SIGTERM): the kubelet
    # restarts the container in the same pod.
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: scripts/infra/install-deps.sh installs it"
    out = subprocess.run([kubectl, "-n", spec.namespace, "exec", name, "-c", "detector", "--", "sh", "-c", "kill 1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    eventually(lambda: (kube.core.read_namespaced_pod(name, spec.namespace).status.container_statuses[0]
                        .restart_count >= 1), 60, "the kubelet restarting the container")

    # Prometheus scrapes the new process: another start time on the same series.
    eventually(lambda: [s for s in prometheus.query(f"process_start_time_seconds{{{selector}}}")
                        if float(s["value"][1]) > float(before["value"][1])],
               90, "a new process_start_time_seconds for the pod")

    def restart_alert():
        with _Receiver.arrived:
            for note in notifications:
                for alert in note["alerts"]:
                    if (alert["labels"].get("alertname") == "DetectOpsPodRestarted"
                            and alert["labels"].get("namespace") == spec.namespace):
                        return note, alert
        return None

    note, alert = eventually(restart_alert, 60, f"DetectOpsPodRestarted at the webhook {url}")
    assert note["path"] == "/alerts" and note["status"] == "firing" and note["receiver"] == "webhook"
    assert alert["status"] == "firing"
    labels = alert["labels"]
    assert labels["pod"] == name and labels["severity"] == "warning" and labels["job"] == "detectops-serving"
    assert (labels["model"], labels["model_version"]) == (spec.model_name, spec.model_version)
    assert (labels["track"], labels["service"]) == ("stable", spec.service)
    assert name in alert["annotations"]["summary"] and "restarted" in alert["annotations"]["summary"]
    # Prometheus' own view agrees: the alert is firing there too.
    assert len(prometheus.query(f'ALERTS{{alertname="DetectOpsPodRestarted", alertstate="firing", {selector}}}')) == 1
