"""Level 2's own logic, without Airflow or a cluster: the staging conf, the test pod's verdict, the
route after the analysis, the pipeline-image switch, and the outcome a run reports."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from detectops.cicd import notes, release, steps
from detectops.cicd.notes import STAGES
from detectops.cicd.params import THRESHOLD_PARAMS, level2_params
from detectops.errors import BuildError, DeployError, DetectOpsError


class FakeParam:
    def __init__(self, value, **schema):
        self.value, self.schema = value, schema


PARAMS = {name: p.value for name, p in level2_params(FakeParam).items()}
IMAGES = {"pipeline_image": "127.0.0.1:5000/detectops/pipeline@sha256:" + "a" * 64,
          "test_image": "127.0.0.1:5000/detectops/pipeline-test@sha256:" + "b" * 64}


def test_the_staging_conf_names_only_level1_params_and_stages_with_its_own_alias():
    from detectops.continuous.params import level1_params

    conf = steps.staging_conf(PARAMS, IMAGES)
    assert set(conf) <= set(level1_params(FakeParam)), set(conf) - set(level1_params(FakeParam))
    assert conf["pipeline_image"] == IMAGES["pipeline_image"]
    assert conf["namespace"] == "detectops-staging" != PARAMS["namespace"]
    # compared with the champion, but only `staging` moves; no landed batch is taken from production
    assert (conf["champion_alias"], conf["promote_alias"]) == ("champion", "staging")
    assert conf["ingest_new_batches"] is False and conf["retrain_unchanged"] is True
    assert conf["map_margin"] <= 0


def test_every_canary_threshold_is_a_param_and_the_defaults_are_valid_thresholds():
    from detectops.monitoring.canary_analysis import CanaryThresholds

    from detectops.cicd.params import thresholds_of

    assert set(THRESHOLD_PARAMS) == set(CanaryThresholds().to_dict())
    CanaryThresholds.from_dict(thresholds_of(PARAMS))  # raises on an invalid combination


@pytest.mark.parametrize("sha", ["", "main", "abc123", "g" * 40, "a" * 39])
def test_a_commit_that_is_not_a_full_sha_is_refused_before_any_fetch(sha, tmp_path):
    with pytest.raises(BuildError, match="full 40-hex"):
        steps.checkout({"commit_sha": sha, "repo": str(tmp_path)}, work_root=tmp_path)


def test_the_test_pod_reports_pytests_verdict_as_xcom_and_exits_zero(tmp_path):
    """The pod's real shell line, run here against a suite with one failing test."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_ok():\n    assert 1\n\ndef test_broken():\n    assert 0\n")
    import unittest.mock as mock

    with mock.patch("detectops.deploy.kube.connect"), mock.patch("detectops.deploy.kube.apply"):
        planned = steps.test_plan(IMAGES, {"test_args": "-q -p no:cacheprovider tests"}, kube_config=None)
    assert planned["image"] == IMAGES["test_image"]
    xcom = tmp_path / "xcom"
    command = planned["command"].replace("/airflow/xcom", str(xcom)).replace("python -m", f"{sys.executable} -m")
    done = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "test_broken" in done.stdout  # the log streams pytest's output
    result = json.loads((xcom / "return.json").read_text())
    assert result["exit_code"] == 1 and result["summary"].startswith("1 failed, 1 passed")
    with pytest.raises(DetectOpsError, match="1 failed, 1 passed"):
        steps.check_tests(result)
    assert steps.check_tests({"exit_code": 0, "summary": "2 passed"})["exit_code"] == 0
    with pytest.raises(DetectOpsError, match="no result"):
        steps.check_tests(None)


@pytest.mark.parametrize(("decision", "approval", "expected"), [
    ("promote", True, "approval"), ("promote", False, "promote"), ("rollback", True, None), ("rollback", False, None)])
def test_route_after_the_analysis(decision, approval, expected):
    assert steps.route({"decision": decision, "reason": "r"}, {"require_approval": approval}) == expected


class Variables:
    store: dict = {}

    @classmethod
    def get(cls, key, default=None):
        return cls.store.get(key, default)

    @classmethod
    def set(cls, key, value):
        cls.store[key] = value


def test_the_pipeline_image_switch_keeps_the_previous_value_and_is_idempotent():
    Variables.store = {}
    first = release.switch_pipeline_image("img@sha256:1", variables=Variables)
    assert first == {"changed": True, "current": "img@sha256:1", "previous": None}
    second = release.switch_pipeline_image("img@sha256:2", variables=Variables)
    assert second["previous"] == "img@sha256:1"
    assert Variables.store == {release.PIPELINE_IMAGE_VARIABLE: "img@sha256:2",
                               release.PREVIOUS_PIPELINE_IMAGE_VARIABLE: "img@sha256:1"}
    again = release.switch_pipeline_image("img@sha256:2", variables=Variables)  # a retried promote
    assert again["changed"] is False and Variables.store[release.PREVIOUS_PIPELINE_IMAGE_VARIABLE] == "img@sha256:1"


def _deployment(annotations, replicas=2, track="stable"):
    return SimpleNamespace(metadata=SimpleNamespace(annotations=annotations, labels={"detectops.io/track": track}),
                           spec=SimpleNamespace(replicas=replicas))


def test_the_stable_spec_is_read_from_the_serving_deployment_and_a_missing_one_says_what_to_do():
    from kubernetes.client.rest import ApiException

    image = "127.0.0.1:5000/detectops/detector@sha256:" + "c" * 64
    notes_ = {"detectops.io/model-name": "shapes-detector", "detectops.io/model-version": "4", "detectops.io/image": image}
    kube = SimpleNamespace(apps=SimpleNamespace(read_namespaced_deployment=lambda name, ns: _deployment(notes_)))
    spec = steps.stable_spec(PARAMS, kube=kube)
    assert (spec["model_version"], spec["image"], spec["replicas"], spec["track"]) == ("4", image, 2, "stable")

    def missing(name, ns):
        raise ApiException(status=404)

    # a Deployment that records its spec gives it back exactly (score threshold, env, resources)
    from detectops.deploy.manifests import serving_manifests
    from detectops.deploy.spec import DeploySpec

    deployed = DeploySpec(model_name="shapes-detector", model_version="6", image=image, namespace=PARAMS["namespace"],
                          deployment=PARAMS["deployment"], score_threshold=0.45, env={"DETECTOPS_X": "1"},
                          min_detections=0)
    dep, _ = serving_manifests(deployed)
    kube = SimpleNamespace(apps=SimpleNamespace(read_namespaced_deployment=lambda name, ns: _deployment(
        {**notes_, **dep["metadata"]["annotations"]}, replicas=3)))
    assert steps.stable_spec(PARAMS, kube=kube) == deployed.with_changes(replicas=3).to_dict()

    with pytest.raises(DeployError, match="Deploy it first"):
        steps.stable_spec(PARAMS, kube=SimpleNamespace(apps=SimpleNamespace(read_namespaced_deployment=missing)))


def test_the_outcome_names_the_first_failed_stage_or_what_the_release_did():
    assert notes.outcome_of({}, {"promote": {"model_version": "3"}}, STAGES)[0] == "promoted"
    assert notes.outcome_of({}, {"roll_back": {"reason": "canary analysis: 2 failed windows"}}, STAGES) == (
        "rolled back", "canary analysis: 2 failed windows")
    states = {"checkout": "success", "build": "success", "tests": "success", "check_tests": "failed",
              "staging": "upstream_failed", "canary_plan": "upstream_failed"}
    assert notes.outcome_of(states, {}, STAGES)[0] == "tests failed"
    assert notes.outcome_of({"build": "failed", "tests": "upstream_failed"}, {}, STAGES)[0] == "build failed"


def test_the_note_links_images_runs_and_the_analysis():
    results = {
        "checkout": {"sha": "f" * 40, "subject": "Faster decode"}, "build": IMAGES,
        "staged_version": {"model_name": "m", "model_version": "5", "image": "img@sha256:5", "staging_run": "staging__x",
                           "training_run_id": "t1", "evaluation_run_id": "e1"},
        "canary_plan": {"model_name": "m", "model_version": "5", "canary": {"replicas": 1, "image": "img@sha256:5"},
                        "stable": {"model_version": "4", "replicas": 1}},
        "analyse": {"decision": "promote", "reason": "2 passing", "seconds": 41, "passed": 2, "failed": 0,
                    "no_verdict": 0, "load": {"sent": 240, "failed": 0}},
        "promote": {"model_version": "5", "previous_version": "4",
                    "pipeline_image": {"current": IMAGES["pipeline_image"], "previous": None}},
    }
    note = notes.run_note("promoted", "the canary passed", PARAMS, results, release_url="http://mlflow/#/x")
    for text in ("ffffffffffff", "pipeline@sha256:aaaaaaaaaaaa", "pipeline-test@sha256:bbbbbbbbbbbb", "staging__x",
                 "promote", "240 requests, 0 failed", "champion v4 → v5", "http://mlflow/#/x"):
        assert text in note, text
    assert len(note) < 1000  # what Airflow keeps


def test_report_fails_a_run_that_did_not_release(monkeypatch):
    monkeypatch.setattr(release, "release_run", lambda *a, **k: ("1", "r"))
    monkeypatch.setattr(release, "record", lambda *a, **k: None)
    import detectops.airflow_api as api

    notes_set = []
    monkeypatch.setattr(api, "from_connection", lambda: SimpleNamespace(set_run_note=lambda *a: notes_set.append(a)))
    with pytest.raises(DetectOpsError, match="not released: tests failed"):
        notes.report("d", "r1", {**PARAMS, "commit_sha": "f" * 40}, states={"check_tests": "failed"}, results={},
                     stages=STAGES, tracking_uri="http://mlflow")
    assert notes_set and "tests failed" in notes_set[0][2]
    done = notes.report("d", "r2", PARAMS, states={}, results={"promote": {"model_version": "5", "previous_version": "4"}},
                        stages=STAGES, tracking_uri="http://mlflow")
    assert done["outcome"] == "promoted"


def test_approval_body_shows_the_windows():
    decision = {"decision": "promote", "reason": "2 passing", "windows": [
        {"index": 0, "verdict": "pass", "stable": {"requests": 40, "p99_s": 0.05},
         "canary": {"requests": 38, "p99_s": 0.06, "success_rate": 1.0}}]}
    plan = {"model_name": "m", "model_version": "5", "canary": {"image": "img"}, "stable": {"model_version": "4"}}
    body = steps.approval_body(plan, decision, {"sha": "a" * 40, "subject": "s"})
    assert "| 0 | pass | 40 / 38 | 0.05 / 0.06 | 1.0 |" in body and "v5" in body


def test_level2_params_overrides_must_name_known_params(monkeypatch):
    monkeypatch.setenv("DETECTOPS_LEVEL2_DEFAULTS", json.dumps({"window_s": 10}))
    assert level2_params(FakeParam)["window_s"].value == 10
    monkeypatch.setenv("DETECTOPS_LEVEL2_DEFAULTS", json.dumps({"windw_s": 10}))
    with pytest.raises(ValueError, match="windw_s"):
        level2_params(FakeParam)


def test_staging_run_ids_are_one_per_level2_run():
    assert steps.staging_run_id("manual__2026") == "staging__manual__2026"


def test_a_note_longer_than_airflow_keeps_is_cut_not_refused(monkeypatch):
    from detectops.airflow_api import NOTE_LIMIT, AirflowApi

    sent = []
    api = AirflowApi("http://127.0.0.1:1", "u", "p")
    monkeypatch.setattr(api, "call", lambda method, path, **kw: sent.append((method, path, kw["json"]["note"])))
    api.set_run_note("d", "manual__1", "x" * 5000)
    api.set_run_note("d", "manual__2", "short")
    assert len(sent[0][2]) == NOTE_LIMIT and sent[0][2].endswith(" …")
    assert sent[1] == ("PATCH", "dags/d/dagRuns/manual__2", "short")
