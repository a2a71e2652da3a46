"""The batch-inference DAG's work as plain functions (dicts in, dicts out), testable without Airflow.

1. :func:`jobs_from` — what to score: each event's ``extra`` (Asset-triggered runs) or the run's
   Params (a person's trigger), missing fields from the Params' defaults.
2. :func:`resolve_job` — the model version (an alias, or a version given) and the serving image
   recorded on it (by digest: the pod runs exactly what serves); the input as a store URI that
   pods can read (a local directory under the landing roots is published first); the namespace.
   Returns the scoring pod's ``KubernetesPodOperator`` arguments (``image``, ``namespace``,
   ``arguments``). :func:`resolve_jobs` does it for every job of a run: one bad event (no such
   version, a location outside the landing area) rejects that job, not the others.
3. :func:`scored_extra` — the ``batch_scored`` Asset event's ``extra`` from the pods' results;
   a pod that failed deterministically reported ``{"error": ...}`` (``detectops predict-batch
   --xcom-file`` exits 0 then, so Airflow does not retry it) and is listed as rejected.
4. :func:`check_rejected` — fails the run, after the good jobs were scored and published, when
   any job was rejected: the failure notification names each one and why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from detectops.errors import DataValidationError, DetectOpsError

#: Where the pod's ``detectops predict-batch`` writes its result; the XCom sidecar reads it.
XCOM_FILE = "/airflow/xcom/return.json"
JOB_FIELDS = ("location", "model_name", "alias", "version", "namespace", "min_score")
#: Event ``extra`` names that differ from the Params' names.
EVENT_ALIASES = {"model": "model_name"}


def jobs_from(events: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One job per event (in order), else one from the Params; each with every ``JOB_FIELDS`` key."""
    defaults = {k: params.get(k) for k in JOB_FIELDS}
    if not events:
        return [defaults]
    jobs = []
    for extra in events:
        job = dict(defaults)
        for key, value in dict(extra or {}).items():
            key = EVENT_ALIASES.get(key, key)
            if key in JOB_FIELDS and value not in (None, ""):
                job[key] = value
        jobs.append(job)
    return jobs


def resolve_model(name: str, *, alias: str | None, version: str | None, tracking_uri: str) -> dict[str, str]:
    """``{name, version, image}``: the version (``version`` or the one ``alias`` names) and its serving image."""
    from detectops.registry.models import get_alias, get_version_tags

    if version in (None, ""):
        ref = get_alias(name, alias or "champion", tracking_uri=tracking_uri)
        if ref is None:
            raise DetectOpsError(f"{name}@{alias} does not exist in the model registry: give a version, or an alias "
                                 "that names one (e.g. champion once a version serves).")
        version = ref.version
    from mlflow.exceptions import MlflowException

    try:
        tags = get_version_tags(name, version, tracking_uri=tracking_uri)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise DetectOpsError(f"{name} version {version} is not registered ({exc.message}).") from exc
        raise
    image = tags.get("image")
    if not image or "@sha256:" not in image:
        raise DetectOpsError(
            f"{name} version {version} has no serving image recorded (tag 'image' = repository@digest): batch "
            "scoring runs the version's own detector image. Build it first (level 0 / level 1 do, or "
            f"`detectops build --registered-model {name} --model-version {version} ...`).")
    return {"name": name, "version": str(version), "image": image}


def resolve_input(location: Any, *, tracking_uri: str, allow_roots: Sequence[str] | None = None) -> dict[str, str]:
    """``{uri, sha256, location}``: a store URI pods can read. A local directory must lie under the
    landing roots (``detectops.data.landing.allowed_roots``) and is published (once per content)."""
    from detectops.batch import inputs
    from detectops.data import landing, store

    if not isinstance(location, str) or not location.strip():
        raise DataValidationError('No images to score: set "location" (a directory under the landing area, or '
                                  'runs:/<run id>/batch of a stored batch) in the form or the event\'s extra.')
    checked = landing.check_location(location.strip(), allow_roots or landing.allowed_roots())
    if checked.startswith(inputs.STORE_PREFIX):
        info = store.stored_info(checked, tracking_uri=tracking_uri)
        return {"uri": checked, "sha256": info["sha256"], "location": location}
    return {**inputs.publish(checked, tracking_uri=tracking_uri), "location": location}


def pod_arguments(model: Mapping[str, str], batch: Mapping[str, str], *, tracking_uri: str,
                  min_score: float | None) -> list[str]:
    """``detectops predict-batch`` in the detector image (its model is ``$DETECTOPS_MODEL_DIR``)."""
    from detectops.platform_net import pod_reachable_url

    args = ["predict-batch", batch["uri"], "--model-name", model["name"], "--model-version", model["version"],
            "--tracking-uri", pod_reachable_url(tracking_uri), "--output", "/tmp/batch-scoring",
            "--xcom-file", XCOM_FILE]
    if min_score is not None:
        args += ["--min-score", str(float(min_score))]
    return args


def resolve_job(job: Mapping[str, Any], *, tracking_uri: str, kube_config: str | None,
                allow_roots: Sequence[str] | None = None) -> dict[str, Any]:
    """The scoring pod of one job: ``{image, namespace, arguments}`` (its namespace exists after this)."""
    from detectops.pipeline import prepare_namespace

    model = resolve_model(str(job["model_name"]), alias=job.get("alias"), version=job.get("version"),
                          tracking_uri=tracking_uri)
    batch = resolve_input(job.get("location"), tracking_uri=tracking_uri, allow_roots=allow_roots)
    namespace = str(job.get("namespace") or "detectops")
    prepare_namespace(namespace, kube_config=kube_config)
    pod = {"image": model["image"], "namespace": namespace,
           "arguments": pod_arguments(model, batch, tracking_uri=tracking_uri, min_score=job.get("min_score"))}
    print(f"scoring {batch['location']} ({batch['uri']}, {batch['sha256'][:12]}) with {model['name']} "
          f"v{model['version']} in {namespace}: {json.dumps(pod)}")
    return pod


def resolve_jobs(jobs: Sequence[Mapping[str, Any]], *, tracking_uri: str, kube_config: str | None,
                 allow_roots: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{"pods": [...], "rejected": [{"job", "error"}]}`` for the jobs of one run.

    A deterministic problem with one job (``DetectOpsError``: no such version, no image, a bad
    location) rejects that job and the others go on; a transient fault (MLflow or the cluster
    unreachable) raises, so the task is retried. With every job rejected the run fails here,
    with every reason: there is nothing to score.
    """
    from detectops.errors import is_transient

    pods, rejected = [], []
    for job in jobs:
        try:
            pods.append(resolve_job(job, tracking_uri=tracking_uri, kube_config=kube_config, allow_roots=allow_roots))
        except DetectOpsError as exc:
            if is_transient(exc):
                raise
            print(f"rejected {json.dumps(dict(job), default=str)}: {exc}")
            rejected.append({"job": dict(job), "error": str(exc)})
    if not pods:
        raise DataValidationError("Nothing to score: " + " | ".join(_describe(r) for r in rejected))
    return {"pods": pods, "rejected": rejected}


def _describe(rejected: Mapping[str, Any]) -> str:
    job = rejected["job"]
    where = job.get("location") or job.get("input") or "?"
    return f"{where} with {job.get('model_name') or job.get('model') or '?'}: {rejected['error']}"


def scored_extra(pods: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]],
                 rejected: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The ``batch_scored`` event's ``extra``: the runs and their counts (see ``detectops.assets``),
    and the jobs that were rejected (at resolve, or by a pod's deterministic failure)."""
    runs, rejected = [], list(rejected)
    for pod, r in zip(pods, results):
        if r.get("error"):
            rejected.append({"job": {"location": pod["arguments"][1], "image": pod["image"]}, "error": r["error"]})
            continue
        runs.append({"run_id": r.get("run_id"), "input": r["input"]["location"], "input_sha256": r["input"]["sha256"],
                     "model": r["model"].get("registered_name"), "version": r["model"].get("registered_version"),
                     "image": pod["image"], "images_scored": r["images_scored"], "images_failed": r["images_failed"],
                     "detections": r["detections"], "reused": r.get("reused", False)})
    extra: dict[str, Any] = {"runs": runs, "rejected": rejected}
    for key in ("images_scored", "images_failed", "detections"):
        extra[key] = sum(int(r[key]) for r in runs)
    if runs:
        extra.update({k: runs[-1][k] for k in ("model", "version", "image", "run_id")})
    return extra


def check_rejected(extra: Mapping[str, Any]) -> None:
    """Raise ``DataValidationError`` naming every rejected job: the run's good jobs are already published."""
    rejected = list(extra.get("rejected") or [])
    if rejected:
        raise DataValidationError(f"{len(rejected)} of {len(rejected) + len(extra.get('runs') or [])} batch(es) were "
                                  "not scored; the others were and are published. "
                                  + " | ".join(_describe(r) for r in rejected))
