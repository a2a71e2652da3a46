"""Every DAG file loads, is documented and owned, retries, and parses fast without heavy imports.

Parsing is measured in a fresh interpreter, the way Airflow's dag-processor does it: it
pre-imports the ``airflow.*`` modules a DAG file names (``parsing_pre_import_modules``,
on by default) before it forks the parse, so what each parse pays is the DAG files' own
code — which must not import TensorFlow, Great Expectations or MLflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
HEAVY_MODULES = ("tensorflow", "great_expectations", "mlflow", "keras", "pycocotools", "docker")
EXPECTED_DAGS = {"detectops_level0_manual", "detectops_level1_training", "detectops_rollback", "detectops_monitoring",
                 "detectops_batch_inference", "detectops_level2_cicd"}

PARSE_PROBE = r"""
import json, sys, time
from pathlib import Path
from airflow.utils.file import iter_airflow_imports
import importlib

dags_dir = Path(sys.argv[1])
for f in sorted(dags_dir.glob("*.py")):
    for module in iter_airflow_imports(str(f)):
        importlib.import_module(module)

from airflow.models.dagbag import DagBag
from airflow.serialization.encoders import ensure_serialized_asset  # schedule=[Asset] keeps the SDK's condition
started = time.perf_counter()
bag = DagBag(dag_folder=str(dags_dir))
elapsed = time.perf_counter() - started
heavy = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tags": sorted(dag.tags or []),
        "doc_md": dag.doc_md or "",
        "tasks": {t.task_id: {"outlets": sorted(getattr(o, "uri", str(o)) for o in (t.outlets or [])), "owner": t.owner, "retries": t.retries, "operator": type(t).__name__,
                              "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule), "setup": t.is_setup, "teardown": t.is_teardown,
                              "upstream": sorted(t.upstream_task_ids)} for t in dag.tasks},
        "schedule": type(dag.timetable).__name__,
        "assets": sorted(a.uri for _, a in ensure_serialized_asset(dag.timetable.asset_condition).iter_assets())
                  if getattr(dag.timetable, "asset_condition", None) is not None else [],
        "watchers": sorted(w.name for _, a in ensure_serialized_asset(dag.timetable.asset_condition).iter_assets()
                           for w in a.watchers)
                    if getattr(dag.timetable, "asset_condition", None) is not None else [],
        "catchup": dag.catchup,
    }
print("RESULT " + json.dumps({"seconds": elapsed, "errors": {k: str(v) for k, v in bag.import_errors.items()},
                              "heavy": sorted({m.split(".")[0] for m in heavy}), "dags": dags}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow_home")),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "True"}
    out = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(DAGS_DIR), json.dumps(HEAVY_MODULES)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the parse probe failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_no_import_errors(parsed):
    assert parsed["errors"] == {}


def test_expected_dags_present(parsed):
    assert EXPECTED_DAGS <= set(parsed["dags"])


def test_parsing_all_dag_files_is_fast(parsed):
    assert parsed["seconds"] < 1.0, f"parsing dags/ took {parsed['seconds']:.2f} s"


def test_parsing_imports_nothing_heavy(parsed):
    assert parsed["heavy"] == [], f"DAG parsing imported {parsed['heavy']}; import them inside tasks"


def test_every_dag_is_documented_tagged_and_not_catching_up(parsed):
    for dag_id, dag in parsed["dags"].items():
        assert dag["tags"], f"{dag_id} has no tags"
        assert len(dag["doc_md"]) > 200, f"{dag_id} has no real doc_md"
        assert dag["catchup"] is False, f"{dag_id} would backfill"


#: Tasks that run once on purpose, and why.
RUN_ONCE = {
    # Airflow's task runner fails a TriggerDagRunOperator whose run id exists, so a retry could
    # only fail; the triggered level-1 run retries its own transient faults.
    ("detectops_level2_cicd", "staging"),
}


def test_every_task_has_an_owner_and_retries(parsed):
    for dag_id, dag in parsed["dags"].items():
        for task_id, task in dag["tasks"].items():
            assert task["owner"] not in ("", "airflow"), f"{dag_id}.{task_id} has no owner"
            if (dag_id, task_id) in RUN_ONCE:
                assert task["retries"] == 0, f"{dag_id}.{task_id} is listed as run-once but retries"
                continue
            assert task["retries"] >= 1, f"{dag_id}.{task_id} never retries"


def test_level0_is_manual_only(parsed):
    dag = parsed["dags"]["detectops_level0_manual"]
    assert dag["schedule"] == "NullTimetable", dag["schedule"]
    assert {"validate_data", "fetch_model", "evaluate", "register", "build_image"} <= set(dag["tasks"])
    # A bad dataset stops the run before a model is fetched.
    assert "validate_data" in dag["tasks"]["fetch_model"]["upstream"]


def test_level0_deploys_through_the_shared_deploy_group(parsed):
    """One deployment path (detectops.dagkit.deploy_group): lock, pod deploy, smoke, then promote or reject."""
    tasks = parsed["dags"]["detectops_level0_manual"]["tasks"]
    group = {t: v for t, v in tasks.items() if t.startswith("deploy.")}
    assert set(group) == {"deploy.prepare", "deploy.acquire_lock", "deploy.ship_logs", "deploy.deploy", "deploy.smoke_test",
                          "deploy.promote", "deploy.reject", "deploy.release_lock"}
    assert group["deploy.deploy"]["operator"] == "KubernetesPodOperator"
    assert group["deploy.acquire_lock"]["setup"] and group["deploy.release_lock"]["teardown"]
    assert group["deploy.reject"]["trigger_rule"] == "one_failed"
    assert "deploy.smoke_test" in group["deploy.promote"]["upstream"]
    assert group["deploy.prepare"]["upstream"] == ["deploy_spec"]
    # The pods about to be replaced ship their prediction log first, under the model's lock.
    assert "deploy.acquire_lock" in group["deploy.ship_logs"]["upstream"]
    assert "deploy.ship_logs" in group["deploy.deploy"]["upstream"]
    # no other deployment path beside the group's
    assert not [t for t, v in tasks.items() if v["operator"] == "KubernetesPodOperator" and not t.startswith("deploy.")]


def test_level1_listens_to_time_data_and_drift_in_one_schedule(parsed):
    dag = parsed["dags"]["detectops_level1_training"]
    assert dag["schedule"] == "AssetOrTimeSchedule"
    assert dag["assets"] == ["detectops://data/batch-landed", "detectops://monitoring/drift-detected"]
    assert dag["watchers"] == ["landing_ready_marker"]  # file drops arrive as events: no polling DAG


def test_level1_trains_in_a_pod_gates_then_deploys_through_the_shared_group(parsed):
    tasks = parsed["dags"]["detectops_level1_training"]["tasks"]
    assert tasks["train"]["operator"] == "KubernetesPodOperator"
    assert tasks["train"]["upstream"] == ["training_plan"]
    assert set(tasks["gate"]["upstream"]) == {"evaluate", "infra_validate", "register"}
    assert "gate" in tasks["deploy_spec"]["upstream"] and "build_image" in tasks["deploy_spec"]["upstream"]
    assert tasks["deploy.prepare"]["upstream"] == ["deploy_spec"]
    assert "deploy.smoke_test" in tasks["deploy.promote"]["upstream"]  # champion moves only after it serves
    assert tasks["report"]["trigger_rule"] == "all_done"  # the note is written whatever happened
    # one deployment path: the group's pod is the only other pod operator
    pods = {t for t, v in tasks.items() if v["operator"] == "KubernetesPodOperator"}
    assert pods == {"train", "deploy.deploy"}


def test_monitoring_runs_on_a_schedule_per_served_model_and_emits_the_drift_asset(parsed):
    dag = parsed["dags"]["detectops_monitoring"]
    assert dag["schedule"] == "CronTriggerTimetable"
    tasks = dag["tasks"]
    assert set(tasks) == {"find_targets", "monitor.collect", "monitor.judge", "monitor.live_figures",
                          "monitor.report", "monitor.emit_drift"}
    assert tasks["monitor.collect"]["upstream"] == ["find_targets"]  # one mapped group per served model
    assert set(tasks["monitor.report"]["upstream"]) == {"find_targets", "monitor.collect", "monitor.judge",
                                                        "monitor.live_figures"}
    # Only the event task produces the Asset level 1 listens to.
    assert tasks["monitor.emit_drift"]["outlets"] == ["detectops://monitoring/drift-detected"]
    assert [t for t, v in tasks.items() if v["outlets"]] == ["monitor.emit_drift"]


def test_batch_inference_runs_on_the_unlabelled_batch_asset_scores_in_pods_and_emits_batch_scored(parsed):
    dag = parsed["dags"]["detectops_batch_inference"]
    assert dag["schedule"] == "AssetTriggeredTimetable"
    assert dag["assets"] == ["detectops://data/unlabelled-batch"]
    tasks = dag["tasks"]
    assert set(tasks) == {"resolve", "score", "publish", "check_rejected"}
    assert tasks["resolve"]["upstream"] == []
    # One KubernetesPodOperator pod per job, mapped over what resolve returned.
    assert tasks["score"]["operator"] == "MappedOperator" and tasks["score"]["upstream"] == ["resolve"]
    assert set(tasks["publish"]["upstream"]) == {"resolve", "score"}
    assert tasks["publish"]["outlets"] == ["detectops://inference/batch-scored"]
    assert [t for t, v in tasks.items() if v["outlets"]] == ["publish"]
    # Rejected jobs fail the run only after the good ones were published.
    assert tasks["check_rejected"]["upstream"] == ["publish"]


def test_level2_tests_before_staging_and_releases_the_canary_under_the_model_lock(parsed):
    dag = parsed["dags"]["detectops_level2_cicd"]
    assert dag["schedule"] == "NullTimetable"  # CI (REST API) and people trigger it
    tasks = dag["tasks"]
    assert tasks["tests"]["operator"] == "KubernetesPodOperator"
    assert tasks["check_tests"]["upstream"] == ["tests"]
    # Nothing is staged before the tests passed; staging is level 1 itself, waited for.
    assert tasks["staging_conf"]["upstream"] == ["build", "check_tests"]
    assert tasks["staging"]["operator"] == "TriggerDagRunOperator"
    assert tasks["staged_version"]["upstream"] == ["build", "staging"]
    # The canary stage holds the model's Lease, released whatever happened.
    assert tasks["acquire_lock"]["setup"] and tasks["release_lock"]["teardown"]
    assert "acquire_lock" in tasks["start_canary"]["upstream"]
    assert tasks["approval"]["operator"] == "ApprovalOperator"
    assert set(tasks["promote"]["upstream"]) == {"approval", "route", "canary_plan", "build"}
    assert tasks["promote"]["trigger_rule"] == "none_failed_min_one_success"
    assert tasks["roll_back"]["trigger_rule"] == "all_done" and "promote" in tasks["roll_back"]["upstream"]
    assert tasks["report"]["trigger_rule"] == "all_done"
