"""
### DetectOps — roll a model back by hand

A person (or a script) triggers this DAG from the UI's **Trigger DAG w/ config** form or the
REST API (`POST /api/v2/dags/detectops_rollback/dagRuns` with
`{"conf": {"model_name": "detector", "reason": "..."}}`). It puts the version that the alias
`previous` names back into service, then points `champion` at it:

1. **plan** — reads `champion` and `previous` of the model in the MLflow registry and the
   serving image recorded on `previous` (pinned by digest). Refuses at once, with a message,
   when there is no `previous` or it has no image.
2. **deploy** — the shared deployment path (`detectops.dagkit.deploy_group`, the same tasks
   as every DAG): deploy that image, smoke-test it in the cluster and through the Service, and
   on failure put back what served and record why on the version. No alias is touched here.
3. **move_alias** — only once the previous version serves: `champion` returns to it, the
   version rolled back from is tagged `rejected` with the reason, and `previous` moves to the
   champion before (never to the version just found bad). A retry changes nothing twice.

Each run rolls back one step. The CLI does the same alias move: `detectops rollback MODEL`.
Connections: `mlflow_default`, `kubernetes_default`.
"""

from __future__ import annotations

import pendulum

# Pre-imported for the dag-processor (see detectops.dagkit.deploy_group).
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # noqa: F401
from airflow.sdk import Param, dag, task

from detectops.dagkit import deploy_group
from detectops.notify import RunFailedWebhook
from detectops.orchestration import dag_defaults, fail_fast_unless_transient


@dag(
    dag_id="detectops_rollback",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["detectops", "rollback", "manual"],
    default_args=dag_defaults(),
    on_failure_callback=[RunFailedWebhook()],  # a failed run notifies the alert webhook
    doc_md=__doc__,
    params={
        "model_name": Param("detector", type="string", title="Registered model name"),
        "namespace": Param("detectops", type="string", title="Kubernetes namespace"),
        "deployment": Param("detector", type="string", title="Deployment (and Service) name"),
        "score_threshold": Param(0.3, type="number", minimum=0, maximum=1, title="Serving score threshold"),
        "min_detections": Param(1, type="integer", minimum=0, title="Smoke test: objects the astronaut photo must yield",
                                description="1 for a COCO detector (it finds the person); 0 for a model of other classes "
                                            "(such as level 1's shapes): the smoke test then checks readiness and the contract."),
        "reason": Param("rolled back by hand", type="string", title="Why (recorded on the version rolled back from)"),
        "alias": Param("champion", type="string", title="Alias to roll back"),
        "previous_alias": Param("previous", type="string", title="Alias of the version to return to"),
    },
)
def detectops_rollback():
    @task(multiple_outputs=True)
    @fail_fast_unless_transient
    def plan(params=None) -> dict:
        from detectops.deploy.spec import DeploySpec
        from detectops.orchestration import mlflow_tracking_uri
        from detectops.registry import rollback_target

        target = rollback_target(params["model_name"], alias=params["alias"], previous_alias=params["previous_alias"],
                                 tracking_uri=mlflow_tracking_uri())
        print(f"{params['model_name']}: {params['alias']} {target['from_version']} -> {target['version']} "
              f"({target['image']})")
        spec = DeploySpec(model_name=params["model_name"], model_version=target["version"], image=target["image"],
                          namespace=params["namespace"], deployment=params["deployment"],
                          score_threshold=float(params["score_threshold"]),
                          min_detections=int(params["min_detections"]))
        return {"from_version": target["from_version"], "spec": spec.to_dict()}

    @task
    @fail_fast_unless_transient
    def move_alias(from_version: str | None, params=None) -> dict:
        from detectops.orchestration import mlflow_tracking_uri
        from detectops.registry import rollback

        return rollback(params["model_name"], alias=params["alias"], previous_alias=params["previous_alias"],
                        from_version=from_version, reason=params["reason"],
                        tracking_uri=mlflow_tracking_uri()).to_dict()

    planned = plan()
    deployed = deploy_group(planned["spec"], promote_alias=None, reject_stage="rollback")
    deployed.children["deploy.smoke_test"] >> move_alias(planned["from_version"])


detectops_rollback()
