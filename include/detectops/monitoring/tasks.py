"""The monitoring DAG's TaskFlow tasks: connections and context in, one step each (``monitoring.steps``).

Parse-time light: Evidently, MLflow, pandas and the Kubernetes client load inside the tasks.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import get_current_context, task, task_group

from detectops.assets import drift_detected
from detectops.orchestration import fail_fast_unless_transient

DRIFT_DETECTED = drift_detected()


def _params() -> dict[str, Any]:
    return dict(get_current_context()["params"])


def _window() -> tuple[datetime, datetime]:
    """The run's window: ``window_minutes`` up to the run's own time (its cron tick, or when it was triggered)."""
    from detectops.monitoring.steps import window

    context = get_current_context()
    run = context["dag_run"]
    end = getattr(run, "run_after", None) or context.get("logical_date") or datetime.now(timezone.utc)
    return window(end, float(_params()["window_minutes"]))


def _policy() -> dict[str, Any]:
    p = _params()
    return {k: p[k] for k in ("min_samples", "large_sample", "distance_threshold", "p_value", "drift_share")}


@task
@fail_fast_unless_transient
def find_targets() -> list[dict[str, str]]:
    from detectops.deploy import connect
    from detectops.monitoring.steps import served_models
    from detectops.orchestration import kube_config_path

    p = _params()
    targets = served_models(connect(kube_config_path()), namespaces=p["namespaces"] or None, models=p["models"] or None)
    print(f"serving models to watch: {[(t['model_name'], t['model_version'], t['namespace']) for t in targets]}")
    return targets


@task
@fail_fast_unless_transient
def collect(target: dict[str, str], run_id=None, ti=None) -> dict[str, Any]:
    from detectops.deploy import connect
    from detectops.monitoring import steps
    from detectops.orchestration import kube_config_path, mlflow_tracking_uri

    start, end = _window()
    return steps.collect(target, start, end, kube=connect(kube_config_path()), tracking_uri=mlflow_tracking_uri(),
                         holder=f"{ti.dag_id}/{run_id}/{ti.map_index}")


@task
@fail_fast_unless_transient
def judge(target: dict[str, str], collected: dict[str, Any], run_id=None, ti=None) -> dict[str, Any]:
    from detectops import settings
    from detectops.monitoring import steps
    from detectops.orchestration import mlflow_tracking_uri

    start, end = _window()
    out_dir = settings.work_dir() / "monitoring" / f"{target['model_name']}-{target['model_version']}-{end:%Y%m%dT%H%M%S}"
    return steps.judge(target, start, end, _policy(), tracking_uri=mlflow_tracking_uri(), out_dir=out_dir)


@task
@fail_fast_unless_transient
def live_figures(target: dict[str, str]) -> dict[str, Any]:
    from detectops.monitoring import steps
    from detectops.monitoring.prometheus import PrometheusClient
    from detectops.orchestration import prometheus_url

    start, end = _window()
    figures = steps.live_figures(PrometheusClient(prometheus_url()), target, start, end)
    print(f"live service over the window (Prometheus): {figures}")
    return figures


@task
@fail_fast_unless_transient
def report(target: dict[str, str], collected: dict[str, Any], drift: dict[str, Any], figures: dict[str, Any],
           run_id=None) -> str:
    from detectops.monitoring import steps
    from detectops.orchestration import mlflow_tracking_uri

    start, end = _window()
    return steps.report(target, start, end, collected, drift, figures, tracking_uri=mlflow_tracking_uri(),
                        dag_run_id=run_id)


def _last_batch_landed_at() -> str | None:
    from detectops.airflow_api import from_connection
    from detectops.assets import BATCH_LANDED_URI

    api = from_connection()
    events = api.call("GET", "assets/events", params={"asset_id": api.asset_id(BATCH_LANDED_URI),
                                                      "order_by": "-timestamp", "limit": 1}).get("asset_events", [])
    return events[0]["timestamp"] if events else None


@task(outlets=[DRIFT_DETECTED])
@fail_fast_unless_transient
def emit_drift(target: dict[str, str], drift: dict[str, Any], monitoring_run_id: str, outlet_events=None) -> dict[str, Any]:
    """Emit "drift detected" (with the model and the evidence) when the verdict is drift and the cooldown allows."""
    from airflow.exceptions import AirflowSkipException

    from detectops.monitoring import steps
    from detectops.orchestration import mlflow_tracking_uri

    if drift["verdict"] != "drift":
        raise AirflowSkipException(f"no drift event: the verdict is {drift['verdict']} ({drift['reason']})")
    tracking_uri = mlflow_tracking_uri()
    go, why = steps.should_alert(steps.previous_alert(target, tracking_uri=tracking_uri), _last_batch_landed_at())
    if not go:
        raise AirflowSkipException(why)
    _, end = _window()
    extra = steps.drift_event_extra(target, drift, monitoring_run_id, end)
    outlet_events[DRIFT_DETECTED].extra = extra
    steps.record_alert(target, extra, tracking_uri=tracking_uri)
    print(f"drift detected for {target['model_name']} v{target['model_version']} ({why}): {extra}")
    return extra


@task_group(group_id="monitor")
def monitor(target: dict[str, str]) -> None:
    """One served model: collect -> judge -> live figures -> report -> (drift event)."""
    collected = collect(target)
    drift = judge(target, collected)
    figures = live_figures(target)
    run = report(target, collected, drift, figures)
    emit_drift(target, drift, run)
