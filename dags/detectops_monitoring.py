"""
### DetectOps monitoring — is the served model still seeing the data it was trained for?

Every 15 minutes (`DETECTOPS_MONITORING_CRON`) and by hand, for each served model (every
serving Deployment DetectOps made, stable track):

1. **collect** — the prediction log of its pods, read through the Kubernetes API as a log
   shipper would (the window's time, the previous container of a restarted pod too),
   de-duplicated on `request_id`, appended to the prediction store (hourly Parquet in MLflow).
2. **judge** — the served version's records against the reference statistics stored with
   that version at registration: Evidently's data-drift preset per feature (KS / chi² for small
   windows, Wasserstein / Jensen–Shannon for large ones), a minimum sample before any verdict,
   and Evidently's HTML reports.
3. **live_figures** — request rate, error rate, p50 / p99 latency, detections per image and
   dropped log records over the window, from Prometheus's HTTP API.
4. **report** — all of it in MLflow (experiment `detectops-monitoring`, tagged with the model version).
5. **emit_drift** — the `detectops_drift_detected` Asset event (model and evidence in `extra`)
   when the verdict is drift; level 1 listens. Once per served version until new data lands.

Connections: `kubernetes_default`, `mlflow_default`, `detectops_prometheus`, `detectops_airflow_api`.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag
from airflow.timetables.trigger import CronTriggerTimetable

from detectops.notify import RunFailedWebhook
from detectops.orchestration import dag_defaults

CRON = os.environ.get("DETECTOPS_MONITORING_CRON", "*/15 * * * *")


@dag(
    dag_id="detectops_monitoring",
    schedule=CronTriggerTimetable(CRON, timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["detectops", "monitoring", "drift"],
    default_args=dag_defaults(),
    on_failure_callback=[RunFailedWebhook()],  # a failed run notifies the alert webhook
    doc_md=__doc__,
    params={
        "window_minutes": Param(15, type="number", minimum=1, title="Window (minutes) up to the run's time"),
        "models": Param([], type="array", title="Registered models to watch (empty: every served model)"),
        "namespaces": Param([], type="array", title="Namespaces to look in (empty: all)"),
        "min_samples": Param(100, type="integer", minimum=1, title="Images needed before any verdict"),
        "large_sample": Param(1000, type="integer", minimum=1,
                              title="From this many rows on, distances instead of statistical tests"),
        "distance_threshold": Param(0.1, type="number", minimum=0, maximum=1,
                                    title="Drift at a normed Wasserstein / Jensen-Shannon distance of at least"),
        "p_value": Param(0.05, type="number", minimum=0, maximum=1, title="Drift at a KS / chi² p-value below"),
        "drift_share": Param(0.3, type="number", minimum=0, maximum=1,
                             title="Share of drifted features that makes a drift verdict"),
    },
)
def detectops_monitoring():
    from detectops.monitoring import tasks as t

    t.monitor.expand(target=t.find_targets())


detectops_monitoring()
