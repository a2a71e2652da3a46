"""Airflow glue: connections, shared DAG defaults, and the GX provider operator run per table.

This is the only library module that knows about Airflow. DAG files import it at parse
time, so it imports nothing heavy at module level; everything else happens inside tasks.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

MLFLOW_CONN_ID = "mlflow_default"
REGISTRY_CONN_ID = "detectops_registry"
KUBERNETES_CONN_ID = "kubernetes_default"
PROMETHEUS_CONN_ID = "detectops_prometheus"


def dag_defaults(owner: str = "detectops") -> dict[str, Any]:
    """default_args shared by every DetectOps DAG: an owner, and retries with backoff for transient faults.

    Deterministic failures must not use these retries: wrap a task's callable with
    ``fail_fast_unless_transient`` so they fail at once.
    """
    return {
        "owner": owner,
        "retries": 3,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,  # 20 s, 40 s, 80 s: enough for MLflow or a pod to come back
        "max_retry_delay": timedelta(minutes=5),
    }


def fail_fast_unless_transient(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a task's callable so that only transient faults are retried (``detectops.errors.is_transient``).

    A data, validation, gate, promotion or rollback failure raises ``AirflowFailException``
    (the task fails at once, whatever its ``retries``); a network error, a 5xx, a timeout or a
    service starting up propagates unchanged and Airflow retries it with backoff. Airflow's own
    control-flow exceptions (skip, fail, reschedule) pass through untouched. Use it under
    ``@task``::

        @task
        @fail_fast_unless_transient
        def register(...): ...
    """

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            from airflow.sdk import exceptions as airflow

            from detectops.errors import is_transient

            control_flow = (airflow.AirflowSkipException, airflow.AirflowFailException, airflow.AirflowRescheduleException,
                            airflow.DownstreamTasksSkipped, airflow.AirflowSensorTimeout)
            if isinstance(exc, control_flow) or is_transient(exc):
                raise
            raise airflow.AirflowFailException(
                f"{type(exc).__name__}: {exc}\n(not retried: this failure is deterministic, a retry would repeat it)"
            ) from exc

    return run


def deployer_pod_settings() -> dict[str, Any]:
    """KubernetesPodOperator arguments for the in-cluster deployer pod.

    The deployer talks to the Kubernetes API with its ServiceAccount (in-cluster config through
    the ``kubernetes`` Service), whose RBAC is limited to its namespace, and smoke-tests the new
    version through the serving Service's ClusterIP. No host network: the pod is an ordinary pod.
    """
    return {"service_account_name": "detectops-deployer"}


def training_pod_settings() -> dict[str, Any]:
    """KubernetesPodOperator arguments for the training pod: bounded resources, non-root.

    Requests are what the scheduler reserves (one core, so a serving pod still fits beside it on
    a 2-core node); the limits stop a runaway from starving the node. The pod needs no API
    access (it talks only to MLflow), so no ServiceAccount token is mounted.
    """
    from kubernetes.client import models as k8s  # the provider imports it already

    return {
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "2", "memory": "4Gi"}),
        "security_context": k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=10001, run_as_group=10001),
        "automount_service_account_token": False,
    }


def _connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def mlflow_tracking_uri(conn_id: str = MLFLOW_CONN_ID) -> str:
    """The MLflow tracking URI of the ``mlflow_default`` connection (an HTTP connection)."""
    conn = _connection(conn_id)
    scheme = conn.schema or "http"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{conn.host}{port}"


def registry_settings(conn_id: str = REGISTRY_CONN_ID) -> dict[str, Any]:
    """Registry address, credentials and Docker engine from the ``detectops_registry`` connection."""
    conn = _connection(conn_id)
    extra = conn.extra_dejson or {}
    return {
        "registry": f"{conn.host}:{conn.port}" if conn.port else conn.host,
        "username": conn.login or None,
        "password": conn.password or None,
        "repository": extra.get("repository", "detectops/detector"),
        "docker_host": extra.get("docker_host"),
        "base_image": extra.get("base_image"),
    }


def prometheus_url(conn_id: str = PROMETHEUS_CONN_ID) -> str:
    """Prometheus' HTTP API address from the ``detectops_prometheus`` connection (an HTTP connection)."""
    conn = _connection(conn_id)
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.schema or 'http'}://{conn.host}{port}"


def kube_config_path(conn_id: str = KUBERNETES_CONN_ID) -> str | None:
    """The kubeconfig file of the ``kubernetes_default`` connection (None: in-cluster config)."""
    extra = _connection(conn_id).extra_dejson or {}
    return extra.get("kube_config_path") or extra.get("extra__kubernetes__kube_config_path")


def validate_table_with_gx(dataset: dict, table: str, context: dict, purpose: dict | str | None = None) -> dict:
    """Validate one table of a COCO dataset with the GX provider's ``GXValidateDataFrameOperator``.

    The provider's operator loads its DataFrame in ``__init__`` (at DAG parse time) and
    imports Great Expectations when its module is imported, which would cost the
    dag-processor seconds per parse and freeze the dataset at parse time. So the DAG runs
    it here, at task run time, for the dataset this run resolved. The operator pushes the
    validation result to XCom and raises ``GXValidationFailed`` on failure; we turn that
    into a ``DataValidationError`` that names the failed expectations with example rows,
    and keep the full result as a JSON report for MLflow.

    ``purpose``: what the data is for (``detectops.quality.purpose.Purpose.to_dict()`` or
    ``"evaluation"``; default evaluation): only the classes it needs must have boxes.
    """
    from great_expectations_provider.common.errors import GXValidationFailed
    from great_expectations_provider.operators.validate_dataframe import GXValidateDataFrameOperator

    from detectops.quality.gx_operators import make_dataframe_loader, make_expectations, result_format_for, summarize_gx_result
    from detectops.settings import work_dir

    report_dir = work_dir() / "validation" / _safe(context["run_id"]) / _safe(dataset["sha256"][:12])
    report_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_dir / f"{table}.json"

    operator = GXValidateDataFrameOperator(
        task_id=f"gx_{table}",
        configure_dataframe=make_dataframe_loader(dataset["path"], table),
        configure_expectations=make_expectations(table, dataset_dir=dataset["path"], purpose=purpose),
        result_format=result_format_for(table),
    )
    # The operator hands its result to ti.xcom_push; capture it to write the report and
    # return a small record instead (this task's XCom stays small).
    captured = _XComCapture()
    try:
        operator.execute({**context, "ti": captured})
        failure = None
    except GXValidationFailed as exc:
        failure = exc
    result = captured.values.get("return_value")
    report_path.write_text(json.dumps(result, indent=2, default=str))
    if failure is not None:
        from detectops.errors import DataValidationError

        raise DataValidationError(
            f"dataset {dataset['path']} failed its '{table}' checks:\n{summarize_gx_result(result, table)}\n"
            f"Full report: {report_path}. Fix the dataset (or its annotations) and trigger the run again."
        ) from failure
    return {"table": table, "success": True, "report": str(report_path)}


class _XComCapture:
    """Stands in for the TaskInstance in the operator's context, keeping what it pushes."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.values[key] = value


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(text))
