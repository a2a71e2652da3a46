"""The level-0 DAG, run for real with ``airflow dags test`` against a real MLflow server.

Two runs share one Airflow home: a broken dataset must stop at ``validate_data`` with a
message naming the failed expectations (and register nothing), and the shipped evaluation
set must go through validation, CenterNet fetch, evaluation and registration, leaving the
12 COCO metrics, per-class AP, plots and a registered version with lineage in MLflow.
(The deploying run, into the local Kubernetes cluster, is in test_level0_deploy.py.)
"""

from __future__ import annotations

import shutil

import pytest

from detectops.data import CocoDataset, real_eval_set
from tests.support.airflow import airflow_env, dags_test, migrate

DAG_ID = "detectops_level0_manual"
COCO_METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, mlflow_server):
    home = tmp_path_factory.mktemp("airflow_home")
    env = airflow_env(home, {"mlflow_default": mlflow_server},
                      extra={"DETECTOPS_WORK": str(tmp_path_factory.mktemp("work"))})
    migrate(env)
    return env


def test_broken_dataset_stops_at_validation(airflow, mlflow_server, tmp_path):
    import mlflow

    broken = tmp_path / "broken"
    shutil.copytree(real_eval_set(), broken)
    ds = CocoDataset.load(broken)
    ds.annotations[0]["bbox"] = [10.0, 10.0, 1e6, 20.0]          # outside the image
    ds.annotations[1]["category_id"] = 999                      # not in the label map
    ds.save()

    run = dags_test(airflow, DAG_ID, {"dataset": str(broken), "deploy": False, "model_name": "broken-run"})

    assert not run.succeeded, run.output[-3000:]
    assert "validate_data" in run.output
    assert "DataValidationError" in run.output
    assert "category_id" in run.output  # the failed expectation's column is named
    # A validation failure is deterministic: it fails at once, never retried.
    assert "up_for_retry" not in run.output, "a failed validation was scheduled for a retry"
    client = mlflow.MlflowClient(mlflow_server)
    assert client.search_registered_models(filter_string="name = 'broken-run'") == []


def test_level0_validates_evaluates_and_registers(airflow, mlflow_server):
    import mlflow

    run = dags_test(airflow, DAG_ID, {"deploy": False, "model_name": "detector-e2e", "alias": "champion"})
    assert run.succeeded, run.output[-6000:]

    client = mlflow.MlflowClient(mlflow_server)
    (version,) = client.search_model_versions("name = 'detector-e2e'")
    # Without a deploy no alias moves: champion moves only once a version serves and passed its smoke test.
    assert client.get_registered_model("detector-e2e").aliases == {}
    eval_run = client.get_run(version.run_id)
    metrics = eval_run.data.metrics
    missing = [m for m in COCO_METRICS if not any(k == m or k.endswith("/" + m) or k.endswith(m) for k in metrics)]
    assert not missing, f"metrics missing from the MLflow run: {missing}; have {sorted(metrics)}"
    assert any("person" in k for k in metrics), "no per-class AP for person"
    assert any(v > 0 for k, v in metrics.items() if k.endswith("AP50")), "CenterNet found nothing on real photos"

    artifacts = _all_artifacts(client, version.run_id)
    assert any(a.endswith(".png") and "pr" in a.lower() for a in artifacts), artifacts
    assert any(a.endswith(".png") and "sample" in a.lower() for a in artifacts), artifacts
    assert any("data_validation" in a for a in artifacts), artifacts
    assert version.tags.get("dataset_sha256") == CocoDataset.load(real_eval_set()).ref().sha256

    # Idempotent: a second run registers no duplicate version of the same model.
    again = dags_test(airflow, DAG_ID, {"deploy": False, "model_name": "detector-e2e", "alias": "champion"})
    assert again.succeeded, again.output[-4000:]
    versions = client.search_model_versions("name = 'detector-e2e'")
    assert len(versions) == 1, [v.version for v in versions]


def _all_artifacts(client, run_id: str, path: str = "") -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir:
            out.extend(_all_artifacts(client, run_id, item.path))
        else:
            out.append(item.path)
    return out
