"""The batch-inference DAG's steps (detectops.batch.steps): jobs, model version -> image, input -> store URI."""

from __future__ import annotations

import uuid

import pytest

from detectops.batch import steps
from detectops.errors import DataValidationError, DetectOpsError

PARAMS = {"location": "", "model_name": "detector", "alias": "champion", "version": None, "namespace": "detectops",
          "min_score": 0.3}


def test_jobs_come_from_the_events_else_from_the_form():
    assert steps.jobs_from([], {**PARAMS, "location": "/x"}) == [{**PARAMS, "location": "/x"}]
    jobs = steps.jobs_from([{"location": "runs:/a/batch", "model": "shapes"},
                            {"location": "/landing/b", "version": "3", "namespace": "", "ignored": 1}], PARAMS)
    assert jobs == [{**PARAMS, "location": "runs:/a/batch", "model_name": "shapes"},
                    {**PARAMS, "location": "/landing/b", "version": "3"}]


def test_pod_arguments_reach_mlflow_where_pods_can(monkeypatch):
    monkeypatch.setenv("DETECTOPS_BRIDGE_IP", "10.244.0.1")
    args = steps.pod_arguments({"name": "detector", "version": "4", "image": "r/d@sha256:" + "0" * 64},
                               {"uri": "runs:/abc/batch"}, tracking_uri="http://127.0.0.1:5500", min_score=0.5)
    assert args[:2] == ["predict-batch", "runs:/abc/batch"]
    assert args[args.index("--tracking-uri") + 1] == "http://10.244.0.1:5500"
    assert args[args.index("--model-version") + 1] == "4" and args[args.index("--min-score") + 1] == "0.5"
    assert args[args.index("--xcom-file") + 1] == "/airflow/xcom/return.json"


def test_a_location_outside_the_landing_roots_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(DataValidationError, match="outside the allowed roots"):
        steps.resolve_input(str(outside), tracking_uri="http://127.0.0.1:1", allow_roots=[str(tmp_path / "landing")])
    with pytest.raises(DataValidationError, match="No images to score"):
        steps.resolve_input("", tracking_uri="http://127.0.0.1:1")


def test_scored_extra_sums_the_runs():
    pods = [{"image": "img@sha256:1"}, {"image": "img@sha256:1"}]
    results = [{"run_id": f"r{i}", "input": {"location": f"runs:/{i}/batch", "sha256": f"{i}" * 64},
                "model": {"registered_name": "detector", "registered_version": "2"},
                "images_scored": 10 + i, "images_failed": i, "detections": 5, "reused": False} for i in range(2)]
    extra = steps.scored_extra(pods, results)
    assert extra["rejected"] == []
    assert extra["images_scored"] == 21 and extra["images_failed"] == 1 and extra["detections"] == 10
    assert [r["run_id"] for r in extra["runs"]] == ["r0", "r1"] and extra["run_id"] == "r1"
    assert extra["model"] == "detector" and extra["version"] == "2" and extra["image"] == "img@sha256:1"


def test_one_bad_job_is_rejected_and_the_others_are_scored(monkeypatch):
    from detectops.errors import ServiceUnavailableError

    def resolve_job(job, **_):
        if job["location"] == "bad":
            raise DataValidationError("outside the allowed roots")
        if job["location"] == "down":
            raise ServiceUnavailableError("MLflow at http://127.0.0.1:1 is unreachable")
        return {"image": "img@sha256:1", "namespace": "ns", "arguments": ["predict-batch", f"runs:/{job['location']}/batch"]}

    monkeypatch.setattr(steps, "resolve_job", resolve_job)
    jobs = [{**PARAMS, "location": loc} for loc in ("a", "bad", "b")]
    resolved = steps.resolve_jobs(jobs, tracking_uri="x", kube_config=None)
    assert [p["arguments"][1] for p in resolved["pods"]] == ["runs:/a/batch", "runs:/b/batch"]
    assert [(r["job"]["location"], r["error"]) for r in resolved["rejected"]] == [("bad", "outside the allowed roots")]
    with pytest.raises(ServiceUnavailableError):  # transient: the task is retried, nothing is rejected
        steps.resolve_jobs([*jobs, {**PARAMS, "location": "down"}], tracking_uri="x", kube_config=None)
    with pytest.raises(DataValidationError, match="Nothing to score: bad with detector: outside the allowed roots"):
        steps.resolve_jobs([{**PARAMS, "location": "bad"}], tracking_uri="x", kube_config=None)


def test_a_pods_deterministic_failure_is_rejected_and_fails_the_run_after_publishing():
    pods = [{"image": "img@sha256:1", "arguments": ["predict-batch", f"runs:/{i}/batch"]} for i in range(2)]
    good = {"run_id": "r0", "input": {"location": "runs:/0/batch", "sha256": "0" * 64},
            "model": {"registered_name": "detector", "registered_version": "2"},
            "images_scored": 10, "images_failed": 0, "detections": 5}
    earlier = [{"job": {"location": "/elsewhere", "model_name": "detector"}, "error": "outside the allowed roots"}]
    extra = steps.scored_extra(pods, [good, {"error": "no readable images", "input": "runs:/1/batch"}], earlier)
    assert [r["run_id"] for r in extra["runs"]] == ["r0"] and extra["images_scored"] == 10
    assert [r["error"] for r in extra["rejected"]] == ["outside the allowed roots", "no readable images"]
    with pytest.raises(DataValidationError, match=r"2 of 3 batch\(es\) were not scored.*runs:/1/batch.*no readable images"):
        steps.check_rejected(extra)
    steps.check_rejected(steps.scored_extra(pods[:1], [good]))  # nothing rejected: the run succeeds


def test_the_model_version_and_its_image_and_a_landed_directory_published(mlflow_server, tmp_path):
    from detectops.evaluate import evaluate_model, log_evaluation
    from detectops.registry import record_image, register_model, set_alias
    from tests.support.fixtures import make_tiny_eval_case
    from tests.unit.test_batch_scoring import write_images

    name = f"batch-steps-{uuid.uuid4().hex[:6]}"
    model_dir, dataset_dir = make_tiny_eval_case(tmp_path)
    result = evaluate_model(model_dir, dataset_dir, output_dir=tmp_path / "report")
    run_id = log_evaluation(result, experiment="test-batch-steps")
    ref = register_model(result.model, run_id, name)
    with pytest.raises(DetectOpsError, match="does not exist"):
        steps.resolve_model(name, alias="champion", version=None, tracking_uri=mlflow_server)
    set_alias(name, "champion", ref.version)
    with pytest.raises(DetectOpsError, match="no serving image"):
        steps.resolve_model(name, alias="champion", version=None, tracking_uri=mlflow_server)
    digest = "sha256:" + "ab" * 32
    record_image(name, ref.version, {"repository": "127.0.0.1:5000/detectops/detector", "tag": "v1", "digest": digest})
    assert steps.resolve_model(name, alias="champion", version=None, tracking_uri=mlflow_server) == {
        "name": name, "version": ref.version, "image": f"127.0.0.1:5000/detectops/detector@{digest}"}
    with pytest.raises(DetectOpsError, match="not registered"):
        steps.resolve_model(name, alias=None, version="999", tracking_uri=mlflow_server)

    landing = tmp_path / "landing"
    write_images(landing / "b1", 4)
    stored = steps.resolve_input(str(landing / "b1"), tracking_uri=mlflow_server, allow_roots=[str(landing)])
    assert stored["uri"].startswith("runs:/") and stored["location"] == str(landing / "b1")
    again = steps.resolve_input(stored["uri"], tracking_uri=mlflow_server, allow_roots=[str(landing), "runs:/"])
    assert again["uri"] == stored["uri"] and again["sha256"] == stored["sha256"]
