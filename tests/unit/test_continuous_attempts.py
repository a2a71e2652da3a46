"""A run that would only repeat a candidate the gate rejected is recognised, and nothing else is."""

from __future__ import annotations

import json

import pytest

from detectops.continuous import attempts
from detectops.continuous.attempts import JUDGED_AGAINST_TAG, PIPELINE_PIN_TAG, RECIPE_TAG

PARAMS = {"train_config": {"preset": "demo", "epochs": 8}, "warm_start": True, "label_map": {"1": "circle"},
          "eval_max_images": 400, "map_margin": 0.0, "namespace": "detectops", "model_name": "shapes"}


def _identity(params=PARAMS, **kw):
    args = {"dataset_sha256": "d" * 64, "params": params, "champion_version": "3", "pipeline_image": None,
            "code_version": "abc123"} | kw
    return attempts.identity(**args)


def _rejected(attempt, stage="gate", **extra):
    return {**attempt, "rejected": "true", "rejected_stage": stage, "rejected_reason": "AP 0.41 < 0.44", **extra}


def test_the_recipe_is_the_same_for_a_json_text_param_and_its_object_and_ignores_other_params():
    as_text = {**PARAMS, "train_config": json.dumps(PARAMS["train_config"]), "namespace": "elsewhere"}
    assert attempts.recipe_sha256(as_text) == attempts.recipe_sha256(PARAMS)


@pytest.mark.parametrize("change", [
    {"train_config": {"preset": "demo", "epochs": 9}},
    {"warm_start": False},
    {"label_map": {"1": "circle", "2": "square"}},
    {"eval_max_images": 200},
    {"map_margin": -0.02},          # a gate threshold: the same candidate may pass now
    {"gate_min_ap": 0.2},
])
def test_anything_that_changes_the_candidate_or_its_verdict_changes_the_recipe(change):
    assert attempts.recipe_sha256({**PARAMS, **change}) != attempts.recipe_sha256(PARAMS)


def test_an_attempt_in_a_pinned_image_is_identified_by_the_image_otherwise_by_the_code():
    built = _identity()
    pinned = _identity(pipeline_image="reg/pipeline@sha256:1")
    assert built["code_version"] == "abc123" and built[PIPELINE_PIN_TAG] == ""
    assert "code_version" not in pinned and pinned[PIPELINE_PIN_TAG] == "reg/pipeline@sha256:1"
    # A candidate trained in a pinned image does not stand for one built from this code, even
    # when the worker's code is the same.
    versions = [("4", {**_rejected(pinned), "code_version": "abc123"})]
    assert attempts.rejected_attempt(versions, built) is None


def test_only_a_gate_rejection_of_the_same_attempt_counts_and_the_newest_is_named():
    attempt = _identity()
    versions = [
        ("2", _rejected(attempt)),
        ("5", _rejected(attempt)),
        ("7", _rejected(attempt, stage="canary")),              # a rollout problem, not a training verdict
        ("8", _rejected({**attempt, JUDGED_AGAINST_TAG: "4"})),  # judged against another champion
        ("9", _rejected({**attempt, "dataset_sha256": "e" * 64})),
        ("10", {**attempt, "gate.passed": "true"}),              # passed: not rejected
    ]
    version, tags = attempts.rejected_attempt(versions, attempt)
    assert version == "5" and tags["rejected_reason"] == "AP 0.41 < 0.44"
    assert attempts.rejected_attempt(versions[2:], attempt) is None
    changed = _identity(params={**PARAMS, "train_config": {"preset": "demo", "epochs": 12}})
    assert changed[RECIPE_TAG] != attempt[RECIPE_TAG] and attempts.rejected_attempt(versions, changed) is None


def test_the_skip_says_which_version_why_and_how_to_train_anyway():
    text = attempts.skip_reason("shapes", "5", {"rejected_reason": "AP 0.41 < 0.44", "rejected_at": "2026-11-27"},
                                "d" * 64)
    assert text.startswith("nothing to retrain: v5") and "AP 0.41 < 0.44" in text and "dddddddddddd" in text
    assert "retrain_unchanged=true" in text and "new labelled data" in text


def test_a_rejected_attempt_is_found_in_a_real_registry(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    from detectops.registry import reject

    # Both URIs explicitly: MLflow's default registry URI is process-global, and earlier tests move it.
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    name = "attempts-it"
    client.create_registered_model(name)
    attempt = _identity()
    for other in ({**attempt, JUDGED_AGAINST_TAG: "2"}, attempt):
        run = client.create_run(client.create_experiment(f"attempts-{len(client.search_experiments())}"))
        client.log_text(run.info.run_id, "x", "model/MLmodel")
        mv = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id, tags=other)
    assert attempts.find_rejected_attempt(name, attempt, tracking_uri=mlflow_server) is None  # not rejected yet
    reject(name, mv.version, "AP 0.41 < champion 0.44", stage="gate", tracking_uri=mlflow_server)
    found = attempts.find_rejected_attempt(name, attempt, tracking_uri=mlflow_server)
    assert found is not None and found[0] == mv.version and found[1]["rejected_stage"] == "gate"
    assert attempts.find_rejected_attempt("no-such-model", attempt, tracking_uri=mlflow_server) is None
