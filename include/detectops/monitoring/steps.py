"""The monitoring DAG's steps as plain functions: references in, small dicts out (testable without Airflow).

For each served model (a serving Deployment of the cluster) and a time window:
1. ``collect`` — its pods' prediction records into the prediction store (``monitoring.store``);
2. ``judge`` — the window's records of the served version against that version's reference
   (``monitoring.drift``), with Evidently's HTML reports;
3. ``live_figures`` — the service as Prometheus saw it over the window;
4. ``report`` — all of it in MLflow (experiment ``detectops-monitoring``), one run per
   (model, version, window): a retried task finds the run it logged before;
5. ``drift_event`` — whether to tell level 1 (the "drift detected" Asset), with the cooldown.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

MONITORING_EXPERIMENT = "detectops-monitoring"
WINDOW_KEY_TAG = "detectops.monitoring.key"
ALERT_TAG = "detectops.drift.alert"


# ------------------------------------------------------------------------------------ targets
@dataclass(frozen=True)
class Target:
    namespace: str
    deployment: str
    model_name: str
    model_version: str
    track: str

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def served_models(kube: Any, *, namespaces: list[str] | None = None, models: list[str] | None = None) -> list[dict[str, str]]:
    """Every serving Deployment DetectOps made (stable track), as monitoring targets."""
    apps = kube.apps
    selector = "app.kubernetes.io/part-of=detectops,app.kubernetes.io/component=serving"
    found = (apps.list_deployment_for_all_namespaces(label_selector=selector).items if not namespaces else
             [d for ns in namespaces for d in apps.list_namespaced_deployment(ns, label_selector=selector).items])
    targets = []
    for d in found:
        labels = d.metadata.labels or {}
        notes = (d.spec.template.metadata.annotations or {})
        target = Target(d.metadata.namespace, d.metadata.name, notes.get("detectops.io/model-name", ""),
                        notes.get("detectops.io/model-version", ""), labels.get("detectops.io/track", "stable"))
        if target.model_name and target.track == "stable" and (not models or target.model_name in models):
            targets.append(target.to_dict())
    return sorted(targets, key=lambda t: (t["model_name"], t["namespace"]))


def window(end: datetime | str, minutes: float) -> tuple[datetime, datetime]:
    at = datetime.fromisoformat(str(end)) if not isinstance(end, datetime) else end
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return at - timedelta(minutes=minutes), at


# ------------------------------------------------------------------------------------ 1. collect
def collect(target: dict[str, str], start: datetime, end: datetime, *, kube: Any, tracking_uri: str,
            holder: str) -> dict[str, Any]:
    from detectops.monitoring.collect import collect_from_cluster
    from detectops.monitoring.store import PredictionStore, store_lock

    collected = collect_from_cluster(kube.core, target["namespace"], target["deployment"], start=start, end=end)
    store = PredictionStore(target["model_name"], tracking_uri=tracking_uri)
    with store_lock(kube, target["model_name"], holder):
        new = store.append(collected.sorted_records())
    out = {"records": len(collected.records), "new": new, "malformed": collected.malformed,
           "duplicates": collected.duplicates, "sources": collected.sources}
    print(f"{target['model_name']} v{target['model_version']} in {target['namespace']}: {out['records']} records "
          f"from {len(collected.sources)} container logs ({new} new to the store, {collected.malformed} malformed lines skipped)")
    return out


# ------------------------------------------------------------------------------------ 2. judge
def judge(target: dict[str, str], start: datetime, end: datetime, policy: dict[str, Any], *, tracking_uri: str,
          out_dir: Path) -> dict[str, Any]:
    """Drift of the served version's records in the window; the HTML reports go to ``out_dir``."""
    from detectops.monitoring.drift import DriftPolicy, compute_drift, render_reports
    from detectops.monitoring.reference import load_reference
    from detectops.monitoring.store import PredictionStore

    records = PredictionStore(target["model_name"], tracking_uri=tracking_uri).read(start, end)
    if not records.empty:
        records = records[records["model_version"].astype(str) == str(target["model_version"])]
    try:
        reference = load_reference(target["model_name"], target["model_version"], tracking_uri=tracking_uri)
    except LookupError as exc:
        from detectops.errors import DataValidationError

        raise DataValidationError(f"cannot judge drift: {exc}") from exc
    drift_policy = DriftPolicy.from_dict(policy)
    result = compute_drift(reference, records, drift_policy)
    reports = render_reports(reference, records, out_dir, drift_policy) if len(records) else []
    print(f"drift verdict: {result.verdict} ({result.reason})")
    for f in result.features:
        print(f"  {f.name:32s} {f.method:14s} {f.value!s:>12s} {'DRIFT' if f.drifted else ''}")
    return {**result.to_dict(), "reports": [str(p) for p in reports]}


# ------------------------------------------------------------------------------------ 3. Prometheus
def live_figures(prom: Any, target: dict[str, str], start: datetime, end: datetime) -> dict[str, float | None]:
    """The service over the window, from Prometheus: rates, latency quantiles, detections per image, drops."""
    seconds = max(60, int((end - start).total_seconds()))
    sel = f'model="{target["model_name"]}",namespace="{target["namespace"]}",track="{target["track"]}"'
    rng = f"[{seconds}s]"
    queries = {
        "request_rate": f"sum(rate(detectops_http_requests_total{{{sel}}}{rng}))",
        "error_rate": (f'sum(rate(detectops_http_requests_total{{{sel},status=~"5.."}}{rng})) / '
                       f"sum(rate(detectops_http_requests_total{{{sel}}}{rng}))"),
        "latency_p50_s": f"histogram_quantile(0.5, sum by (le) (rate(detectops_http_request_duration_seconds_bucket{{{sel}}}{rng})))",
        "latency_p99_s": f"histogram_quantile(0.99, sum by (le) (rate(detectops_http_request_duration_seconds_bucket{{{sel}}}{rng})))",
        "detections_per_image": (f"sum(increase(detectops_detections_per_image_sum{{{sel}}}{rng})) / "
                                 f"sum(increase(detectops_detections_per_image_count{{{sel}}}{rng}))"),
        "predlog_dropped": f"sum(increase(detectops_prediction_log_dropped_total{{{sel}}}{rng}))",
    }
    out: dict[str, float | None] = {}
    for name, promql in queries.items():
        result = prom.query(promql, time=end)
        value = float(result[0]["value"][1]) if result else None
        out[name] = None if value is None or value != value else round(value, 6)  # NaN (0/0): no traffic
    return out


# ------------------------------------------------------------------------------------ 4. report
def window_key(target: dict[str, str], start: datetime, end: datetime) -> str:
    text = json.dumps([target["model_name"], target["model_version"], target["namespace"], start.isoformat(),
                       end.isoformat()])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def report(target: dict[str, str], start: datetime, end: datetime, collected: dict[str, Any], drift: dict[str, Any],
           figures: dict[str, Any], *, tracking_uri: str, dag_run_id: str | None) -> str:
    """One MLflow run per (model, version, window): drift per feature, verdict, HTML, Prometheus, drops."""
    from mlflow.entities import Metric

    from detectops.evaluate.mlflow_log import connect, find_finished_run, get_or_create_experiment

    client = connect(tracking_uri)
    experiment_id = get_or_create_experiment(client, MONITORING_EXPERIMENT)
    key = window_key(target, start, end)
    existing = find_finished_run(client, experiment_id, WINDOW_KEY_TAG, key)
    if existing:
        return existing
    tags = {WINDOW_KEY_TAG: key, "model_name": target["model_name"], "model_version": target["model_version"],
            "namespace": target["namespace"], "track": target["track"], "verdict": drift["verdict"],
            "window_start": start.isoformat(), "window_end": end.isoformat(), "dag_run_id": dag_run_id or ""}
    run = client.create_run(experiment_id, run_name=f"{target['model_name']}-v{target['model_version']}-{end:%Y%m%dT%H%M}",
                            tags=tags)
    ts = int(end.timestamp() * 1000)
    metrics = [Metric(f"drift/{f['name']}", f["value"], ts, 0) for f in drift["features"] if f["value"] is not None]
    metrics += [Metric(f"drifted/{f['name']}", float(f["drifted"]), ts, 0) for f in drift["features"]]
    metrics += [Metric("drift_share", drift["drift_share"], ts, 0), Metric("images", drift["images"], ts, 0),
                Metric("records_malformed", collected["malformed"], ts, 0),
                Metric("records_collected", collected["records"], ts, 0)]
    metrics += [Metric(f"live/{k}", v, ts, 0) for k, v in figures.items() if v is not None]
    client.log_batch(run.info.run_id, metrics=metrics)
    with tempfile.TemporaryDirectory() as tmp:
        summary = {"target": target, "window": [start.isoformat(), end.isoformat()], "collected": collected,
                   "drift": {k: v for k, v in drift.items() if k != "reports"}, "live": figures}
        (Path(tmp) / "monitoring.json").write_text(json.dumps(summary, indent=1, default=str))
        client.log_artifact(run.info.run_id, str(Path(tmp) / "monitoring.json"))
    for path in drift.get("reports", []):
        client.log_artifact(run.info.run_id, path, artifact_path="drift_reports")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


# ------------------------------------------------------------------------------------ 5. the event
def should_alert(previous_alert: dict[str, Any] | None, last_batch_landed_at: str | None) -> tuple[bool, str]:
    """The cooldown: one alert per served version until new data lands.

    ``previous_alert``: the alert already emitted for the *served version* (its tag; a new
    version serving starts with none). ``last_batch_landed_at``: the latest batch-landed Asset
    event's time (ISO), or None.
    """
    from detectops.monitoring.collect import parse_time

    if not previous_alert:
        return True, "first drift alert for this version"
    if last_batch_landed_at and parse_time(last_batch_landed_at) > parse_time(previous_alert["at"]):
        return True, f"new data landed at {last_batch_landed_at}, after the last alert ({previous_alert['at']})"
    return False, (f"cooldown: drift was already reported for this version at {previous_alert.get('at')} and no "
                   "batch has landed since; land labelled data of the new domain to retrain")


def previous_alert(target: dict[str, str], *, tracking_uri: str) -> dict[str, Any] | None:
    from detectops.registry.models import get_version_tags

    raw = get_version_tags(target["model_name"], target["model_version"], tracking_uri=tracking_uri).get(ALERT_TAG)
    return json.loads(raw) if raw else None


def record_alert(target: dict[str, str], extra: dict[str, Any], *, tracking_uri: str) -> None:
    from detectops.registry.models import set_version_tag

    set_version_tag(target["model_name"], target["model_version"], ALERT_TAG,
                    json.dumps({"at": extra["detected_at"], "run": extra.get("monitoring_run_id", "")}),
                    tracking_uri=tracking_uri)


def drift_event_extra(target: dict[str, str], drift: dict[str, Any], run_id: str, end: datetime) -> dict[str, Any]:
    """What level 1 reads from the event: the model, and the evidence."""
    return {"model": target["model_name"], "model_version": target["model_version"],
            "namespace": target["namespace"], "drifted_features": drift["drifted_features"],
            "drift_share": drift["drift_share"], "images": drift["images"], "monitoring_run_id": run_id,
            "detected_at": end.isoformat()}
