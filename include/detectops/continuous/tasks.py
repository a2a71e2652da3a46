"""The level-1 DAG's TaskFlow tasks: each reads its Params and context, and calls one step.

Parse-time light (the DAG file imports this module): the steps import TensorFlow, MLflow, GX
and the Kubernetes client inside the task. Deterministic failures (bad data, a refused
candidate) fail at once; only transient ones are retried (``fail_fast_unless_transient``).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import get_current_context, task

from detectops.orchestration import fail_fast_unless_transient


def _params() -> dict[str, Any]:
    return dict(get_current_context()["params"])


@task
@fail_fast_unless_transient
def collect_batches(triggering_asset_events=None) -> dict[str, Any]:
    from detectops.continuous import steps
    from detectops.orchestration import mlflow_tracking_uri

    events = []
    for asset_events in (triggering_asset_events or {}).values():
        for event in asset_events:
            events.append({"extra": dict(event.extra or {}), "timestamp": str(event.timestamp),
                           "source": f"{event.source_dag_id or 'api'}:{event.source_run_id or ''}"})
    return steps.collect_batches(events, _params(), tracking_uri=mlflow_tracking_uri())


@task
@fail_fast_unless_transient
def validate_batches(collected: dict[str, Any], run_id=None) -> dict[str, Any]:
    from detectops.continuous import steps
    from detectops.orchestration import mlflow_tracking_uri

    return steps.validate_batches(collected, _params(), tracking_uri=mlflow_tracking_uri(),
                                  context=get_current_context(), dag_run_id=run_id)


@task
@fail_fast_unless_transient
def version_dataset(validated: dict[str, Any]) -> dict[str, Any]:
    from detectops.continuous import steps
    from detectops.orchestration import mlflow_tracking_uri

    return steps.version_dataset(validated, _params(), tracking_uri=mlflow_tracking_uri())


@task.short_circuit(ignore_downstream_trigger_rules=False)
def retrain_needed(version: dict[str, Any]) -> bool:
    """False (skip training and everything after it, but not ``report``) when nothing changed."""
    return bool(version.get("retrain"))


@task
@fail_fast_unless_transient
def training_plan(version: dict[str, Any], run_id=None, dag_run=None) -> dict[str, Any]:
    from detectops.continuous import steps
    from detectops.orchestration import kube_config_path, mlflow_tracking_uri, registry_settings

    return steps.training_plan(version, _params(), tracking_uri=mlflow_tracking_uri(), registry=registry_settings(),
                               run_key=f"{dag_run.dag_id}/{run_id}", kube_config=kube_config_path())


@task
@fail_fast_unless_transient
def evaluate(trained: dict[str, Any], version: dict[str, Any], run_id=None) -> dict[str, Any]:
    from detectops.continuous import steps
    from detectops.orchestration import mlflow_tracking_uri

    return steps.evaluate(trained, version, _params(), tracking_uri=mlflow_tracking_uri(), dag_run_id=run_id)


@task
@fail_fast_unless_transient
def register(trained: dict[str, Any], version: dict[str, Any], evaluation: dict[str, Any], plan: dict[str, Any],
             validated: dict[str, Any], run_id=None) -> dict[str, Any]:
    from detectops.continuous import steps
    from detectops.orchestration import mlflow_tracking_uri

    return steps.register(trained, version, evaluation, _params(), tracking_uri=mlflow_tracking_uri(), dag_run_id=run_id,
                          plan=plan, validated=validated)


@task
@fail_fast_unless_transient
def build_image(registered: dict[str, Any], evaluation: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    from detectops.continuous import steps
    from detectops.orchestration import mlflow_tracking_uri, registry_settings

    return steps.build_image(registered, evaluation, plan, registry=registry_settings(),
                             tracking_uri=mlflow_tracking_uri())


@task
@fail_fast_unless_transient
def infra_validate(image: dict[str, Any], registered: dict[str, Any]) -> dict[str, Any]:
    from detectops.continuous import steps
    from detectops.orchestration import kube_config_path

    return steps.infra_validate(image, registered, _params(), kube_config=kube_config_path())


@task
@fail_fast_unless_transient
def gate(evaluation: dict[str, Any], infra: dict[str, Any], registered: dict[str, Any]) -> dict[str, Any]:
    from detectops.continuous import steps
    from detectops.orchestration import mlflow_tracking_uri

    return steps.gate(evaluation, infra, registered, _params(), tracking_uri=mlflow_tracking_uri())


@task.short_circuit(ignore_downstream_trigger_rules=False)
def deploy_spec(verdict: dict[str, Any], image: dict[str, Any], registered: dict[str, Any]) -> dict[str, Any] | None:
    """The shared deploy group's spec when the gate passed; None (skip the deploy) otherwise."""
    from detectops.continuous import steps

    return steps.deploy_spec(verdict, image, registered, _params())


@task(trigger_rule="all_done")
@fail_fast_unless_transient
def report(collected=None, validated=None, version=None, evaluation=None, verdict=None, deployed=None,
           dag_run=None) -> dict[str, Any]:
    """The run's note (promoted / not promoted, and why / nothing to retrain); fails a run whose steps failed."""
    from detectops.continuous import steps

    return steps.report(
        dag_run.dag_id, dag_run.run_id, _params(),
        collected=collected, validated=validated, version=version,
        evaluation=evaluation, verdict=verdict, deployed=deployed,
    )
