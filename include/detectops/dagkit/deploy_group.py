"""``deploy_group``: the one deployment path of every DetectOps DAG, as an Airflow TaskGroup.

Parse-time light: this module imports only ``airflow.sdk``, the cncf provider's
KubernetesPodOperator and ``detectops.orchestration``; everything else is imported inside the
tasks, at run time. A DAG file that calls ``deploy_group`` should also import
``airflow.providers.cncf.kubernetes.operators.pod`` itself: the dag-processor pre-imports the
``airflow`` modules a DAG file names (``parsing_pre_import_modules``), and that one takes ~2 s.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import TaskGroup, XComArg, task

from detectops.dagkit.model_lock import DEFAULT_LOCK_WAIT_S, acquire_model_lock, lock_holder, release_model_lock
from detectops.orchestration import (
    KUBERNETES_CONN_ID,
    MLFLOW_CONN_ID,
    deployer_pod_settings,
    fail_fast_unless_transient,
)

#: Where KubernetesPodOperator's sidecar reads a pod's XCom.
XCOM_FILE = "/airflow/xcom/return.json"


def deploy_group(
    spec: XComArg,
    *,
    group_id: str = "deploy",
    promote_alias: str | None = "champion",
    previous_alias: str = "previous",
    reject_stage: str = "deploy",
    node_host: str = "127.0.0.1",
    kubernetes_conn_id: str = KUBERNETES_CONN_ID,
    mlflow_conn_id: str = MLFLOW_CONN_ID,
    lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
) -> TaskGroup:
    """Deploy one model version, smoke-test it, and promote or reject it: the same tasks in every DAG.

    **Input.** ``spec`` is an XComArg (the output of an upstream task) resolving to a
    ``detectops.deploy.spec.DeploySpec`` as a dict (``DeploySpec(...).to_dict()``): model name
    and version, image pinned by digest, namespace, track, Deployment and Service names,
    replicas, env, score threshold, resources, smoke expectations.

    **Tasks** (ids prefixed with ``group_id``):

    1. ``prepare`` — checks the spec (a bad one fails here, not mid-rollout) and applies the
       namespace with the deployer's ServiceAccount and namespaced Role (admin credentials of
       ``kubernetes_conn_id``). Returns the normalised spec.
    2. ``acquire_lock`` — *setup*: takes the model's Kubernetes Lease for this DAG run
       (``detectops.deploy.lock``), so that deploys and alias moves of one registered model never
       overlap, whichever DAG or person starts them. A reschedule-mode sensor: it waits up to
       ``lock_wait_s`` without holding a worker slot.
    3. ``ship_logs`` — the prediction log of the pods about to be replaced goes into the
       prediction store (``detectops.monitoring``) before the rollout removes them.
    4. ``deploy`` — a KubernetesPodOperator pod of the spec's own image running
       ``detectops deploy --spec JSON --record-rollback`` as ``detectops-deployer``: apply the
       Deployment and NodePort Service, wait for the rollout, smoke-test through the Service's
       ClusterIP from inside the cluster, roll back on failure. A rollback is reported as the
       pod's result (not a pod failure), so Airflow does not retry a deterministic failure; a
       pod that fails (evicted, API unreachable) is retried.
    5. ``smoke_test`` — from the host through the Service's NodePort on ``node_host``
       (loopback): a real photo, the TF-Serving contract and the expected detections. Fails at
       once if the deployer rolled back. Pushes the reason as XCom ``verdict`` when it fails.
    6. ``promote`` (only if ``promote_alias`` is not None) — after the smoke test passed:
       ``detectops.registry.promote`` moves ``promote_alias`` to the version and the old one to
       ``previous_alias``. Both may be templates (``"{{ params.alias }}"``); ``promote_alias``
       rendered empty moves nothing.
    7. ``reject`` — trigger rule ``one_failed`` on deploy/smoke_test: if there is a verdict on
       the version (rolled back, or failed the smoke test), puts the cluster back on the revision
       the deploy replaced when the new one still serves, and records the reason with
       ``detectops.registry.reject(..., stage=reject_stage)``. The alias is never touched. Without
       a verdict (the pod or the cluster failed, not the version) it skips: the version is not
       blamed for the infrastructure.
    8. ``release_lock`` — *teardown* of ``acquire_lock``: runs whatever happened (once the lock
       was taken) and releases only this run's Lease.

    Why a promotion failure does not reject: the version deployed and passed; the alias move is
    the commit point and is retried (transient) or re-run by a person, never undone by a rollback.

    **Outcome.** The group's non-teardown leaves are ``promote`` (or ``smoke_test``) and
    ``reject``, so a DAG run fails when the version was not promoted, and succeeds when it was.
    XComs: ``deploy`` returns the ``DeploymentResult`` dict (or the rollback record),
    ``smoke_test`` the ``SmokeResult``, ``promote`` what moved, ``reject`` the reason recorded.

    Connections: ``kubernetes_conn_id`` (admin kubeconfig: namespace, Lease, host-side smoke test,
    rollback on reject) and ``mlflow_conn_id`` (the registry).
    """
    with TaskGroup(group_id=group_id) as group:

        @task
        @fail_fast_unless_transient
        def prepare(spec: dict) -> dict:
            from detectops.deploy.spec import DeploySpec
            from detectops.orchestration import kube_config_path
            from detectops.pipeline import prepare_namespace

            checked = DeploySpec.from_dict(spec)
            prepare_namespace(checked.namespace, kube_config=kube_config_path(kubernetes_conn_id))
            return checked.to_dict()

        @task
        @fail_fast_unless_transient
        def ship_logs(spec: dict, **context) -> dict:
            """The prediction log of the pods this deploy will replace, into the prediction store first."""
            from detectops.deploy.kube import connect
            from detectops.monitoring.collect import ship_before_removal
            from detectops.orchestration import kube_config_path, mlflow_tracking_uri

            return ship_before_removal(connect(kube_config_path(kubernetes_conn_id)), spec,
                                       tracking_uri=mlflow_tracking_uri(mlflow_conn_id), holder=lock_holder(context))

        prepared = prepare(spec)
        spec_of = f"ti.xcom_pull(task_ids='{prepared.operator.task_id}')"
        locked = acquire_model_lock(kubernetes_conn_id=kubernetes_conn_id, lock_wait_s=lock_wait_s)(prepared)
        shipped = ship_logs(prepared)
        locked >> shipped

        deploy = KubernetesPodOperator(
            task_id="deploy",
            kubernetes_conn_id=kubernetes_conn_id,
            namespace=f"{{{{ {spec_of}['namespace'] }}}}",
            name="detectops-deployer",
            image=f"{{{{ {spec_of}['image'] }}}}",
            cmds=["detectops"],
            arguments=["deploy", "--spec", f"{{{{ {spec_of} | tojson }}}}", "--record-rollback", "--xcom-file", XCOM_FILE],
            do_xcom_push=True,
            get_logs=True,
            on_finish_action="delete_succeeded_pod",
            startup_timeout_seconds=300,
            **deployer_pod_settings(),
        )
        deploy_id = deploy.task_id

        @task
        @fail_fast_unless_transient
        def smoke_test(spec: dict, deployed: dict, **context) -> dict:
            from detectops.deploy.release import verdict_of
            from detectops.errors import DeployError
            from detectops.orchestration import kube_config_path
            from detectops.pipeline import smoke_test_deployment

            verdict = verdict_of(deployed)
            try:
                if verdict:
                    raise DeployError(verdict)
                return smoke_test_deployment(spec, kube_config=kube_config_path(kubernetes_conn_id),
                                             node_host=node_host)
            except DeployError as exc:  # a verdict on the version (SmokeFailed is a DeployError)
                context["ti"].xcom_push(key="verdict", value=verdict or f"smoke test through the Service failed: {exc}")
                raise

        smoked = smoke_test(prepared, deploy.output)
        shipped >> deploy

        promoted = None
        if promote_alias is not None:

            @task
            @fail_fast_unless_transient
            def promote(spec: dict, smoke: dict, alias: str, previous: str, **context) -> dict:
                from detectops.deploy.release import promote_version
                from detectops.orchestration import kube_config_path, mlflow_tracking_uri

                if not alias:
                    return {"model_name": spec["model_name"], "model_version": spec["model_version"], "alias": None}
                return promote_version(spec, alias=alias, previous_alias=previous or "previous",
                                       tracking_uri=mlflow_tracking_uri(mlflow_conn_id),
                                       kube_config=kube_config_path(kubernetes_conn_id), holder=lock_holder(context))

            promoted = promote(prepared, smoked, promote_alias, previous_alias)

        @task(trigger_rule="one_failed")
        @fail_fast_unless_transient
        def reject(**context) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from detectops.deploy.release import reject_version
            from detectops.orchestration import kube_config_path, mlflow_tracking_uri

            ti = context["ti"]
            spec = ti.xcom_pull(task_ids=prepared.operator.task_id)
            verdict = ti.xcom_pull(task_ids=smoked.operator.task_id, key="verdict")
            if not spec or not verdict:
                raise AirflowSkipException(
                    "no verdict on the version (the deploy pod or the cluster failed, not the model): "
                    "nothing recorded, see the failed task's log")
            return reject_version(spec, verdict, deployed=ti.xcom_pull(task_ids=deploy_id), stage=reject_stage,
                                  tracking_uri=mlflow_tracking_uri(mlflow_conn_id),
                                  kube_config=kube_config_path(kubernetes_conn_id), holder=lock_holder(context))

        rejected = reject()
        [deploy, smoked] >> rejected

        released = release_model_lock(kubernetes_conn_id=kubernetes_conn_id)(prepared)
        [rejected, promoted or smoked] >> released
        released.as_teardown(setups=locked)
    return group
