"""The batch-inference DAG's tasks: context and connections in, one step each (``batch.steps``).

Parse-time light (the DAG file imports this module): MLflow, TensorFlow and the Kubernetes
client load inside the tasks. Deterministic failures (no such model version, no image recorded,
a location outside the landing roots) fail at once; transient ones are retried.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import get_current_context, task

from detectops.assets import batch_scored
from detectops.orchestration import KUBERNETES_CONN_ID, fail_fast_unless_transient, training_pod_settings

BATCH_SCORED = batch_scored()


@task
@fail_fast_unless_transient
def resolve(triggering_asset_events=None) -> list[dict[str, Any]]:
    """One scoring pod per job: the events' batches (Asset-triggered) or the form's (manual).

    Returns the pods of the good jobs (mapped over: Airflow maps only over a ``return_value``);
    the rejected ones go to XCom ``rejected`` (a bad event does not stop the others).
    """
    from detectops.batch import steps
    from detectops.orchestration import kube_config_path, mlflow_tracking_uri

    events = [dict(event.extra or {}) for asset_events in (triggering_asset_events or {}).values()
              for event in asset_events]
    jobs = steps.jobs_from(events, dict(get_current_context()["params"]))
    tracking_uri, kube_config = mlflow_tracking_uri(), kube_config_path()
    resolved = steps.resolve_jobs(jobs, tracking_uri=tracking_uri, kube_config=kube_config)
    get_current_context()["ti"].xcom_push(key="rejected", value=resolved["rejected"])
    return resolved["pods"]


def score_pods(pods, *, task_id: str = "score", kubernetes_conn_id: str = KUBERNETES_CONN_ID):
    """``detectops predict-batch`` in the detector image of the version, one mapped pod per job.

    Bounded resources, non-root, no ServiceAccount token (it talks only to MLflow), like the
    training pod; its result (the MLflow run, the counts) is the XCom of its map index.
    """
    return KubernetesPodOperator.partial(
        task_id=task_id,
        kubernetes_conn_id=kubernetes_conn_id,
        name="detectops-batch-score",
        cmds=["detectops"],
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        startup_timeout_seconds=300,
        **training_pod_settings(),
    ).expand_kwargs(pods)


@task(outlets=[BATCH_SCORED])
@fail_fast_unless_transient
def publish(pods: list[dict[str, Any]], scored: Any, rejected: list[dict[str, Any]], outlet_events=None) -> dict[str, Any]:
    """Emit ``batch_scored`` with the MLflow runs and the counts in its ``extra`` (and what was rejected)."""
    from detectops.batch import steps

    extra = steps.scored_extra(pods, list(scored), rejected)
    outlet_events[BATCH_SCORED].extra = extra
    print(f"scored: {extra}")
    return extra


@task
@fail_fast_unless_transient
def check_rejected(extra: dict[str, Any]) -> None:
    """Fail the run (it notifies) if any job was rejected: after the good ones were scored and published."""
    from detectops.batch import steps

    steps.check_rejected(extra)
