"""``detectops_batch_inference`` end to end in a live Airflow, through the official ``apache-airflow-client``.

A model version is registered in the session's MLflow with the pixel-dependent test detector's
serving image recorded on it (``tests/integration/test_batch_pod.py`` builds and pushes it) and
moved to ``champion``. Then:

1. a person triggers the DAG with the form's fields (a directory in the landing area): the
   directory is published to MLflow's store, a pod of that version's image scores it, and
   ``publish`` emits ``detectops_batch_scored`` with the MLflow run and the counts;
2. an event of ``detectops_unlabelled_batch`` (``POST /api/v2/assets/events``) names the stored
   batch: an Asset-triggered run scores it with the same version, finds the run the first one
   logged (same version and content) and logs nothing twice.
"""

from __future__ import annotations

import shutil
import uuid

import httpx
import pytest

from tests.e2e.test_level1_training import Level1, _token
from tests.integration.test_batch_pod import MIN_SCORE, image  # noqa: F401 (module fixture: the detector image)
from tests.support.live_airflow import LiveAirflow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "detectops_batch_inference"
NAMESPACE = "detectops-e2e-batch"
NUM_IMAGES = 24


@pytest.fixture(scope="module")
def champion(mlflow_server, image, tmp_path_factory):  # noqa: F811
    """A registered version of the pixel detector whose serving image is ``image``, as ``champion``."""
    from mlflow import MlflowClient

    from detectops.registry import record_image, register_model, set_alias
    from tests.integration.test_batch_pod import pixel_model_dir

    name = f"pixel-e2e-{uuid.uuid4().hex[:6]}"
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("test-batch-e2e") or client.get_experiment(client.create_experiment("test-batch-e2e"))
    run_id = client.create_run(exp.experiment_id).info.run_id
    client.set_terminated(run_id)
    ref = register_model(str(pixel_model_dir()), run_id, name, dataset_sha256="0" * 64)
    record_image(name, ref.version, image)
    set_alias(name, "champion", ref.version)
    return {"name": name, "version": ref.version, "image": image.pinned}


@pytest.fixture(scope="module")
def api(live_airflow: LiveAirflow, mlflow_server: str):
    from detectops.deploy import connect
    from tests.integration.test_image import infra_env

    kube = connect(infra_env()["KUBECONFIG"])
    api = Level1(live_airflow, mlflow_server, kube)
    api.wait_parsed(DAG_ID)
    assert api.dags.patch_dag(DAG_ID, api.af.DAGPatchBody(is_paused=False)).is_paused is False
    yield api
    api.dags.patch_dag(DAG_ID, api.af.DAGPatchBody(is_paused=True))
    try:
        kube.core.delete_namespace(NAMESPACE)
    except Exception:  # noqa: BLE001 - already gone
        pass


def _scored_events(api: Level1) -> list[dict]:
    headers = {"Authorization": f"Bearer {_token(api.live)}"}
    base = api.live.base_url
    assets = httpx.get(f"{base}/api/v2/assets", params={"uri_pattern": "detectops://inference/batch-scored"},
                       headers=headers, timeout=30).json()["assets"]
    if not assets:
        return []
    r = httpx.get(f"{base}/api/v2/assets/events", params={"asset_id": assets[0]["id"], "limit": 100},
                  headers=headers, timeout=30)
    return r.json()["asset_events"]


def test_a_person_and_an_asset_event_score_batches_in_pods_of_the_champions_image(api: Level1, champion, mlflow_server):
    from mlflow import MlflowClient

    from tests.unit.test_batch_scoring import add_bad_files, write_images

    landing = api.landing / f"to-score-{uuid.uuid4().hex[:6]}"
    write_images(landing, NUM_IMAGES, seed=21)
    bad = add_bad_files(landing)
    try:
        # -- 1. by hand (the form's fields through the REST API)
        run_id = api.trigger({"location": str(landing), "model_name": champion["name"], "namespace": NAMESPACE,
                              "min_score": MIN_SCORE}, dag_id=DAG_ID)
        run = api.wait_done(run_id, dag_id=DAG_ID, timeout=600)
        api.print_timings(run, dag_id=DAG_ID)
        api.assert_success(run, run_id, dag_id=DAG_ID)
        extra = api.xcom(run_id, "publish", dag_id=DAG_ID)
        print("batch_scored extra:", extra)
        assert extra["model"] == champion["name"] and extra["version"] == champion["version"]
        assert extra["image"] == champion["image"]  # the version's own image, by digest
        assert extra["images_scored"] == NUM_IMAGES and extra["images_failed"] == len(bad)
        scored_run = MlflowClient(mlflow_server).get_run(extra["run_id"])
        assert scored_run.data.metrics["images_scored"] == NUM_IMAGES
        assert scored_run.data.params["model_version"] == champion["version"]
        (pod,) = api.xcom(run_id, "resolve", dag_id=DAG_ID)
        assert extra["rejected"] == []
        stored = pod["arguments"][1]
        assert stored.startswith("runs:/") and pod["namespace"] == NAMESPACE
        assert any(e["extra"].get("run_id") == extra["run_id"] for e in _scored_events(api))

        # -- 2. an Asset event of an unlabelled batch names the stored batch
        before = api.run_ids(DAG_ID)
        (asset,) = api.assets.get_assets(uri_pattern="detectops://data/unlabelled-batch").assets
        api.assets.create_asset_event(api.af.CreateAssetEventsBody(
            asset_id=asset.id, extra={"location": stored, "model": champion["name"], "namespace": NAMESPACE,
                                      "min_score": MIN_SCORE}))
        triggered = api.wait_new_run(before, dag_id=DAG_ID, run_type="asset_triggered", timeout=180)
        run = api.wait_done(triggered.dag_run_id, dag_id=DAG_ID, timeout=600)
        api.assert_success(run, triggered.dag_run_id, dag_id=DAG_ID)
        again = api.xcom(triggered.dag_run_id, "publish", dag_id=DAG_ID)
        assert again["run_id"] == extra["run_id"] and again["runs"][0]["reused"] is True
        assert again["images_scored"] == NUM_IMAGES
    finally:
        shutil.rmtree(landing, ignore_errors=True)
