"""The level-2 DAG's TaskFlow tasks: each reads its Params and connections and calls one step.

Parse-time light (the DAG file imports this module). Deterministic failures (a bad SHA, a
commit that does not build, a canary that fails) fail at once; transient ones are retried.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import get_current_context, task

from detectops.dagkit.model_lock import lock_holder
from detectops.orchestration import fail_fast_unless_transient

def _params() -> dict[str, Any]:
    return dict(get_current_context()["params"])


@task
@fail_fast_unless_transient
def checkout() -> dict[str, Any]:
    from detectops.cicd import steps

    return steps.checkout(_params())


@task
@fail_fast_unless_transient
def build(checked_out: dict[str, Any]) -> dict[str, Any]:
    from detectops.cicd import steps
    from detectops.orchestration import registry_settings

    return steps.build_images(checked_out, registry=registry_settings())


@task
@fail_fast_unless_transient
def test_plan(images: dict[str, Any]) -> dict[str, Any]:
    from detectops.cicd import steps
    from detectops.orchestration import kube_config_path

    return steps.test_plan(images, _params(), kube_config=kube_config_path())


@task
@fail_fast_unless_transient
def check_tests(result: dict[str, Any] | None) -> dict[str, Any]:
    from detectops.cicd import steps

    return steps.check_tests(result)


@task
@fail_fast_unless_transient
def staging_conf(images: dict[str, Any]) -> dict[str, Any]:
    from detectops.cicd import steps

    return steps.staging_conf(_params(), images)


@task
@fail_fast_unless_transient
def staged_version(images: dict[str, Any], run_id=None) -> dict[str, Any]:
    from detectops.cicd import steps
    from detectops.orchestration import mlflow_tracking_uri

    return steps.staged_version(_params(), images, staging_run=steps.staging_run_id(run_id),
                                tracking_uri=mlflow_tracking_uri())


@task
@fail_fast_unless_transient
def canary_plan(staged: dict[str, Any]) -> dict[str, Any]:
    from detectops.cicd import steps
    from detectops.deploy.kube import connect
    from detectops.orchestration import kube_config_path

    return steps.canary_plan(_params(), staged, kube=connect(kube_config_path()))


@task
@fail_fast_unless_transient
def start_canary(plan: dict[str, Any]) -> dict[str, Any]:
    from detectops.deploy.canary import start_canary as start
    from detectops.deploy.kube import connect
    from detectops.orchestration import kube_config_path

    return start(plan["canary"], holder=lock_holder(get_current_context()), kube=connect(kube_config_path()), log=print)


@task
@fail_fast_unless_transient
def analyse(plan: dict[str, Any]) -> dict[str, Any]:
    from detectops.cicd import steps
    from detectops.deploy.kube import connect
    from detectops.orchestration import kube_config_path, prometheus_url

    return steps.analyse(plan, _params(), prometheus_url=prometheus_url(), kube=connect(kube_config_path()))


@task.branch
def route(decision: dict[str, Any], plan: dict[str, Any], checked_out: dict[str, Any]) -> str | None:
    """``approval`` (a person decides), ``promote``, or nothing: the canary is rolled back."""
    from detectops.cicd import steps

    get_current_context()["ti"].xcom_push(key="approval_body", value=steps.approval_body(plan, decision, checked_out))
    return steps.route(decision, _params())


@task(trigger_rule="none_failed_min_one_success")
@fail_fast_unless_transient
def promote(plan: dict[str, Any], images: dict[str, Any]) -> dict[str, Any]:
    from airflow.sdk import Variable

    from detectops.cicd import release
    from detectops.deploy.kube import connect
    from detectops.orchestration import kube_config_path, mlflow_tracking_uri

    return release.promote(plan, images, tracking_uri=mlflow_tracking_uri(), kube=connect(kube_config_path()),
                           kube_config=kube_config_path(), holder=lock_holder(get_current_context()), variables=Variable)


@task(trigger_rule="all_done")
@fail_fast_unless_transient
def roll_back(**context) -> dict[str, Any]:
    """Runs whatever happened: unless the canary was promoted, remove it and say why."""
    from airflow.sdk.exceptions import AirflowSkipException

    from detectops.cicd import release
    from detectops.deploy.kube import connect
    from detectops.orchestration import kube_config_path, mlflow_tracking_uri

    ti = context["ti"]
    plan, promoted = ti.xcom_pull(task_ids="canary_plan"), ti.xcom_pull(task_ids="promote")
    if promoted:
        raise AirflowSkipException("promoted: nothing to roll back")
    if not plan:
        raise AirflowSkipException("no canary was planned: nothing to roll back")
    decision, approval = ti.xcom_pull(task_ids="analyse"), ti.xcom_pull(task_ids="approval")
    if decision and decision.get("decision") != "promote":
        reason = f"canary analysis: {decision.get('reason')}"
    elif approval and approval.get("chosen_options") != ["Approve"]:
        reason = f"{approval.get('chosen_options')} by {(approval.get('responded_by_user') or {}).get('name', 'a person')}"
    elif decision:
        reason = "the promotion failed (see the promote task's log); stable keeps its version"
    else:
        reason = "the canary did not start or its analysis failed (see the failed task's log)"
    return release.roll_back(plan, reason, tracking_uri=mlflow_tracking_uri(), kube=connect(kube_config_path()),
                             holder=lock_holder(context))


@task(trigger_rule="all_done")
@fail_fast_unless_transient
def report(**context) -> dict[str, Any]:
    """The run's note and MLflow record (every outcome); fails the run unless the commit was released."""
    from detectops.cicd import notes
    from detectops.orchestration import mlflow_tracking_uri

    ti, dag_run = context["ti"], context["dag_run"]
    states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
    pulled = {name: ti.xcom_pull(task_ids=name) for name in
              ("checkout", "build", "check_tests", "staged_version", "canary_plan", "analyse", "approval", "promote", "roll_back")}
    return notes.report(dag_run.dag_id, dag_run.run_id, _params(), states=states, results=pulled,
                        tracking_uri=mlflow_tracking_uri())
