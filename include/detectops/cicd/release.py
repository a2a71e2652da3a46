"""What a level-2 release changes, and the record it leaves: promote, or roll back.

- ``promote``: stable takes the canary's image (a readiness-gated rolling update, smoke-tested
  through the NodePort, rolled back on failure), the canary goes, ``champion`` moves (the old one
  keeps ``previous``), and level 1's pipeline image switches to the commit's
  (``switch_pipeline_image``: the Variable ``detectops_pipeline_image``, its old value kept in
  ``detectops_pipeline_image_previous``).
- ``roll_back``: the canary goes (its prediction log shipped first); the staged version is tagged
  rejected at stage ``canary`` with the reason; neither ``champion`` nor the pipeline image changes.

Both are idempotent (a retried task finds the work done) and both write the release's MLflow run
(experiment ``detectops-releases``, one run per level-2 DAG run, found again by its tag): the
commit, the images' digests, the canary analysis window by window, the outcome and why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from detectops.continuous.steps import PIPELINE_IMAGE_VARIABLE

RELEASES_EXPERIMENT = "detectops-releases"
PREVIOUS_PIPELINE_IMAGE_VARIABLE = f"{PIPELINE_IMAGE_VARIABLE}_previous"
RUN_KEY_TAG = "detectops.level2_run"


class Variables(Protocol):
    """``airflow.sdk.Variable``'s two class methods used here (a dict-backed fake in unit tests)."""

    def get(self, key: str, default: Any = ...) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


def switch_pipeline_image(new: str, *, variables: Variables) -> dict[str, Any]:
    """Point level 1 at ``new``; the value it replaces is kept for rollback. Idempotent."""
    current = variables.get(PIPELINE_IMAGE_VARIABLE, default=None)
    if current == new:
        return {"changed": False, "current": new, "previous": variables.get(PREVIOUS_PIPELINE_IMAGE_VARIABLE, default=None)}
    variables.set(PREVIOUS_PIPELINE_IMAGE_VARIABLE, current or "")
    variables.set(PIPELINE_IMAGE_VARIABLE, new)
    print(f"level 1's pipeline image: {current or '(unset: each worker built its own)'} -> {new}")
    return {"changed": True, "current": new, "previous": current}


def release_run(run_key: str, *, tracking_uri: str, checked_out: Mapping[str, Any] | None = None,
                images: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """(experiment id, run id) of this level-2 DAG run's MLflow run (created once, found again by ``run_key``)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(RELEASES_EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(RELEASES_EXPERIMENT)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'", max_results=1)
    if found:
        return experiment_id, found[0].info.run_id
    sha = (checked_out or {}).get("sha", "")
    run = client.create_run(experiment_id, run_name=f"release {sha[:12]}", tags={RUN_KEY_TAG: run_key})
    params = {"commit_sha": sha, "subject": (checked_out or {}).get("subject", "")[:250],
              "pipeline_image": (images or {}).get("pipeline_image", ""),
              "test_image": (images or {}).get("test_image", "")}
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return experiment_id, run.info.run_id


def record(run_id: str, *, tracking_uri: str, outcome: str, reason: str, decision: Mapping[str, Any] | None,
           extra: Mapping[str, Any]) -> None:
    """The outcome, the reason, the analysis (a metric step per window) and ``extra`` (JSON) on the release run."""
    from mlflow import MlflowClient

    from detectops.monitoring.canary_analysis import window_metrics

    client = MlflowClient(tracking_uri)
    client.set_tag(run_id, "outcome", outcome)
    client.set_tag(run_id, "reason", reason[:5000])
    for key, value in extra.items():
        if isinstance(value, (str, int, float)) and value != "":
            client.set_tag(run_id, key, str(value))
    if decision:
        for step, metrics in window_metrics(decision):
            for key, value in metrics.items():
                client.log_metric(run_id, key, value, step=step)
        client.log_dict(run_id, dict(decision), "canary_analysis.json")
    client.log_dict(run_id, json.loads(json.dumps(extra, default=str)), f"{outcome.replace(' ', '_')}.json")


def promote(plan: Mapping[str, Any], images: Mapping[str, Any], *, tracking_uri: str, kube: Any,
            kube_config: str | None, holder: str, variables: Variables, node_host: str = "127.0.0.1") -> dict[str, Any]:
    """Stable takes the canary's image, ``champion`` moves, level 1's pipeline image switches, in that order.

    The alias and the Variable move only once the stable track serves the new version and passed
    its smoke test through the Service, so the registry never names what the cluster does not run.
    """
    from detectops.deploy.canary import promote_canary
    from detectops.deploy.release import promote_version

    deployed = promote_canary(plan["stable"], plan["canary"], tracking_uri=tracking_uri, holder=holder,
                              smoke_via="nodeport", node_host=node_host, kube=kube, log=print)
    moved = promote_version(plan["canary"], alias="champion", previous_alias="previous", tracking_uri=tracking_uri,
                            kube_config=kube_config, holder=holder)
    switched = switch_pipeline_image(images["pipeline_image"], variables=variables)
    return {"promoted": True, "model_name": plan["model_name"], "model_version": plan["model_version"],
            "image": plan["canary"]["image"], "previous_version": plan["stable"]["model_version"],
            "deployed": deployed, "alias": moved, "pipeline_image": switched}


def roll_back(plan: Mapping[str, Any], reason: str, *, tracking_uri: str, kube: Any, holder: str) -> dict[str, Any]:
    """Remove the canary; tag the staged version rejected (stage ``canary``) unless it is what serves."""
    from detectops import registry
    from detectops.deploy.canary import remove_canary

    removed = remove_canary(plan["canary"], tracking_uri=tracking_uri, holder=holder, reason=reason, kube=kube,
                            log=print)
    model, version = plan["model_name"], str(plan["model_version"])
    champion = registry.get_alias(model, "champion", tracking_uri=tracking_uri)
    blamed = version not in {str(plan["stable"]["model_version"]), champion and str(champion.version)}
    if blamed:
        registry.reject(model, version, reason, stage="canary", tracking_uri=tracking_uri)
    print(f"rolled back: {reason}" + ("" if blamed else f" (v{version} also serves as stable: not tagged rejected)"))
    return {"rolled_back": True, "reason": reason, "model_name": model, "model_version": version,
            "version_rejected": blamed, "canary_removed": removed}
