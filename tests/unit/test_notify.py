"""A failed DAG run notifies the webhook receiver (a real HTTP server on loopback) through Airflow's notifier."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform


@pytest.fixture()
def receiver():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append({"path": self.path, "body": json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], received
    server.shutdown()


class _Run:
    dag_id, run_id = "detectops_level1_training", "manual__1"

    def get_task_instances(self, state=None):
        assert set(state) == {"failed", "upstream_failed"}
        return [SimpleNamespace(task_id="train"), SimpleNamespace(task_id="evaluate")]


def test_a_failed_run_is_posted_to_the_connections_webhook(receiver, monkeypatch):
    from detectops.notify import RunFailedWebhook

    port, received = receiver
    monkeypatch.setenv("AIRFLOW_CONN_DETECTOPS_ALERT_WEBHOOK",
                       json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port, "extra": {"path": "/hooks/runs"}}))
    RunFailedWebhook()({"dag_run": _Run(), "reason": "task_failure"})
    assert len(received) == 1 and received[0]["path"] == "/hooks/runs"
    body = received[0]["body"]
    assert body["kind"] == "dag_run_failed" and body["dag_id"] == "detectops_level1_training"
    assert body["run_id"] == "manual__1" and body["failed_tasks"] == ["evaluate", "train"]


def test_without_a_connection_nothing_is_sent_and_nothing_raises(receiver, monkeypatch):
    from detectops.notify import RunFailedWebhook

    _, received = receiver
    monkeypatch.delenv("AIRFLOW_CONN_DETECTOPS_ALERT_WEBHOOK", raising=False)
    RunFailedWebhook()({"dag_run": _Run()})
    assert received == []
