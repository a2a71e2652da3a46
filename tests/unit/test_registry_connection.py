"""Connecting to MLflow fails fast and says what to do; evaluation numbers map to MLflow metrics."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from detectops.errors import ServiceUnavailableError
from detectops.evaluate.mlflow_log import connect, evaluation_metrics, metric_key
from tests.support.services import free_port


def test_unreachable_server_fails_fast_naming_the_uri_and_the_fix():
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as info:
        connect(uri)
    assert time.monotonic() - t0 < 5
    message = str(info.value)
    assert uri in message and "mlflow server" in message and "MLFLOW_TRACKING_URI" in message


def test_registry_calls_fail_fast_too(tmp_path):
    from detectops.registry import get_alias, register_model

    uri = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=uri):
        get_alias("detector", "champion", tracking_uri=uri)
    assert time.monotonic() - t0 < 5
    with pytest.raises(ServiceUnavailableError):
        (tmp_path / "saved_model.pb").write_bytes(b"")
        register_model({"path": str(tmp_path), "sha256": "x"}, "run", "detector", tracking_uri=uri)


def test_register_refuses_a_directory_that_is_not_a_saved_model(tmp_path):
    from detectops.errors import DetectOpsError
    from detectops.registry import register_model

    with pytest.raises(DetectOpsError, match="not a SavedModel directory"):
        register_model({"path": str(tmp_path)}, "run", "detector", tracking_uri="http://127.0.0.1:1")


def test_no_tracking_uri_says_what_to_set(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ServiceUnavailableError, match="MLFLOW_TRACKING_URI"):
        connect(None)


def test_unhealthy_server_is_reported_with_its_status():
    class Unhealthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Unhealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(ServiceUnavailableError, match="HTTP 503"):
            connect(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()


def test_evaluation_metrics_leave_out_undefined_and_prefix_classes():
    from detectops.evaluate import EvaluationResult

    result = EvaluationResult(
        metrics={"AP": 0.5, "APs": None}, per_class_ap={"person": 0.75, "hot dog": 0.25, "cup": None},
        per_class_ap50={"person": 1.0}, latency={"p50_ms": 60.0, "p95_ms": 70.0, "mean_ms": 61.0, "throughput_ips": 16.0},
        num_images=5, num_detections=12, score_threshold=0.0, model={}, dataset={}, output_dir="/x",
    )
    metrics = evaluation_metrics(result)
    assert metrics["AP"] == 0.5 and "APs" not in metrics
    assert metrics["ap_class/person"] == 0.75 and metrics["ap_class/hot dog"] == 0.25 and "ap_class/cup" not in metrics
    assert metrics["latency_p95_ms"] == 70.0 and metrics["throughput_ips"] == 16.0 and metrics["num_images"] == 5.0
    assert metric_key("a+b(c)") == "a_b_c_"


def test_missing_extra_artifact_fails_before_anything_is_logged(tmp_path):
    from detectops.evaluate import EvaluationResult, log_evaluation

    result = EvaluationResult(
        metrics={}, per_class_ap={}, per_class_ap50={}, latency={}, num_images=0, num_detections=0,
        score_threshold=0.0, model={}, dataset={}, output_dir=str(tmp_path),
    )
    # The unreachable URI would raise ServiceUnavailableError: the path check comes first.
    with pytest.raises(FileNotFoundError, match="nothing was logged"):
        log_evaluation(result, experiment="x", extra_artifacts={"data_validation": [tmp_path / "nope.json"]},
                       tracking_uri="http://127.0.0.1:1")
