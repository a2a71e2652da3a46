"""Evaluate -> log -> register -> alias -> load back, against a real MLflow server (tests/support/services.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "tiny-detector"


@pytest.fixture(scope="module")
def logged(mlflow_server, tmp_path_factory):
    """The tiny detector evaluated and logged once for the module: ``(result, run_id, tmp)``."""
    from detectops.evaluate import evaluate_model, log_evaluation
    from tests.support.fixtures import make_tiny_eval_case

    tmp = tmp_path_factory.mktemp("registry")
    model_dir, dataset_dir = make_tiny_eval_case(tmp)
    result = evaluate_model(model_dir, dataset_dir, output_dir=tmp / "report")
    report = tmp / "validation.json"
    report.write_text('{"success": true}')
    run_id = log_evaluation(
        result, experiment="test-evaluation", dag_run_id="manual__test", extra_artifacts={"data_validation": [report]},
    )
    return result, run_id, tmp


def test_evaluation_run_has_params_metrics_artifacts_and_tags(logged):
    from mlflow import MlflowClient

    result, run_id, _ = logged
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset_sha256"] == result.dataset["sha256"]
    assert run.data.params["score_threshold"] == "0.0" and run.data.params["code_version"]
    assert run.data.metrics["AP"] == pytest.approx(result.metrics["AP"])
    assert run.data.metrics["ap_class/dog"] == pytest.approx(51 / 101)
    assert "ap_class/cup" not in run.data.metrics  # no ground truth: not logged as 0
    assert run.data.metrics["latency_p95_ms"] == pytest.approx(result.latency["p95_ms"])
    assert run.data.tags["dag_run_id"] == "manual__test"
    files = {f.path for f in MlflowClient().list_artifacts(run_id, "evaluation")}
    assert {"evaluation/per_class_ap.csv", "evaluation/pr_curves.png", "evaluation/samples.png",
            "evaluation/coco_results.json"} <= files
    assert [f.path for f in MlflowClient().list_artifacts(run_id, "data_validation")] == ["data_validation/validation.json"]


def test_logging_the_same_evaluation_again_returns_the_same_run(logged):
    from detectops.evaluate import log_evaluation

    result, run_id, _ = logged
    assert log_evaluation(result, experiment="test-evaluation", dag_run_id="manual__test") == run_id
    assert log_evaluation(result, experiment="test-evaluation", dag_run_id="manual__other") != run_id


def test_register_alias_reregister_and_load_back(logged, tmp_path):
    import mlflow

    from detectops.models import Detector
    from detectops.registry import (
        CHAMPION, download_saved_model, get_alias, get_version_tags, record_image, register_model, set_alias, set_version_tag,
    )

    result, run_id, _ = logged
    ref = register_model(result.model, run_id, NAME, dataset=result.dataset, dag_run_id="manual__test")
    assert ref.model_uri == f"models:/{NAME}/{ref.version}"
    tags = get_version_tags(NAME, ref.version)
    assert tags["dataset_sha256"] == result.dataset["sha256"] and tags["dataset_name"] == "tiny_dataset"
    assert tags["dag_run_id"] == "manual__test" and tags["code_version"] and len(tags["model_sha256"]) == 64

    # Idempotent: the same SavedModel (same sha256) is the same version, even from another run.
    assert register_model(result.model, run_id, NAME) == ref

    assert get_alias(NAME, CHAMPION) is None
    set_alias(NAME, CHAMPION, ref.version)
    assert get_alias(NAME, CHAMPION) == ref
    digest = "sha256:" + "0" * 64
    record_image(NAME, ref.version, {"repository": "127.0.0.1:5000/detectops/detector", "tag": "v1", "digest": digest})
    set_version_tag(NAME, ref.version, "smoke_test", "passed")
    tags = get_version_tags(NAME, ref.version)
    assert tags["image_digest"] == digest and tags["image"] == f"127.0.0.1:5000/detectops/detector@{digest}"
    assert tags["smoke_test"] == "passed"

    saved_model = download_saved_model(f"models:/{NAME}@{CHAMPION}", tmp_path / "download")
    assert (saved_model / "saved_model.pb").is_file()
    image = np.zeros((100, 200, 3), np.uint8)
    original = Detector.load(result.model["path"]).predict(image)
    downloaded = Detector.load(saved_model).predict(image)
    np.testing.assert_allclose(downloaded.boxes, original.boxes)
    assert downloaded.classes.tolist() == original.classes.tolist() == [1, 18]

    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}")
    (out,) = pyfunc.predict(image)
    assert out["classes"] == [1, 18] and out["scores"] == [pytest.approx(0.9), pytest.approx(0.6)]


def test_two_models_from_one_run_each_keep_their_own_files(logged, tmp_path):
    """Registering a second model from the same run once gave it the first model's files."""
    from detectops.models.cache import sha256_dir
    from detectops.registry import download_saved_model, get_version_tags, register_model
    from tests.support.tiny_detector import make_tiny_detector

    result, run_id, tmp = logged
    other = make_tiny_detector(tmp / "other_model", scores=(0.8, 0.5))
    first = register_model(result.model, run_id, NAME)
    second = register_model({"path": str(other), "source": "test", "name": "other"}, run_id, NAME)
    assert int(second.version) == int(first.version) + 1
    # Without a dataset argument the lineage comes from the evaluation run's params.
    assert get_version_tags(NAME, second.version)["dataset_sha256"] == result.dataset["sha256"]
    assert first.run_id == second.run_id == run_id
    for ref in (first, second):
        downloaded = download_saved_model(ref.model_uri, tmp_path / f"v{ref.version}")
        assert sha256_dir(downloaded) == get_version_tags(NAME, ref.version)["model_sha256"]
    assert get_version_tags(NAME, second.version)["model_sha256"] == sha256_dir(other)


def test_promote_keeps_previous_and_rollback_returns_to_it(logged):
    """Registration moves no alias; promote does (previous keeps the last champion); rollback undoes it."""
    from detectops.errors import PromotionError
    from detectops.registry import CHAMPION, PREVIOUS, get_alias, get_version_tags, promote, register_model, rollback
    from tests.support.tiny_detector import make_tiny_detector

    result, run_id, tmp = logged
    name = "tiny-promotion"
    v1 = register_model(result.model, run_id, name)
    v2 = register_model({"path": str(make_tiny_detector(tmp / "v2", scores=(0.7, 0.4))), "source": "t", "name": "v2"},
                        run_id, name)
    assert get_alias(name, CHAMPION) is None  # registering never moves champion

    with pytest.raises(PromotionError, match="no 'previous'"):
        rollback(name)
    assert promote(name, v1.version).changed
    moved = promote(name, v2.version)
    assert (moved.version, moved.replaced) == (v2.version, v1.version)
    assert get_alias(name, CHAMPION).version == v2.version and get_alias(name, PREVIOUS).version == v1.version
    assert not promote(name, v2.version).changed  # idempotent
    assert get_alias(name, PREVIOUS).version == v1.version

    back = rollback(name, from_version=v2.version, reason="error rate 12% under load")
    assert (back.version, back.replaced, back.changed) == (v1.version, v2.version, True)
    assert get_alias(name, CHAMPION).version == v1.version
    assert get_alias(name, PREVIOUS) is None  # never the version just rolled back from
    tags = get_version_tags(name, v2.version)
    assert tags["rejected_stage"] == "rollback" and "error rate 12%" in tags["rejected_reason"]
    assert not rollback(name, from_version=v2.version).changed  # a retried rollback changes nothing


def test_registration_stores_the_reference_statistics_monitoring_compares_with(logged, mlflow_server):
    from detectops.monitoring.reference import REFERENCE_TAG, load_reference
    from detectops.pipeline import register_model
    from detectops.registry import get_version_tags

    result, run_id, tmp = logged
    evaluation = {"run_id": run_id, "detections": result.artifacts["coco_results_json"]}
    ref = register_model(result.model, {"path": str(tmp / "tiny_dataset")}, evaluation, name="tiny-reference",
                         tracking_uri=mlflow_server)
    assert get_version_tags(ref["name"], ref["version"], tracking_uri=mlflow_server)[REFERENCE_TAG] == \
        f"runs:/{run_id}/reference/features.parquet"
    frame = load_reference(ref["name"], ref["version"], tracking_uri=mlflow_server)
    assert sorted(frame["width"]) == [120.0, 200.0] and (frame["split"] == "eval").all()
    # The tiny detector finds a person (0.9) and a dog (0.6) in each image: both are above 0.3.
    assert frame["num_detections"].tolist() == [2, 2]
    assert sorted(frame.iloc[0]["classes"]) == [1, 18]
