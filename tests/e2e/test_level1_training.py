"""Level 1 end to end: batches land, a real detector trains in a pod, the gate decides, the champion serves.

A live Airflow (tests/support/live_airflow.py: api-server, scheduler, dag-processor, triggerer)
with the session's MLflow server, the local registry and cluster as Connections, driven
through the official ``apache-airflow-client``. Its level-1 defaults train a small network for
about a minute (``LEVEL1_TEST_DEFAULTS``) and its cron fires every 4 minutes; nothing else
differs from what users run. The scenarios build on each other, in order:

1. a batch dropped into the landing area starts a run through the AssetWatcher; it trains in a
   pod, passes the gate, deploys and the champion answers through its Service's NodePort;
2. a shifted (darker, noisier, smaller objects) batch lands through ``POST /api/v2/assets/events``
   while a broken batch sits in the landing area: one run quarantines the broken one, warm-starts
   from the champion on the good one, survives the deletion of its training pod (the retry
   resumes from the checkpoint in MLflow), and the gate decides on printed numbers;
3. a candidate that must be worse (one training step from scratch) is registered, rejected with
   its reasons; the champion and production are unchanged;
4. the cron schedule fires, finds no new data and says so;
5. monitoring: traffic of another domain (brighter, noisier, other image size, smaller
   objects) is sent through the Service's NodePort; a ``detectops_monitoring`` run collects the
   pods' prediction log, finds drift against the champion's reference, reports to MLflow and
   emits the drift Asset; level 1 starts from that event and, with no new labelled data, says
   that it needs some, naming the features; a second monitoring run is held by the cooldown;
6. traffic drawn from the training distribution gives no drift verdict; the false-alarm rate
   over repeated windows of the stored records is printed;
7. a person rolls back through the REST API: ``champion`` returns to ``previous`` and that
   version's image serves.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.support.live_airflow import LEVEL1_TEST_DEFAULTS, LiveAirflow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "detectops_level1_training"
ROLLBACK_DAG_ID = "detectops_rollback"
MONITORING_DAG_ID = "detectops_monitoring"
MODEL = LEVEL1_TEST_DEFAULTS["model_name"]
NAMESPACE = LEVEL1_TEST_DEFAULTS["namespace"]
DEPLOYMENT = LEVEL1_TEST_DEFAULTS["deployment"]
#: Monitoring in the test: a 10-minute window, a verdict from 60 images on (the tests send 80-120).
MONITORING_CONF = {"window_minutes": 10, "models": [MODEL], "min_samples": 60}
RUN_TIMEOUT_S = 20 * 60


# ----------------------------------------------------------------------------- helpers


def _token(live: LiveAirflow) -> str:
    r = httpx.post(f"{live.base_url}/auth/token", json={"username": live.username, "password": live.password}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["access_token"]


class Level1:
    """The live Airflow's REST API (official client) plus the cluster and MLflow, for the scenarios."""

    def __init__(self, live: LiveAirflow, mlflow_uri: str, kube) -> None:
        import airflow_client.client as af

        self.af, self.live, self.mlflow_uri, self.kube = af, live, mlflow_uri, kube
        self.client = af.ApiClient(af.Configuration(host=live.base_url, access_token=_token(live)))
        self.dags, self.runs = af.DAGApi(self.client), af.DagRunApi(self.client)
        self.tis, self.xcoms, self.assets = af.TaskInstanceApi(self.client), af.XComApi(self.client), af.AssetApi(self.client)
        self.landing = Path(live.env["DETECTOPS_LANDING_DIR"])

    def refresh_token(self) -> None:
        self.client.configuration.access_token = _token(self.live)

    def wait_parsed(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.dags.get_dag(dag_id)
                return
            except self.af.exceptions.NotFoundException:
                if time.monotonic() > deadline:
                    pytest.fail(f"{dag_id} not parsed after {timeout:.0f} s:\n{self.live.log_tail('dag-processor')}")
                time.sleep(2)

    def run_ids(self, dag_id: str = DAG_ID) -> set[str]:
        return {r.dag_run_id for r in self.runs.get_dag_runs(dag_id, limit=100).dag_runs}

    def wait_new_run(self, before: set[str], *, dag_id: str = DAG_ID, run_type: str | None = None, timeout: float = 300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.runs.get_dag_runs(dag_id, limit=100).dag_runs:
                if r.dag_run_id not in before and (run_type is None or r.run_type.value == run_type):
                    return r
            time.sleep(3)
        pytest.fail(f"no new {run_type or ''} run of {dag_id} within {timeout:.0f} s; "
                    f"scheduler log:\n{self.live.log_tail('scheduler')}\ntriggerer log:\n{self.live.log_tail('triggerer')}")

    def states(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, str]:
        tis = self.tis.get_task_instances(dag_id, run_id).task_instances
        return {t.task_id: (t.state.value if t.state else "none") for t in tis}

    def wait_done(self, run_id: str, *, dag_id: str = DAG_ID, timeout: float = RUN_TIMEOUT_S, on_poll=None):
        started, last = time.monotonic(), None
        while True:
            self.refresh_token()
            run = self.runs.get_dag_run(dag_id, run_id)
            progress = self.states(run_id, dag_id)
            if progress != last:
                print(f"[{time.monotonic() - started:5.0f} s] {run.state.value}: "
                      + ", ".join(f"{k}={v}" for k, v in sorted(progress.items())), flush=True)
                last = progress
            if run.state.value in ("success", "failed"):
                return run
            if on_poll:
                on_poll(progress)
            if time.monotonic() - started > timeout:
                pytest.fail(f"{dag_id} run {run_id} still {run.state.value} after {timeout:.0f} s: {progress}")
            time.sleep(5)

    def print_timings(self, run, dag_id: str = DAG_ID) -> None:
        """Each task's duration and the scheduler's gaps between tasks (for docs/benchmarks.md)."""
        tis = [t for t in self.tis.get_task_instances(dag_id, run.dag_run_id).task_instances if t.start_date and t.end_date]
        tis.sort(key=lambda t: t.start_date)
        busy = sum((t.end_date - t.start_date).total_seconds() for t in tis)
        total = (max(t.end_date for t in tis) - run.queued_at).total_seconds() if run.queued_at else busy
        print(f"run {run.dag_run_id}: {total:.0f} s from queued to the last task, {busy:.0f} s inside tasks; by task: "
              + ", ".join(f"{t.task_id} {(t.end_date - t.start_date).total_seconds():.0f}s" for t in tis))

    def xcom(self, run_id: str, task_id: str, dag_id: str = DAG_ID, map_index: int = -1):
        entry = self.xcoms.get_xcom_entry(dag_id, task_id, run_id, "return_value", map_index=map_index,
                                          deserialize=True, stringify=False)
        return entry.actual_instance.value  # oneOf(native, string): native with stringify=False

    def log(self, run_id: str, task_id: str, try_number: int = 1, dag_id: str = DAG_ID) -> str:
        r = httpx.get(f"{self.live.base_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                      headers={"Authorization": f"Bearer {_token(self.live)}", "Accept": "text/plain"}, timeout=60)
        return r.text

    def wait_clear_of_cron(self, margin_s: float = 60) -> None:
        """Return once the next cron tick (every 4 minutes) is at least ``margin_s`` away and the
        latest tick's run is done: a scheduled run would otherwise ingest a batch meant to start
        an Asset-triggered run."""
        while True:  # both at once: waiting for a scheduled run can bring the next tick close
            to_next_tick = 240 - time.time() % 240
            if to_next_tick < margin_s:
                time.sleep(to_next_tick + 5)
            pending = [r for r in self.runs.get_dag_runs(DAG_ID, limit=100).dag_runs
                       if r.run_type.value == "scheduled" and r.state.value not in ("success", "failed")]
            if not pending and 240 - time.time() % 240 >= margin_s:
                return
            for r in pending:
                self.wait_done(r.dag_run_id)

    def trigger(self, conf: dict, dag_id: str = DAG_ID) -> str:
        run = self.runs.trigger_dag_run(dag_id, self.af.TriggerDAGRunPostBody(logical_date=None, conf=conf))
        return run.dag_run_id

    def assert_success(self, run, run_id: str, dag_id: str = DAG_ID) -> None:
        if run.state.value != "success":
            failed = [t for t, s in self.states(run_id, dag_id).items() if s in ("failed", "upstream_failed")]
            logs = "\n".join(f"--- {t} ---\n{self.log(run_id, t, dag_id=dag_id)[-4000:]}" for t in failed[:3])
            pytest.fail(f"{dag_id} run {run_id} ended {run.state.value}; failed: {failed}\n{logs}")

    def note(self, run_id: str, dag_id: str = DAG_ID) -> str:
        return self.runs.get_dag_run(dag_id, run_id).note or ""


def _mlflow(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _alias_version(client, alias: str) -> str | None:
    try:
        return client.get_model_version_by_alias(MODEL, alias).version
    except Exception:
        return None


def _served_image(kube) -> str:
    dep = kube.apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
    return dep.spec.template.spec.containers[0].image


def _smoke_through_nodeport(kube) -> dict:
    """A request through the Service's NodePort on loopback (the way the host reaches it)."""
    from detectops.deploy.smoke import UrlTarget, check_target

    svc = kube.core.read_namespaced_service(DEPLOYMENT, NAMESPACE)
    node_port = svc.spec.ports[0].node_port
    photo = Path(__file__).resolve().parents[2] / "include" / "detectops" / "deploy" / "data" / "astronaut.jpg"
    n, labels, latency, checks = check_target(UrlTarget(f"http://127.0.0.1:{node_port}"), photo.read_bytes(),
                                              model_name="detector", min_detections=0, expect_label=None)
    return {"node_port": node_port, "checks": checks, "latency_ms": latency}


def _send_stream(kube, batch_dir: Path, per_request: int = 4) -> int:
    """Every image of ``batch_dir`` to ``:predict`` through the Service's NodePort on loopback."""
    import base64

    svc = kube.core.read_namespaced_service(DEPLOYMENT, NAMESPACE)
    url = f"http://127.0.0.1:{svc.spec.ports[0].node_port}/v1/models/detector:predict"
    images = sorted((batch_dir / "images").iterdir())
    with httpx.Client(timeout=60) as client:
        for i in range(0, len(images), per_request):
            body = {"instances": [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in images[i:i + per_request]]}
            r = client.post(url, json=body)
            assert r.status_code == 200, r.text[:500]
    return len(images)


def _batch(tmp: Path, name: str, *, seed: int, num_images: int, **knobs) -> Path:
    from detectops.data.synthetic import SyntheticSpec, generate_synthetic

    out = tmp / name
    generate_synthetic(out, SyntheticSpec(num_images=num_images, seed=seed, **knobs))
    return out


# ----------------------------------------------------------------------------- the shared run state


@pytest.fixture(scope="module")
def level1(live_airflow: LiveAirflow, mlflow_server: str):
    from detectops.deploy import connect
    from tests.integration.test_image import infra_env

    kube = connect(infra_env()["KUBECONFIG"])
    _delete_namespace(kube)
    api = Level1(live_airflow, mlflow_server, kube)
    api.wait_parsed(DAG_ID)
    api.wait_parsed(ROLLBACK_DAG_ID)
    before = api.run_ids()
    for dag_id in (DAG_ID, ROLLBACK_DAG_ID):
        assert api.dags.patch_dag(dag_id, api.af.DAGPatchBody(is_paused=False)).is_paused is False
    # Unpausing runs the cron's latest tick at once (catchup=False); let it finish (no data yet)
    # so that it cannot take scenario 1's batch.
    first = api.wait_new_run(before, run_type="scheduled", timeout=120)
    api.assert_success(api.wait_done(first.dag_run_id), first.dag_run_id)
    yield api
    for dag_id in (DAG_ID, MONITORING_DAG_ID):  # no cron run, no drift event after the module
        api.dags.patch_dag(dag_id, api.af.DAGPatchBody(is_paused=True))
    # The model keeps serving: level 2's scenarios (tests/e2e/test_level2_cicd.py) release canaries
    # beside it. The next session's setup deletes it.


def _delete_namespace(kube) -> None:
    """The model's namespace, and its deploy Lease (a run killed mid-deploy would hold it for 30 minutes)."""
    from kubernetes.client.exceptions import ApiException

    for lease in kube.coordination.list_namespaced_lease("detectops-system").items if _has_ns(kube, "detectops-system") else []:
        if lease.metadata.name.startswith(f"deploy-{MODEL}-"):
            kube.coordination.delete_namespaced_lease(lease.metadata.name, "detectops-system")

    try:
        kube.core.delete_namespace(NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            kube.core.read_namespace(NAMESPACE)
        except ApiException:
            return
        time.sleep(2)


def _has_ns(kube, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        kube.core.read_namespace(name)
        return True
    except ApiException:
        return False


@pytest.fixture(scope="module")
def state() -> dict:
    """What one scenario leaves for the next (run ids, versions)."""
    return {}


# ----------------------------------------------------------------------------- scenarios


def test_1_a_dropped_batch_trains_in_a_pod_and_the_champion_serves(level1: Level1, tmp_path_factory, state):
    from detectops.data.landing import drop_batch

    batch = _batch(tmp_path_factory.mktemp("batches"), "first", seed=11, num_images=240)
    level1.wait_clear_of_cron()
    before = level1.run_ids()
    drop_batch(batch, level1.landing)
    run = level1.wait_new_run(before, run_type="asset_triggered", timeout=240)
    print(f"the file drop started run {run.dag_run_id} (run type {run.run_type.value})")
    done = level1.wait_done(run.dag_run_id)
    level1.assert_success(done, run.dag_run_id)
    level1.print_timings(done)

    trained = level1.xcom(run.dag_run_id, "train")
    print(f"trained in a pod: {trained['epochs']} epochs, loss {trained['final_loss']:.3f}, "
          f"val AP {trained['val_AP']:.3f} AP50 {trained['val_AP50']:.3f}, {trained['images_per_second']:.1f} images/s")
    assert trained["epochs"] >= 1 and trained["run_id"]
    verdict = level1.xcom(run.dag_run_id, "gate")
    assert verdict["passed"] is True, verdict
    report = level1.xcom(run.dag_run_id, "report")
    assert report["outcome"] == "promoted", report
    assert "promoted" in level1.note(run.dag_run_id)

    mlflow = _mlflow(level1.mlflow_uri)
    champion = _alias_version(mlflow, "champion")
    registered = level1.xcom(run.dag_run_id, "register")
    assert champion == str(registered["version"])
    lineage = mlflow.get_model_version(MODEL, champion).tags
    plan = level1.xcom(run.dag_run_id, "training_plan")
    assert lineage["pipeline_image"] == plan["image"] and "@sha256:" in lineage["pipeline_image"], lineage
    assert lineage["dataset_sha256"] == level1.xcom(run.dag_run_id, "version_dataset")["sha256"]
    assert lineage["gx.batches_accepted"] == "1" and lineage["gx.results"].startswith("runs:/"), lineage
    assert lineage["training_run_id"] == trained["run_id"] and lineage["dag_run_id"] == run.dag_run_id
    # The reference statistics monitoring compares traffic with: train and test images, test detections.
    from detectops.monitoring.reference import load_reference

    reference = load_reference(MODEL, champion, tracking_uri=level1.mlflow_uri)
    splits = reference["split"].value_counts().to_dict()
    print(f"reference statistics: {splits}, brightness p50 {reference['brightness_mean'].median():.1f}")
    assert splits.get("train", 0) > 0 and splits.get("test", 0) > 0, splits
    assert reference.loc[reference["split"] == "test", "num_detections"].notna().all()
    image = level1.xcom(run.dag_run_id, "build_image")
    assert _served_image(level1.kube) == image["image"], "production does not run the promoted image's digest"
    smoke = _smoke_through_nodeport(level1.kube)
    print(f"the champion answers through NodePort {smoke['node_port']}: {smoke['checks']}")
    state.update(first_version=champion, first_image=image["image"], champion_since=time.time())


def test_2_a_rest_batch_and_a_broken_drop_share_a_run_that_resumes_after_its_pod_is_deleted(
        level1: Level1, tmp_path_factory, state):
    from detectops.data.landing import LEDGER_DIR

    assert state.get("first_version"), "scenario 1 must run first"
    tmp = tmp_path_factory.mktemp("batches2")
    level1.wait_clear_of_cron()  # a scheduled run would ingest the broken drop on its own
    # The broken batch: a box far outside its image. It waits in the landing area, marked ready
    # but without ringing the doorbell; the REST event's run finds it there.
    broken = _batch(tmp, "broken", seed=21, num_images=20)
    ann = json.loads((broken / "annotations.json").read_text())
    ann["annotations"][0]["bbox"] = [5000, 5000, 40, 40]
    (broken / "annotations.json").write_text(json.dumps(ann))
    shutil.copytree(broken, level1.landing / "broken")
    (level1.landing / "broken.ready").write_text("{}")

    shifted = _batch(tmp, "shifted", seed=22, num_images=160,
                     brightness=0.55, noise=0.08, object_size=(0.08, 0.25))
    rest_dir = level1.landing / "rest-shifted"
    shutil.copytree(shifted, rest_dir)  # under the allowed root (the landing area), not marked ready
    asset = [a for a in level1.assets.get_assets(uri_pattern="detectops://data/batch-landed").assets
             if a.uri == "detectops://data/batch-landed"][0]
    before = level1.run_ids()
    level1.assets.create_asset_event(level1.af.CreateAssetEventsBody(
        asset_id=asset.id, extra={"location": str(rest_dir), "model": MODEL}))
    run = level1.wait_new_run(before, run_type="asset_triggered", timeout=240)

    deleted = {}

    def delete_training_pod_mid_run(progress: dict) -> None:
        if deleted or progress.get("train") != "running":
            return
        pods = level1.kube.core.list_namespaced_pod(NAMESPACE, label_selector="task_id=train").items
        for pod in pods:
            if pod.status.phase != "Running":
                continue
            log = level1.kube.core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE, container="base")
            if "epoch 2/" in log:  # a checkpoint of epoch 1 (at least) is in MLflow
                level1.kube.core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=0)
                deleted["pod"] = pod.metadata.name
                print(f"deleted training pod {pod.metadata.name} during epoch 2", flush=True)

    done = level1.wait_done(run.dag_run_id, on_poll=delete_training_pod_mid_run)
    level1.assert_success(done, run.dag_run_id)
    assert deleted, "the training pod finished before it could be deleted mid-run"

    validated = level1.xcom(run.dag_run_id, "validate_batches")
    refused = {b["name"]: b for b in validated["refused"]}
    assert "broken" in refused, validated
    assert Path(refused["broken"]["quarantined_at"]).is_dir()
    print(f"quarantined: {refused['broken']['reason'][:300]}")
    assert [b["name"] for b in validated["accepted"]] == ["rest-shifted"]
    assert validated["skew"] and validated["skew"][0]["max_distance"] > 0.1, validated["skew"]
    print(f"skew of the shifted batch: {validated['skew'][0]['max_distance']:.3f}")
    assert len(list((level1.landing / LEDGER_DIR).glob("*.json"))) >= 3  # first, broken, shifted

    trained = level1.xcom(run.dag_run_id, "train")
    assert trained["warm_started_from"] == f"models:/{MODEL}@champion", trained
    assert trained["resumed_from_epoch"] and trained["resumed_from_epoch"] >= 1, trained
    print(f"the retry resumed after epoch {trained['resumed_from_epoch']}")

    evaluation = level1.xcom(run.dag_run_id, "evaluate")
    split = evaluation["pair"]["test_split"]  # the evaluation budget: a sample that keeps both batches
    print(f"evaluated on {split['num_images']} of {split.get('sample_of')} test images: {split.get('images_per_batch')}")
    assert split["num_images"] == LEVEL1_TEST_DEFAULTS["eval_max_images"] < split["sample_of"], split
    assert len(split["images_per_batch"]) == 2, split
    cand = evaluation["pair"]["candidate"]["metrics"]
    champ = evaluation["pair"]["champion"]["metrics"]
    verdict = level1.xcom(run.dag_run_id, "gate")
    print(f"candidate AP {cand['AP']:.3f} AP50 {cand['AP50']:.3f} vs champion AP {champ['AP']:.3f} "
          f"AP50 {champ['AP50']:.3f}: {'passed' if verdict['passed'] else 'refused'} ({verdict.get('reasons')})")
    margin = LEVEL1_TEST_DEFAULTS["map_margin"]
    ap_check = [c for c in verdict["checks"] if c["name"].startswith("map")] or verdict["checks"]
    assert (cand["AP"] >= champ["AP"] + margin) == bool(ap_check[0]["passed"]), verdict
    mlflow = _mlflow(level1.mlflow_uri)
    registered = level1.xcom(run.dag_run_id, "register")
    if verdict["passed"]:
        assert _alias_version(mlflow, "champion") == str(registered["version"])
        assert _alias_version(mlflow, "previous") == state["first_version"]
    else:
        assert _alias_version(mlflow, "champion") == state["first_version"]
    state.update(second_version=str(registered["version"]), second_promoted=bool(verdict["passed"]))


def test_3_a_worse_candidate_is_registered_rejected_and_production_untouched(level1: Level1, state):
    mlflow = _mlflow(level1.mlflow_uri)
    champion_before = _alias_version(mlflow, "champion")
    image_before = _served_image(level1.kube)
    run_id = level1.trigger({"train_config": json.dumps({"preset": "tiny", "epochs": 1, "steps_per_epoch": 1}),
                             "warm_start": False, "retrain_unchanged": True, "map_margin": 0.0})
    done = level1.wait_done(run_id)
    level1.assert_success(done, run_id)  # refusing a candidate is the run doing its job
    verdict = level1.xcom(run_id, "gate")
    assert verdict["passed"] is False and verdict["reasons"], verdict
    registered = level1.xcom(run_id, "register")
    tags = mlflow.get_model_version(MODEL, registered["version"]).tags
    print(f"v{registered['version']} rejected: {verdict['reasons']}")
    assert tags.get("gate.passed") in ("false", "False"), tags
    # What identifies the attempt, so that a later run that would only repeat it is skipped.
    assert tags.get("detectops.judged_against") == champion_before and len(tags.get("detectops.recipe_sha256", "")) == 64
    assert tags.get("rejected_stage") == "gate", tags
    assert _alias_version(mlflow, "champion") == champion_before
    assert _served_image(level1.kube) == image_before
    assert level1.states(run_id)["deploy.deploy"] == "skipped"
    assert "not promoted" in level1.note(run_id)


def test_4_the_cron_schedule_finds_no_new_data_and_says_so(level1: Level1, state):
    deadline = time.monotonic() + 6 * 60
    while True:
        scheduled = [r for r in level1.runs.get_dag_runs(DAG_ID, limit=100).dag_runs
                     if r.run_type.value == "scheduled" and r.run_after.timestamp() > state["champion_since"]]
        finished = [r for r in scheduled if r.state.value in ("success", "failed")]
        if finished:
            break
        if time.monotonic() > deadline:
            pytest.fail("the cron schedule (every 4 minutes in the test Airflow) did not fire within 6 minutes")
        time.sleep(10)
        level1.refresh_token()
    run = finished[-1]
    level1.assert_success(run, run.dag_run_id)
    report = level1.xcom(run.dag_run_id, "report")
    print(f"scheduled run {run.dag_run_id}: {report['note']}")
    assert report["outcome"] == "nothing to retrain", report
    assert "was trained on" in report["note"], report  # the champion's own data, not "no data yet"
    assert level1.states(run.dag_run_id)["train"] == "skipped"


def _monitoring_run(level1: Level1, conf: dict) -> tuple[str, dict, dict]:
    """Trigger a monitoring run for the e2e model; ``(run id, judge XCom, collect XCom)``."""
    run_id = level1.trigger({**MONITORING_CONF, **conf}, dag_id=MONITORING_DAG_ID)
    done = level1.wait_done(run_id, dag_id=MONITORING_DAG_ID, timeout=600)
    level1.assert_success(done, run_id, dag_id=MONITORING_DAG_ID)
    level1.print_timings(done, dag_id=MONITORING_DAG_ID)
    return (run_id, level1.xcom(run_id, "monitor.judge", dag_id=MONITORING_DAG_ID, map_index=0),
            level1.xcom(run_id, "monitor.collect", dag_id=MONITORING_DAG_ID, map_index=0))


def test_5_drifted_traffic_is_detected_reported_and_level1_asks_for_labelled_data(level1: Level1, tmp_path_factory, state):
    champion = _alias_version(_mlflow(level1.mlflow_uri), "champion")
    level1.wait_parsed(MONITORING_DAG_ID)
    before = level1.run_ids(MONITORING_DAG_ID)
    level1.dags.patch_dag(MONITORING_DAG_ID, level1.af.DAGPatchBody(is_paused=False))
    # Unpausing runs the latest cron tick at once; it must finish before the traffic is sent.
    first = level1.wait_new_run(before, dag_id=MONITORING_DAG_ID, run_type="scheduled", timeout=120)
    level1.wait_done(first.dag_run_id, dag_id=MONITORING_DAG_ID, timeout=600)

    tmp = tmp_path_factory.mktemp("traffic")
    other_domain = _batch(tmp, "other-domain", seed=41, num_images=100, image_size=(400, 200), brightness=1.5,
                          noise=0.12, object_size=(0.05, 0.12))
    sent = _send_stream(level1.kube, other_domain)
    state["drifted_stream_ended"] = time.time()
    before_l1 = level1.run_ids()
    run_id, drift, collected = _monitoring_run(level1, {})
    print(f"monitoring: {collected['records']} records collected ({collected['malformed']} malformed); "
          f"verdict {drift['verdict']}: {drift['reason']}")
    assert collected["records"] >= sent
    assert drift["verdict"] == "drift", drift
    assert {"images.width", "images.brightness_mean"} <= set(drift["drifted_features"]), drift["drifted_features"]
    event = level1.xcom(run_id, "monitor.emit_drift", dag_id=MONITORING_DAG_ID, map_index=0)
    assert event["model"] == MODEL and event["model_version"] == champion and event["drifted_features"]

    # The report in MLflow: per-feature drift, the verdict, Evidently's HTML and Prometheus's figures.
    mlflow = _mlflow(level1.mlflow_uri)
    report = mlflow.get_run(level1.xcom(run_id, "monitor.report", dag_id=MONITORING_DAG_ID, map_index=0))
    assert report.data.tags["verdict"] == "drift" and report.data.tags["model_version"] == champion
    assert report.data.metrics["drifted/images.width"] == 1.0
    assert report.data.metrics["live/request_rate"] > 0, report.data.metrics
    html = {f.path for f in mlflow.list_artifacts(report.info.run_id, "drift_reports")}
    assert "drift_reports/drift_images.html" in html, html

    # Level 1 starts from the drift event; the champion was trained on every batch, so it asks for data.
    l1 = level1.wait_new_run(before_l1, run_type="asset_triggered", timeout=240)
    done = level1.wait_done(l1.dag_run_id)
    level1.assert_success(done, l1.dag_run_id)
    note = level1.note(l1.dag_run_id)
    print(f"level 1 after the drift event: {note}")
    assert "nothing to retrain" in note and "new labelled data is needed" in note and "images.width" in note
    assert _alias_version(mlflow, "champion") == champion

    # The cooldown: the same drift on the same version is not reported again until data lands.
    again, drift2, _ = _monitoring_run(level1, {})
    assert drift2["verdict"] == "drift"
    assert level1.states(again, MONITORING_DAG_ID)["monitor.emit_drift"] == "skipped"
    state.update(drift_run=run_id)


def test_6_traffic_from_the_training_distribution_is_not_drift(level1: Level1, tmp_path_factory, state):
    from datetime import datetime, timedelta, timezone

    from detectops.monitoring.drift import DriftPolicy, compute_drift
    from detectops.monitoring.reference import load_reference
    from detectops.monitoring.store import PredictionStore

    tmp = tmp_path_factory.mktemp("traffic-in")
    # The champion's data: scenario 1's batch (240) and scenario 2's darker one (160), in proportion.
    usual = _batch(tmp, "usual", seed=51, num_images=72)
    darker = _batch(tmp, "darker", seed=52, num_images=48, brightness=0.55, noise=0.08, object_size=(0.08, 0.25))
    # A window of its own: the run's window up to its trigger must not reach back into scenario 5's
    # drifted stream (its monitoring and level-1 runs since usually took longer than that).
    window_minutes = 1.5
    time.sleep(max(0.0, state.get("drifted_stream_ended", time.time()) + window_minutes * 60 + 2 - time.time()))
    started = datetime.now(timezone.utc)
    sent = _send_stream(level1.kube, usual) + _send_stream(level1.kube, darker)
    _, drift, collected = _monitoring_run(level1, {"window_minutes": window_minutes})
    print(f"training-distribution traffic: {collected['records']} records, verdict {drift['verdict']}: {drift['reason']}")
    assert drift["images"] >= sent and drift["verdict"] == "no_drift", drift

    # The false-alarm rate over repeated windows of those records (each window: min_samples images).
    champion = _alias_version(_mlflow(level1.mlflow_uri), "champion")
    records = PredictionStore(MODEL, tracking_uri=level1.mlflow_uri).read(started, datetime.now(timezone.utc) + timedelta(seconds=1))
    records = records[records["model_version"].astype(str) == champion].sample(frac=1.0, random_state=0)
    reference = load_reference(MODEL, champion, tracking_uri=level1.mlflow_uri)
    policy = DriftPolicy(min_samples=MONITORING_CONF["min_samples"])
    size = MONITORING_CONF["min_samples"]
    windows = [records.iloc[i:i + size] for i in range(0, len(records) - size + 1, size // 2)]  # half-overlapping
    alarms = [compute_drift(reference, w, policy).verdict == "drift" for w in windows]
    print(f"false alarms: {sum(alarms)} of {len(alarms)} windows of {size} images from the training distribution")
    assert len(windows) >= 3 and sum(alarms) <= len(alarms) // 3


def test_7_a_person_rolls_back_through_the_rest_api(level1: Level1, state):
    mlflow = _mlflow(level1.mlflow_uri)
    if _alias_version(mlflow, "previous") is None:
        pytest.fail(f"no 'previous' to roll back to: scenario 2's candidate was not promoted ({state})")
    previous = _alias_version(mlflow, "previous")
    champion = _alias_version(mlflow, "champion")
    run_id = level1.trigger({"model_name": MODEL, "namespace": NAMESPACE, "deployment": DEPLOYMENT,
                             "min_detections": 0, "reason": "e2e: a person rolls back"}, dag_id=ROLLBACK_DAG_ID)
    done = level1.wait_done(run_id, dag_id=ROLLBACK_DAG_ID)
    level1.assert_success(done, run_id, dag_id=ROLLBACK_DAG_ID)
    assert _alias_version(mlflow, "champion") == previous != champion
    previous_image = mlflow.get_model_version(MODEL, previous).tags.get("image_digest") or ""
    served = _served_image(level1.kube)
    print(f"rolled back from v{champion} to v{previous}; serving {served}")
    assert previous_image and previous_image in served
    _smoke_through_nodeport(level1.kube)
