"""``training_pod``: the KubernetesPodOperator that trains a candidate (``detectops train``).

Parse-time light. The pod runs the pipeline image named by the upstream plan task and takes
everything it needs from its arguments: the dataset version's URI, MLflow's address as pods
reach it, the run key that lets a retried pod resume from its checkpoints, and an optional
warm start. Its result (the training run, the model's URI, the numbers) is the task's XCom.
"""

from __future__ import annotations

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

from detectops.orchestration import KUBERNETES_CONN_ID, training_pod_settings

XCOM_FILE = "/airflow/xcom/return.json"
#: The plan's fields that become ``detectops train`` options, in this order.
PLAN_OPTIONS = ("dataset", "label_map", "config", "tracking_uri", "experiment", "run_key", "run_name", "warm_start")


def training_pod(*, plan_task_id: str = "training_plan", task_id: str = "train",
                 kubernetes_conn_id: str = KUBERNETES_CONN_ID) -> KubernetesPodOperator:
    """The training pod of the plan that ``plan_task_id`` returned (``detectops.continuous.steps.training_plan``).

    Each option is its own templated argument (a list cannot come from one template without
    native rendering, which would turn other arguments' strings into numbers). An empty
    ``--warm-start`` means from scratch.
    """
    plan = f"ti.xcom_pull(task_ids='{plan_task_id}')"
    arguments = ["train", "--out", "/tmp/train", "--xcom-file", XCOM_FILE]
    for option in PLAN_OPTIONS:
        arguments += [f"--{option.replace('_', '-')}", f"{{{{ {plan}['{option}'] or '' }}}}"]
    return KubernetesPodOperator(
        task_id=task_id,
        kubernetes_conn_id=kubernetes_conn_id,
        namespace=f"{{{{ {plan}['namespace'] }}}}",
        name="detectops-train",
        image=f"{{{{ {plan}['image'] }}}}",
        cmds=["detectops"],
        arguments=arguments,
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        startup_timeout_seconds=300,
        **training_pod_settings(),
    )
