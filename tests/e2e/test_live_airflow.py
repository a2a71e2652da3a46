"""The level-0 DAG driven the way users drive it: a live Airflow's REST API and its web UI.

A real api-server, scheduler, dag-processor and triggerer (tests/support/live_airflow.py, the
settings of scripts/services/airflow-env.sh) on a free port, with ``mlflow_default`` pointing
at the session's real MLflow server. Through the official client ``apache-airflow-client``:
log in, unpause, trigger a run without deployment, wait for it, read the ``evaluate`` XCom and
the mapped ``validate_data`` task instances; then check MLflow has the version with its
version (and no alias: nothing was deployed). In Chromium: log into the UI and see the DAG's documentation and the run.
"""

from __future__ import annotations

import shutil
import time
import uuid

import httpx
import pytest

from tests.support.live_airflow import LiveAirflow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "detectops_level0_manual"
TABLES = ["images", "annotations", "class_counts"]
COCO_METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
RUN_TIMEOUT_S = 15 * 60
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def get_token(base_url: str, username: str, password: str) -> httpx.Response:
    """``POST /auth/token`` of the simple auth manager (not part of the generated client)."""
    return httpx.post(f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=30)


@pytest.fixture(scope="module")
def api(live_airflow: LiveAirflow):
    """An ``airflow_client.client.ApiClient`` logged in as admin."""
    import airflow_client.client as af

    base_url, username, password = live_airflow
    r = get_token(base_url, username, password)
    assert r.status_code == 201, r.text
    config = af.Configuration(host=base_url, access_token=r.json()["access_token"])
    with af.ApiClient(config) as client:
        yield client


@pytest.fixture(scope="module")
def level0_run(api, live_airflow: LiveAirflow) -> dict:
    """Unpause the DAG, trigger a run that stops after registration, wait until it ends."""
    import airflow_client.client as af

    dags = af.DAGApi(api)
    deadline = time.monotonic() + 180  # the dag-processor must parse dags/ once first
    while True:
        try:
            dags.get_dag(DAG_ID)
            break
        except af.exceptions.NotFoundException:
            if time.monotonic() > deadline:
                pytest.fail(f"{DAG_ID} not listed after 180 s; dag-processor log:\n{live_airflow.log_tail('dag-processor')}")
            time.sleep(2)
    assert dags.patch_dag(DAG_ID, af.DAGPatchBody(is_paused=False)).is_paused is False

    model_name = f"detector-live-{uuid.uuid4().hex[:8]}"
    runs = af.DagRunApi(api)
    run = runs.trigger_dag_run(DAG_ID, af.TriggerDAGRunPostBody(
        logical_date=None, conf={"deploy": False, "model_name": model_name}))
    run_id = run.dag_run_id

    tis_api = af.TaskInstanceApi(api)
    started, last = time.monotonic(), None
    while True:
        state = runs.get_dag_run(DAG_ID, run_id).state.value
        tis = tis_api.get_task_instances(DAG_ID, run_id).task_instances
        progress = ", ".join(f"{t.task_id}{f'[{t.map_index}]' if t.map_index >= 0 else ''}="
                             f"{t.state.value if t.state else None}" for t in tis)
        if progress != last:
            print(f"[{time.monotonic() - started:5.0f}s] {state}: {progress}", flush=True)
            last = progress
        if state in ("success", "failed") or time.monotonic() - started > RUN_TIMEOUT_S:
            break
        time.sleep(5)
    return {"run_id": run_id, "state": state, "model_name": model_name,
            "seconds": time.monotonic() - started, "progress": progress}


def test_token_auth(live_airflow: LiveAirflow):
    import airflow_client.client as af

    base_url, username, password = live_airflow
    assert get_token(base_url, username, password + "-wrong").status_code == 401
    assert get_token(base_url, username, password).status_code == 201
    # The official client without a token is refused too.
    with af.ApiClient(af.Configuration(host=base_url)) as anonymous:
        with pytest.raises(af.exceptions.UnauthorizedException):
            af.DAGApi(anonymous).get_dags()


def test_level0_run_through_rest_api(api, level0_run, mlflow_server, live_airflow: LiveAirflow):
    import airflow_client.client as af
    import mlflow

    run_id = level0_run["run_id"]
    assert level0_run["state"] == "success", (
        f"run {run_id} ended {level0_run['state']}: {level0_run['progress']}\n"
        f"scheduler log tail:\n{live_airflow.log_tail('scheduler')}\ntask logs: {live_airflow.home / 'logs'}")
    print(f"level-0 run (deploy=false) took {level0_run['seconds']:.0f} s")

    mapped = af.TaskInstanceApi(api).get_mapped_task_instances(DAG_ID, run_id, "validate_data").task_instances
    assert sorted(t.map_index for t in mapped) == [0, 1, 2]
    assert all(t.state.value == "success" for t in mapped), [(t.map_index, t.state) for t in mapped]
    assert sorted(t.rendered_map_index for t in mapped) == sorted(TABLES)  # map_index_template names the table

    xcom = af.XComApi(api).get_xcom_entry(DAG_ID, "evaluate", run_id, "return_value", deserialize=True, stringify=False)
    evaluation = xcom.actual_instance.value  # oneOf(native, string): native with stringify=False
    assert isinstance(evaluation, dict), evaluation
    metrics = evaluation["metrics"]
    missing = [m for m in COCO_METRICS if m not in metrics]
    assert not missing, f"COCO metrics missing from the evaluate XCom: {missing}; have {sorted(metrics)}"
    assert all(-1.0 <= metrics[m] <= 1.0 for m in COCO_METRICS), metrics
    assert metrics["AP50"] > 0, "CenterNet found nothing on the real evaluation photos"
    assert evaluation["num_images"] > 0

    client = mlflow.MlflowClient(mlflow_server)
    versions = client.search_model_versions(f"name = '{level0_run['model_name']}'")
    assert len(versions) == 1, versions
    version = versions[0]
    assert version.run_id == evaluation["run_id"], "the registered version is not the evaluated run's model"
    # Without a deploy nothing serves, so no alias moved (champion moves only after the smoke test).
    assert not version.aliases, version.aliases
    assert client.get_run(version.run_id).data.metrics  # the evaluation run exists in MLflow


def test_ui_shows_dag_docs_and_run(live_airflow: LiveAirflow, level0_run, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed: `apt-get install -y chromium` (scripts/install.sh does it)")
    from playwright.sync_api import expect, sync_playwright

    base_url, username, password = live_airflow
    shot = tmp_path / "airflow_dag.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base_url}/dags/{DAG_ID}")
            # Not logged in: the simple auth manager's login form.
            page.wait_for_url("**/auth/login**")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"**/dags/{DAG_ID}**", timeout=30_000)
            expect(page.get_by_role("heading", name=DAG_ID)).to_be_visible(timeout=30_000)

            # The DAG's doc_md, rendered as Markdown in the "Dag Docs" dialog.
            page.get_by_role("button", name="Dag Docs").click()
            docs = page.get_by_role("dialog")
            expect(docs).to_contain_text("DetectOps level 0", timeout=15_000)
            expect(docs.get_by_role("heading", name="DetectOps level 0")).to_be_visible()
            expect(docs).to_contain_text("validate_data")
            page.screenshot(path=str(tmp_path / "airflow_dag_docs.png"))
            page.keyboard.press("Escape")
            expect(docs).to_be_hidden()

            # The run triggered through the API, listed with its final state.
            page.get_by_role("link", name="Runs", exact=True).click()
            page.wait_for_url(f"**/dags/{DAG_ID}/runs**")
            row = page.get_by_role("row").filter(has_text=level0_run["run_id"])
            expect(row).to_be_visible(timeout=30_000)
            expect(row).to_contain_text("Success")
            expect(row).to_contain_text("admin")  # triggering user: the token's user
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshots: {shot} and {tmp_path / 'airflow_dag_docs.png'}")
        finally:
            browser.close()
