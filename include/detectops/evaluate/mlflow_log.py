"""Log an evaluation to MLflow: params, metrics, report files and lineage tags.

Also the one place that connects to MLflow (``connect``), used by ``detectops.registry`` too:
it probes the server's ``/health`` with a short timeout first, so an unreachable server
fails in seconds with a message saying how to start one, instead of MLflow's client
retrying for minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from detectops import settings
from detectops.errors import ServiceUnavailableError

HOW_TO_START = (
    "Start one with `mlflow server --backend-store-uri sqlite:///$PWD/.state/mlflow.db "
    "--artifacts-destination $PWD/.state/mlartifacts --host 127.0.0.1 --port 5000 --workers 1` "
    "(or `scripts/services/mlflow.sh start`), then set MLFLOW_TRACKING_URI=http://127.0.0.1:5000 "
    "(in Airflow: the MLflow connection)."
)

#: Tag that identifies one evaluation (model, data, code, threshold, DAG run) for idempotency.
EVALUATION_KEY_TAG = "detectops.evaluation_key"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The explicit URI, else ``MLFLOW_TRACKING_URI``; neither is an error that says what to set."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ServiceUnavailableError(f"No MLflow tracking URI: pass tracking_uri or set MLFLOW_TRACKING_URI. {HOW_TO_START}")
    return uri.rstrip("/")


def check_tracking_server(uri: str, *, timeout: float = 3.0) -> None:
    """Raise ``ServiceUnavailableError`` unless ``<uri>/health`` answers 200 (http(s) URIs only)."""
    if not uri.startswith(("http://", "https://")):
        return  # a local file/sqlite store: nothing to probe
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as resp:
            if resp.status == 200:
                return
            problem = f"/health answered HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        problem = f"/health answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise ServiceUnavailableError(f"MLflow tracking server at {uri} is unreachable ({problem}). {HOW_TO_START}")


def connect(tracking_uri: str | None = None) -> Any:
    """An ``MlflowClient`` for a server known to be up; also points MLflow's fluent API at it."""
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_server(uri)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def find_finished_run(client: Any, experiment_id: str, tag: str, key: str) -> str | None:
    """The id of a FINISHED run tagged ``tag = key``: what a retried task logged before (None: nothing)."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{key}' and attributes.status = 'FINISHED'",
                              max_results=1)
    return runs[0].info.run_id if runs else None


def get_or_create_experiment(client: Any, name: str) -> str:
    """The experiment id of ``name``, creating it (race-safe) if missing."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created meanwhile by someone else
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-./ ]")


def metric_key(name: str) -> str:
    """A valid MLflow metric key (letters, digits, ``_ - . / space``) from a class name."""
    return _KEY_BAD.sub("_", name)


def evaluation_metrics(result: Any) -> dict[str, float]:
    """The numbers of an ``EvaluationResult`` as MLflow metrics; undefined (``None``) ones are left out."""
    out = {k: v for k, v in result.metrics.items() if v is not None}
    out.update({f"ap_class/{metric_key(k)}": v for k, v in result.per_class_ap.items() if v is not None})
    out.update({f"ap50_class/{metric_key(k)}": v for k, v in result.per_class_ap50.items() if v is not None})
    out.update({f"latency_{k}": v for k, v in result.latency.items() if k != "throughput_ips"})
    out["throughput_ips"] = result.latency.get("throughput_ips", 0.0)
    out["num_images"] = result.num_images
    out["num_detections"] = result.num_detections
    return {k: float(v) for k, v in out.items()}


def _as_dict(ref: Any) -> dict[str, Any]:
    if ref is None:
        return {}
    return dict(ref.to_dict()) if hasattr(ref, "to_dict") else dict(ref)


def evaluation_params(result: Any, model: dict[str, Any], dataset: dict[str, Any], code_version: str) -> dict[str, str]:
    params = {
        "model_source": model.get("source"),
        "model_name": model.get("name"),
        "model_version": model.get("version"),
        "model_sha256": model.get("sha256"),
        "dataset_name": dataset.get("name"),
        "dataset_sha256": dataset.get("sha256"),
        "dataset_num_images": dataset.get("num_images"),
        "code_version": code_version,
        "score_threshold": result.score_threshold,
    }
    return {k: str(v) for k, v in params.items() if v is not None}


def _extra_artifact_paths(extra: dict[str, Any] | None) -> list[tuple[str, Path]]:
    """Flatten ``{dir: path | [paths]}``; a missing path is an error before anything is logged."""
    out = []
    for artifact_dir, paths in (extra or {}).items():
        for p in [paths] if isinstance(paths, (str, Path)) else list(paths):
            path = Path(p)
            if not path.exists():
                raise FileNotFoundError(f"artifact {path} (for {artifact_dir}/) does not exist; nothing was logged")
            out.append((artifact_dir, path))
    return out


def log_evaluation(
    result: Any,
    *,
    experiment: str,
    model_ref: Any = None,
    dataset_ref: Any = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, Any] | None = None,
    run_name: str | None = None,
    dag_run_id: str | None = None,
    extra_artifacts: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log ``result`` (an ``EvaluationResult``) as one MLflow run; return its run id.

    ``model_ref`` / ``dataset_ref`` default to the references inside ``result``. Idempotent:
    a finished run of the same evaluation (same model sha256, dataset hash, code version,
    score threshold and DAG run) in the same experiment is returned instead of logging a
    duplicate. A run that fails half-way is marked FAILED, and the next call logs afresh.
    ``params``: extra run params; one named like a built-in (``score_threshold`` ...) replaces it.
    ``extra_artifacts``: ``{artifact_dir: path or [paths]}`` (files or directories) logged too,
    e.g. ``{"data_validation": [report.json]}``.
    """
    model = _as_dict(model_ref) or dict(result.model)
    dataset = _as_dict(dataset_ref) or dict(result.dataset)
    code_version = settings.code_version()
    all_params = evaluation_params(result, model, dataset, code_version)
    all_params.update({k: str(v) for k, v in (params or {}).items()})
    key_source = {"model": model.get("sha256") or model.get("path"), "dataset": dataset.get("sha256"),
                  "code": code_version, "params": all_params, "dag_run_id": dag_run_id}
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()[:32]

    extras = _extra_artifact_paths(extra_artifacts)
    client = connect(tracking_uri)
    from mlflow.entities import Metric, Param

    experiment_id = get_or_create_experiment(client, experiment)
    existing = find_finished_run(client, experiment_id, EVALUATION_KEY_TAG, key)
    if existing:
        result.run_id = existing
        return result.run_id

    all_tags = {
        EVALUATION_KEY_TAG: key,
        "detectops.kind": "evaluation",
        "model_sha256": model.get("sha256"),
        "dataset_sha256": dataset.get("sha256"),
        "code_version": code_version,
        "dag_run_id": dag_run_id,
        **(tags or {}),
    }
    all_tags = {k: str(v) for k, v in all_tags.items() if v is not None}
    name = run_name or f"eval-{model.get('name') or 'model'}-{(dataset.get('sha256') or '')[:8]}"
    run = client.create_run(experiment_id, run_name=name, tags=all_tags)
    run_id = run.info.run_id
    try:
        metrics = evaluation_metrics(result)
        ts = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
            params=[Param(k, v[:6000]) for k, v in all_params.items()],
        )
        client.log_artifacts(run_id, result.output_dir, artifact_path="evaluation")
        for artifact_dir, path in extras:
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=f"{artifact_dir}/{path.name}")
            else:
                client.log_artifact(run_id, str(path), artifact_path=artifact_dir)
        client.set_tag(run_id, "detectops.output_dir", result.output_dir)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    result.run_id = run_id
    return run_id
