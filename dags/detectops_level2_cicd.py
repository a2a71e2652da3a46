"""
### DetectOps level 2 — CI/CD of the pipeline, canary releases

MLOps maturity level 2: a code change reaches production only through its tests, a staging run
of the pipeline, and a canary that live traffic judges. CI (`.github/workflows/ci.yml`) triggers
it through the REST API on every push to main (`scripts/ci/trigger_level2.py`); a person can
trigger it with the form below.

1. **checkout** — the commit `commit_sha` from `repo` (full SHA only).
2. **build** — the pipeline image `detectops/pipeline:<sha>` and the test image
   `detectops/pipeline-test:<sha>` from the commit's own Dockerfile; tags are immutable (a
   retry reuses the build, another build under the tag is refused).
3. **tests** — the test image's suite in a `KubernetesPodOperator` pod (`detectops-ci`);
   **check_tests** stops the run on a failure (pytest's summary in the error): nothing is staged
   or deployed. A lost pod is retried, a failing suite is not.
4. **staging** — level 1 runs in `detectops-staging` with the commit's pipeline image, on the
   current dataset version; its gate asks "not worse than the champion" (`staging_map_margin`)
   and it moves the alias `staging`. **staged_version** checks that this very run made it.
5. **canary** — the staged version's image (built on the commit's pipeline image) as a second
   Deployment (`track: canary`) behind the one production Service; traffic splits by replicas.
6. **analyse** — bounded load through the Service's NodePort on 127.0.0.1 while Prometheus
   windows compare canary and stable (success rate, p99 ratio, restarts, the smoke images).
7. **approval** (if `require_approval`) — Approve/Reject under Required Actions, or
   `PATCH /api/v2/dags/detectops_level2_cicd/dagRuns/{run_id}/taskInstances/approval/-1/hitlDetails`.
8. **promote** — stable takes the canary's image, `champion` moves, level 1's pipeline image
   (Variable `detectops_pipeline_image`; previous value kept) switches. Otherwise **roll_back**
   removes the canary and records why; nothing else changes.
9. **report** — the run's note and the MLflow run (experiment `detectops-releases`); a commit
   that was not released fails the run.

The canary stage holds the model's deploy Lease (setup/teardown), so no other DAG changes the
model meanwhile. Connections: `mlflow_default`, `detectops_registry`, `kubernetes_default`,
`detectops_prometheus`, `detectops_airflow_api`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag

from detectops.cicd.params import level2_params
from detectops.dagkit.model_lock import acquire_model_lock, release_model_lock
from detectops.notify import RunFailedWebhook
from detectops.orchestration import KUBERNETES_CONN_ID, dag_defaults, training_pod_settings

LEVEL1_DAG_ID = "detectops_level1_training"


@dag(
    dag_id="detectops_level2_cicd",
    schedule=None,  # CI triggers it through the REST API; a person through the UI
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # one release at a time: staging, the canary and the aliases are shared
    tags=["detectops", "level-2", "cicd", "canary"],
    default_args=dag_defaults(),
    on_failure_callback=[RunFailedWebhook()],
    doc_md=__doc__,
    params=level2_params(Param),
)
def detectops_level2_cicd():
    from detectops.cicd import tasks as t

    checked_out = t.checkout()
    images = t.build(checked_out)
    plan = t.test_plan(images)
    tests = KubernetesPodOperator(
        task_id="tests",
        kubernetes_conn_id=KUBERNETES_CONN_ID,
        namespace="{{ ti.xcom_pull(task_ids='test_plan')['namespace'] }}",
        name="detectops-tests",
        image="{{ ti.xcom_pull(task_ids='test_plan')['image'] }}",
        cmds=["sh", "-c"],
        arguments=["{{ ti.xcom_pull(task_ids='test_plan')['command'] }}"],
        do_xcom_push=True,  # pytest's exit code: failing tests fail check_tests at once, a lost pod is retried
        get_logs=True,
        on_finish_action="delete_pod",
        startup_timeout_seconds=300,
        **training_pod_settings(),
    )
    plan >> tests
    tested = t.check_tests(tests.output)

    conf = t.staging_conf(images)
    tested >> conf
    staging = TriggerDagRunOperator(
        task_id="staging",
        trigger_dag_id=LEVEL1_DAG_ID,
        trigger_run_id="staging__{{ run_id }}",
        conf=conf,
        wait_for_completion=True,
        poke_interval=15,
        allowed_states=["success"],
        failed_states=["failed"],
        fail_when_dag_is_paused=True,
        deferrable=True,
        # A retry would find its own run id taken and fail (Airflow's task runner); level 1
        # retries its own transient faults, so this task runs once.
        retries=0,
    )
    staged = t.staged_version(images)
    staging >> staged

    canary = t.canary_plan(staged)
    locked = acquire_model_lock()(canary)
    started = t.start_canary(canary)
    locked >> started
    decision = t.analyse(canary)
    started >> decision
    routed = t.route(decision, canary, checked_out)
    approval = ApprovalOperator(
        task_id="approval",
        subject="Release {{ params.model_name }} from commit {{ params.commit_sha[:12] }}?",
        body="{{ ti.xcom_pull(task_ids='route', key='approval_body') }}",
        defaults="Reject",
        response_timeout=timedelta(hours=1),
    )
    promoted = t.promote(canary, images)
    routed >> [approval, promoted]
    approval >> promoted
    rolled_back = t.roll_back()
    [promoted, started] >> rolled_back
    released = release_model_lock()(canary)
    rolled_back >> released
    released.as_teardown(setups=locked)
    released >> t.report()


detectops_level2_cicd()
