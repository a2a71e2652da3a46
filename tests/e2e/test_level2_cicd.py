"""Level 2 end to end: a commit is tested, built, staged, released as a canary and promoted or rolled back.

The same live Airflow, MLflow, registry, cluster and Prometheus as level 1
(tests/e2e/test_level1_training.py leaves its production model serving; if it does not, the
module fixture lands a batch and level 1 deploys one). Each run is started the way CI starts
it: ``scripts/ci/trigger_level2.py`` against the live REST API, for a commit of a local bare
clone of this repository. While a run goes, a client sends photos through the production
Service's NodePort on 127.0.0.1 and counts every failed request.

1. **A good commit** (a harmless change), with ``require_approval``: tests pass in a pod, level 1
   stages it, the canary passes its analysis, the run waits at ``approval`` until this test
   approves it through the REST API, then stable takes the canary's image, ``champion`` moves
   and level 1's pipeline image switches to the commit's. No client request fails.
2. **A bad commit** on a throwaway branch: every model request sleeps 0.4 s. Its tests and
   staging pass (slow is not wrong), but the canary's p99 fails the analysis: it is rolled
   back automatically, with no failed request; ``champion`` and the pipeline image stay.
3. **Failing tests:** a commit that breaks a unit test stops at ``check_tests``; nothing is
   staged (no level-1 run) and nothing deployed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_level1_training import Level1, _batch, _mlflow, _token
from tests.support.scratch_repo import GOOD_EDIT, SLOW_EDIT, ScratchRepo
from tests.support.live_airflow import LEVEL1_TEST_DEFAULTS, LEVEL2_TEST_DEFAULTS, LiveAirflow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "detectops_level2_cicd"
LEVEL1 = "detectops_level1_training"
MONITORING = "detectops_monitoring"
MODEL = LEVEL2_TEST_DEFAULTS["model_name"]
NAMESPACE = LEVEL2_TEST_DEFAULTS["namespace"]
DEPLOYMENT = LEVEL2_TEST_DEFAULTS["deployment"]
RUN_TIMEOUT_S = 20 * 60
PHOTO = REPO / "include" / "detectops" / "deploy" / "data" / "astronaut.jpg"


class Level2(Level1):
    def trigger_from_ci(self, sha: str, ref: str, repo: Path, *extra: str) -> str:
        """Run the CI workflow's trigger step (the same script) against the live REST API."""
        env = {**os.environ, "DETECTOPS_AIRFLOW_URL": self.live.base_url,
               "DETECTOPS_AIRFLOW_USERNAME": self.live.username, "DETECTOPS_AIRFLOW_PASSWORD": self.live.password}
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "ci" / "trigger_level2.py"), "--sha", sha,
                               "--ref", ref, "--repo", str(repo), *extra], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        pairs = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        print(f"triggered {pairs}")
        return pairs["dag_run_id"]

    def approve(self, run_id: str, option: str = "Approve") -> dict:
        r = httpx.patch(f"{self.live.base_url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approval/-1/hitlDetails",
                        json={"chosen_options": [option], "params_input": {}},
                        headers={"Authorization": f"Bearer {_token(self.live)}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def variable(self, key: str) -> str | None:
        r = httpx.get(f"{self.live.base_url}/api/v2/variables/{key}",
                      headers={"Authorization": f"Bearer {_token(self.live)}"}, timeout=30)
        return r.json()["value"] if r.status_code == 200 else None


class Traffic:
    """Photos through the production Service's NodePort for the whole run: every failed request counts."""

    def __init__(self, kube) -> None:
        from detectops.deploy.loadgen import LoadGenerator, detect_request, nodeport_url

        self.generator = LoadGenerator(nodeport_url(kube, NAMESPACE, DEPLOYMENT), **detect_request(PHOTO.read_bytes()),
                                       rate_per_s=2.0, concurrency=1, max_requests=5000, max_seconds=RUN_TIMEOUT_S)

    def __enter__(self) -> Traffic:
        self.generator.start()
        return self

    def __exit__(self, *exc) -> None:
        self.generator.stop()
        self.generator.wait()
        self.result = self.generator.result()
        print(f"traffic during the run: {self.result.to_dict()}")


def _alias(client, alias: str) -> str | None:
    try:
        return client.get_model_version_by_alias(MODEL, alias).version
    except Exception:
        return None


def _champion_has_the_newest_data(client) -> bool:
    from detectops.continuous.steps import LATEST_VERSION_SHA_TAG

    newest = client.get_registered_model(MODEL).tags.get(LATEST_VERSION_SHA_TAG)
    return client.get_model_version_by_alias(MODEL, "champion").tags.get("dataset_sha256") == newest


def _deployment(kube, name: str):
    from kubernetes.client.rest import ApiException

    try:
        return kube.apps.read_namespaced_deployment(name, NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.fixture(scope="module")
def level2(live_airflow: LiveAirflow, mlflow_server: str, tmp_path_factory):
    from detectops.deploy import connect
    from tests.integration.test_image import infra_env

    kube = connect(infra_env()["KUBECONFIG"])
    api = Level2(live_airflow, mlflow_server, kube)
    # A quiet production: nothing but these releases may change the model meanwhile. Monitoring
    # stops emitting drift events, and the events queued for level 1 while it was paused (the
    # level-1 module's leftovers) are dropped, or unpausing it would retrain and promote mid-release.
    api.wait_parsed(MONITORING)
    api.dags.patch_dag(MONITORING, api.af.DAGPatchBody(is_paused=True))
    for dag_id in (LEVEL1, DAG_ID):
        api.wait_parsed(dag_id)
    try:
        api.assets.delete_dag_asset_queued_events(LEVEL1)
    except api.af.exceptions.NotFoundException:
        pass  # none queued
    for dag_id in (LEVEL1, DAG_ID):
        assert api.dags.patch_dag(dag_id, api.af.DAGPatchBody(is_paused=False)).is_paused is False
    time.sleep(15)  # unpausing may start the cron's latest tick; let such a run finish first
    for run in api.runs.get_dag_runs(LEVEL1, limit=100).dag_runs:
        if run.state.value in ("queued", "running"):
            api.wait_done(run.dag_run_id, dag_id=LEVEL1)
    if _deployment(kube, DEPLOYMENT) is None or _alias(_mlflow(mlflow_server), "champion") is None:
        # Run alone: level 1 puts a champion in production first (a canary needs a stable track).
        from detectops.data.landing import drop_batch

        before = api.run_ids(LEVEL1)
        drop_batch(_batch(tmp_path_factory.mktemp("batches"), "first", seed=11, num_images=240), api.landing)
        run = api.wait_new_run(before, dag_id=LEVEL1, run_type="asset_triggered", timeout=300)
        api.assert_success(api.wait_done(run.dag_run_id, dag_id=LEVEL1), run.dag_run_id, dag_id=LEVEL1)
    elif not _champion_has_the_newest_data(_mlflow(mlflow_server)):
        # After level 1's rollback scenario the champion was trained on older data than the newest
        # dataset version: the cron's next tick would retrain and promote in the middle of a release.
        # Level 1 catches up first, as that tick would.
        run_id = api.trigger({}, dag_id=LEVEL1)
        api.assert_success(api.wait_done(run_id, dag_id=LEVEL1), run_id, dag_id=LEVEL1)
        assert _champion_has_the_newest_data(_mlflow(mlflow_server)), "level 1 did not promote a model of the newest data"
    api.repo = ScratchRepo(tmp_path_factory.mktemp("git"))
    yield api
    for dag_id in (LEVEL1, DAG_ID):
        api.dags.patch_dag(dag_id, api.af.DAGPatchBody(is_paused=True))


def _run(level2: Level2, sha: str, branch: str, *extra: str, on_poll=None):
    run_id = level2.trigger_from_ci(sha, f"refs/heads/{branch}", level2.repo.bare, *extra)
    done = level2.wait_done(run_id, dag_id=DAG_ID, timeout=RUN_TIMEOUT_S, on_poll=on_poll)
    level2.print_timings(done, dag_id=DAG_ID)
    print(f"note of {run_id}:\n{level2.note(run_id, dag_id=DAG_ID)}")
    return run_id, done


#: A person answers the approval this long after it asks (see ``approve_when_asked``).
APPROVAL_AFTER_S = 15


def test_1_a_good_commit_is_tested_staged_canaried_approved_and_promoted(level2: Level2):
    from detectops.cicd.release import PIPELINE_IMAGE_VARIABLE, PREVIOUS_PIPELINE_IMAGE_VARIABLE

    mlflow = _mlflow(level2.mlflow_uri)
    champion_before = _alias(mlflow, "champion")
    pipeline_before = level2.variable(PIPELINE_IMAGE_VARIABLE)
    sha = level2.repo.commit("main", "Say what the serving image holds", GOOD_EDIT)
    approved, waiting_since = {}, {}

    def approve_when_asked(progress: dict) -> None:
        """Approve each try of ``approval`` that waits for a person, as a person would: not within
        the first seconds. Airflow 3 fails a deferred task whose trigger fires before the scheduler
        has processed the deferring worker's exit (apache/airflow#72716), and retries it: the
        retried try asks again, and is approved again."""
        if progress.get("approval") != "awaiting_input":
            return
        try_number = level2.tis.get_task_instance(DAG_ID, run_id_box[0], "approval").try_number
        first_seen = waiting_since.setdefault(try_number, time.monotonic())
        if try_number in approved.get("tries", ()) or time.monotonic() - first_seen < APPROVAL_AFTER_S:
            return
        answer = level2.approve(run_id_box[0])
        approved.update(answer, tries=[*approved.get("tries", []), try_number])
        print(f"approved try {try_number} through the REST API: {answer}")

    run_id_box = []
    with Traffic(level2.kube) as traffic:
        run_id = level2.trigger_from_ci(sha, "refs/heads/main", level2.repo.bare, "--require-approval")
        run_id_box.append(run_id)
        done = level2.wait_done(run_id, dag_id=DAG_ID, timeout=RUN_TIMEOUT_S, on_poll=approve_when_asked)
    level2.print_timings(done, dag_id=DAG_ID)
    print(f"note:\n{level2.note(run_id, dag_id=DAG_ID)}")
    level2.assert_success(done, run_id, dag_id=DAG_ID)
    assert approved and approved["chosen_options"] == ["Approve"]

    images = level2.xcom(run_id, "build", dag_id=DAG_ID)
    staged = level2.xcom(run_id, "staged_version", dag_id=DAG_ID)
    decision = level2.xcom(run_id, "analyse", dag_id=DAG_ID)
    assert images["pipeline_image"].split("@")[0].endswith("detectops/pipeline") and images["sha"] == sha
    assert decision["decision"] == "promote" and decision["passed"] >= LEVEL2_TEST_DEFAULTS["windows"]
    # champion moved to the staged version, which serves as the stable track; the canary is gone
    assert _alias(mlflow, "champion") == staged["model_version"] != champion_before
    assert _alias(mlflow, "previous") == champion_before
    stable = _deployment(level2.kube, DEPLOYMENT)
    assert stable.spec.template.spec.containers[0].image == staged["image"]
    assert _deployment(level2.kube, f"{DEPLOYMENT}-canary") is None
    # the serving image was built on the commit's pipeline image (its code is the commit's)
    tags = mlflow.get_model_version(MODEL, staged["model_version"]).tags
    assert tags["pipeline_image"] == images["pipeline_image"]
    # level 1's pipeline image switched, the previous value kept
    assert level2.variable(PIPELINE_IMAGE_VARIABLE) == images["pipeline_image"]
    assert (level2.variable(PREVIOUS_PIPELINE_IMAGE_VARIABLE) or None) == pipeline_before
    # the release is in MLflow with its outcome and the analysis
    release = mlflow.search_runs([mlflow.get_experiment_by_name("detectops-releases").experiment_id],
                                 filter_string=f"tags.`detectops.level2_run` = '{DAG_ID}/{run_id}'")[0]
    assert release.data.tags["outcome"] == "promoted" and release.data.params["commit_sha"] == sha
    # no client request failed, through the canary's start, the analysis and the promotion
    assert traffic.result.sent > 50 and traffic.result.failed == 0, traffic.result.first_failures
    assert staged["model_version"] in traffic.result.answered_by  # the new version answered clients


def test_2_a_commit_that_slows_the_service_is_rolled_back_by_the_canary_analysis(level2: Level2):
    from detectops.cicd.release import PIPELINE_IMAGE_VARIABLE

    mlflow = _mlflow(level2.mlflow_uri)
    champion_before, pipeline_before = _alias(mlflow, "champion"), level2.variable(PIPELINE_IMAGE_VARIABLE)
    sha = level2.repo.commit("bad-latency", "Regression: every model request waits 0.4 s", SLOW_EDIT)
    with Traffic(level2.kube) as traffic:
        run_id, done = _run(level2, sha, "bad-latency")
    assert done.state.value == "failed"  # not released
    states = level2.states(run_id, DAG_ID)
    assert states["check_tests"] == "success" and states["staging"] == "success"
    assert states["promote"] == "skipped" and states["roll_back"] == "success"
    decision = level2.xcom(run_id, "analyse", dag_id=DAG_ID)
    assert decision["decision"] == "rollback" and decision["failed"] >= LEVEL2_TEST_DEFAULTS["max_failed_windows"]
    assert "p99" in decision["reason"]
    staged = level2.xcom(run_id, "staged_version", dag_id=DAG_ID)
    assert "rolled back" in level2.note(run_id, dag_id=DAG_ID)
    # nothing changed in production; the version says why it was refused
    assert _alias(mlflow, "champion") == champion_before and level2.variable(PIPELINE_IMAGE_VARIABLE) == pipeline_before
    assert _deployment(level2.kube, f"{DEPLOYMENT}-canary") is None
    tags = mlflow.get_model_version(MODEL, staged["model_version"]).tags
    assert tags.get("rejected_stage") == "canary" and "p99" in tags.get("rejected_reason", "")
    assert traffic.result.sent > 50 and traffic.result.failed == 0, traffic.result.first_failures


def test_3_a_commit_whose_tests_fail_stops_at_the_tests(level2: Level2):
    sha = level2.repo.commit("broken-tests", "Break a unit test", {
        "tests/unit/test_cicd_steps.py": ('assert steps.staging_run_id("manual__2026") == "staging__manual__2026"',
                                          'assert steps.staging_run_id("manual__2026") == "broken"')})
    level1_runs = level2.run_ids(LEVEL1)
    run_id, done = _run(level2, sha, "broken-tests")
    assert done.state.value == "failed"
    states = level2.states(run_id, DAG_ID)
    assert states["tests"] == "success" and states["check_tests"] == "failed"
    assert states["staging"] == "upstream_failed" and states["start_canary"] == "upstream_failed"
    assert not {r for r in level2.run_ids(LEVEL1) - level1_runs if r.startswith("staging__")}
    note = level2.note(run_id, dag_id=DAG_ID)
    assert "tests failed" in note and sha[:12] in note
    assert level2.xcom(run_id, "tests", dag_id=DAG_ID)["summary"].startswith("1 failed")  # pytest's own verdict
