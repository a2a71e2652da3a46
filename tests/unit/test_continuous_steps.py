"""Level 1's decisions that need no service: the run's outcome and note, the Params form, the deploy spec."""

from __future__ import annotations

import json

import pytest

from detectops.continuous import params as level1_params_mod
from detectops.continuous import steps

PARAMS = {"model_name": "shapes", "champion_alias": "champion", "namespace": "ns", "deployment": "shapes",
          "replicas": 1, "score_threshold": 0.3, "label_map": {"2": "square", "1": "circle"}}
PAIR = {"pair": {"candidate": {"metrics": {"AP": 0.61, "AP50": 0.9}}, "champion": {"metrics": {"AP": 0.55, "AP50": 0.85}}},
        "run_id": "r1"}


def test_nothing_to_retrain_is_an_outcome_not_a_failure():
    outcome, note = steps.run_note(PARAMS, version={"retrain": False, "why": "nothing to retrain: same data"})
    assert outcome == "nothing to retrain"
    assert "same data" in note and outcome not in steps.FAILED_OUTCOMES


def test_a_gate_refusal_is_not_promoted_with_its_reasons_and_numbers():
    verdict = {"passed": False, "reasons": ["AP 0.410 < champion 0.450 + 0.000"]}
    outcome, note = steps.run_note(PARAMS, version={"retrain": True, "why": "new data"}, evaluation=PAIR, verdict=verdict)
    assert outcome == "not promoted" and outcome not in steps.FAILED_OUTCOMES
    assert "AP 0.410 < champion 0.450" in note and "candidate AP 0.610" in note and "champion AP 0.550" in note


def test_promoted_only_when_the_promote_step_returned():
    verdict = {"passed": True, "reasons": []}
    outcome, note = steps.run_note(PARAMS, version={"retrain": True, "why": "x"}, evaluation=PAIR, verdict=verdict,
                                   deployed={"model_name": "shapes", "model_version": "7", "alias": "champion"})  # promote_version's shape
    assert outcome == "promoted" and "champion is now v7" in note
    outcome, _ = steps.run_note(PARAMS, version={"retrain": True, "why": "x"}, evaluation=PAIR, verdict=verdict, deployed=None)
    assert outcome == "deploy failed" and outcome in steps.FAILED_OUTCOMES


def test_a_step_that_failed_before_the_gate_fails_the_run():
    outcome, _ = steps.run_note(PARAMS, version={"retrain": True, "why": "x"})
    assert outcome in steps.FAILED_OUTCOMES


def test_refused_batches_and_skew_are_in_the_note():
    validated = {"refused": [{"name": "broken", "reason": "bbox outside the image"}], "skew": [{"max_distance": 0.8}],
                 "max_skew": 0.8}
    _, note = steps.run_note(PARAMS, validated=validated, version={"retrain": False, "why": "w"})
    assert "refused batch `broken`: bbox outside the image" in note and "0.800" in note


def test_the_deploy_spec_exists_only_for_a_passed_gate():
    image = {"image": "127.0.0.1:5000/detectops/detector@sha256:" + "a" * 64}
    registered = {"name": "shapes", "version": "3"}
    assert steps.deploy_spec({"passed": False}, image, registered, PARAMS) is None
    spec = steps.deploy_spec({"passed": True}, image, registered, PARAMS)
    assert spec["image"] == image["image"] and spec["model_version"] == "3" and spec["namespace"] == "ns"


def test_label_maps_compare_by_content_not_order():
    assert steps._label_map_key({2: "square", 1: "circle"}) == steps._label_map_key({1: "circle", 2: "square"})
    assert steps.label_map_of(PARAMS) == {1: "circle", 2: "square"}


def test_no_warm_start_when_the_run_asks_for_scratch(monkeypatch):
    monkeypatch.setattr(steps, "_champion", lambda *a: pytest.fail("must not look the champion up"))
    assert steps.warm_start_source("shapes", {**PARAMS, "warm_start": False}, "http://mlflow") is None


@pytest.mark.parametrize("tags, expected", [
    ({steps.TRAINER_TAG: steps.TRAINER, steps.LABEL_MAP_TAG: json.dumps({"1": "circle", "2": "square"}, sort_keys=True)},
     "models:/shapes@champion"),
    ({steps.TRAINER_TAG: "somewhere else", steps.LABEL_MAP_TAG: json.dumps({"1": "circle", "2": "square"}, sort_keys=True)},
     None),
    ({steps.TRAINER_TAG: steps.TRAINER, steps.LABEL_MAP_TAG: json.dumps({"1": "circle"})}, None),
])
def test_warm_start_only_from_a_champion_this_trainer_made_with_the_same_label_map(monkeypatch, tags, expected):
    monkeypatch.setattr(steps, "_champion", lambda *a: {"name": "shapes", "version": "4", "tags": tags})
    assert steps.warm_start_source("shapes", PARAMS, "http://mlflow") == expected


@pytest.mark.platform
def test_param_defaults_can_be_overridden_per_environment(monkeypatch):
    from airflow.sdk import Param

    monkeypatch.setenv(level1_params_mod.DEFAULTS_ENV, json.dumps({"train_config": "tiny", "min_ap": 0.01}))
    params = level1_params_mod.level1_params(Param)
    assert params["train_config"].value == "tiny" and params["min_ap"].value == 0.01
    assert params["min_ap"].schema["maximum"] == 1  # the form's checks are kept
    monkeypatch.setenv(level1_params_mod.DEFAULTS_ENV, json.dumps({"min_apx": 0.01}))
    with pytest.raises(ValueError, match="min_apx"):
        level1_params_mod.level1_params(Param)


def test_a_drift_event_without_new_data_asks_for_labelled_data_naming_the_features():
    collected = steps.collect_batches(
        [{"extra": {"model": PARAMS["model_name"], "model_version": "4", "drift_share": 0.5,
                    "drifted_features": ["images.brightness_mean", "detections.box_size"], "monitoring_run_id": "r1"}}],
        PARAMS, tracking_uri="http://127.0.0.1:9")  # no location: nothing to fetch
    assert collected["batches"] == [] and collected["drift"][0]["model_version"] == "4"
    outcome, note = steps.run_note(PARAMS, collected=collected, version={"retrain": False, "why": "unchanged"})
    assert outcome == "nothing to retrain"
    assert "new labelled data is needed" in note and "images.brightness_mean" in note and "detections.box_size" in note


def test_a_drift_event_whose_new_data_was_already_rejected_names_the_rejected_version():
    collected = {"batches": [], "drift": [{"model_version": "4", "drifted_features": ["images.brightness_mean"]}]}
    version = {"retrain": False, "repeats_rejected": "6", "why": "nothing to retrain: v6 ... rejected by the gate"}
    outcome, note = steps.run_note(PARAMS, collected=collected, version=version)
    assert outcome == "nothing to retrain" and "rejected by the gate" in note
    assert "gave v6, which the gate rejected" in note and "no batch has landed" not in note
