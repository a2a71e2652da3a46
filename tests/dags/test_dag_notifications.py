"""Every DetectOps DAG tells the alert webhook when one of its runs fails (Airflow's notifier mechanism)."""

from __future__ import annotations

from pathlib import Path

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


def test_every_dag_notifies_the_webhook_when_a_run_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    from airflow.dag_processing.dagbag import DagBag

    from detectops.notify import RunFailedWebhook

    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    assert len(bag.dags) >= 4
    for dag_id, dag in bag.dags.items():
        callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
        assert any(isinstance(cb, RunFailedWebhook) for cb in callbacks), f"{dag_id} fails silently"
