"""The pipeline's steps as plain functions: references in, a small dict out.

Each function is one DAG task's work, callable without Airflow (from the CLI, a pod or a
test). Inputs and outputs are the XCom-sized dicts of the stage records (``DatasetRef``,
``ModelRef``, ``EvaluationResult``, ...); datasets, models and images travel by path/URI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detectops.errors import DataValidationError

#: Dataset names that need no path.
SHIPPED_DATASETS = {"real-eval"}


def resolve_dataset(name_or_path: str) -> dict[str, Any]:
    """``real-eval`` (shipped) or a COCO dataset directory -> ``DatasetRef`` dict (content-hashed)."""
    from detectops.data import CocoDataset, real_eval_set

    if name_or_path in SHIPPED_DATASETS:
        root = real_eval_set()
    else:
        root = Path(name_or_path).expanduser()
        if not root.is_dir():
            raise DataValidationError(
                f"dataset directory {root} does not exist. Pass 'real-eval' or the path of a COCO "
                "dataset (a folder with annotations.json and images/)."
            )
    return CocoDataset.load(root).ref().to_dict()


def fetch_model(source: str, *, tracking_uri: str | None = None) -> dict[str, Any]:
    """Any model source -> a verified contract SavedModel on local disk (``ModelRef`` dict).

    ``tracking_uri``: the MLflow server of ``models:/`` / ``runs:/`` sources (a task passes its
    connection's; see ``needs_mlflow``).
    """
    from detectops.models import fetch_model as fetch

    return fetch(source, tracking_uri=tracking_uri).to_dict()


def needs_mlflow(source: str) -> bool:
    """Whether a model source lives in MLflow (so the task must look up the MLflow connection)."""
    from detectops.models.sources import MLFLOW_PREFIXES

    return source.strip().startswith(MLFLOW_PREFIXES)


def evaluate_and_log(
    model: dict[str, Any],
    dataset: dict[str, Any],
    validation: list[dict[str, Any]] | None = None,
    *,
    tracking_uri: str | None = None,
    score_threshold: float = 0.3,
    experiment: str = "detectops",
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset`` and log metrics + artifacts (and data reports) to MLflow."""
    from detectops.evaluate import evaluate_model, log_evaluation

    result = evaluate_model(model, dataset["path"], display_threshold=score_threshold, dataset_name=dataset["name"])
    run_id = log_evaluation(
        result,
        experiment=experiment,
        model_ref=model,
        dataset_ref=dataset,
        # Metrics use every detection (COCO-style); the threshold only drives what is drawn and served.
        params={"display_threshold": score_threshold},
        dag_run_id=dag_run_id,
        tracking_uri=tracking_uri,
        extra_artifacts={"data_validation": [v["report"] for v in validation or [] if v.get("report")]},
    )
    return {
        "run_id": run_id,
        "metrics": dict(result.metrics),
        "latency": dict(result.latency),
        "num_images": result.num_images,
        # The detections behind the metrics: registration builds the reference statistics from them.
        "detections": result.artifacts.get("coco_results_json", ""),
    }


def register_model(
    model: dict[str, Any],
    dataset: dict[str, Any],
    evaluation: dict[str, Any],
    *,
    tracking_uri: str | None = None,
    name: str = "detector",
    alias: str | None = None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Register the evaluated model (idempotent by model hash); ``alias`` (e.g. ``challenger``) may name it.

    Registration never moves ``champion`` or ``previous``: that is ``promote_model``'s job, once
    the version serves and passed its smoke test (so the registry and the cluster agree).
    """
    from detectops import registry
    from detectops.errors import PromotionError

    if alias in (registry.CHAMPION, registry.PREVIOUS):
        raise PromotionError(
            f"registration does not move '{alias}': register with alias=None (or 'challenger'), then promote it "
            "(detectops.registry.promote, the deploy group's promote step) once the version is deployed and smoke-tested."
        )
    ref = registry.register_model(
        model,
        run_id=evaluation["run_id"],
        name=name,
        dataset=dataset,
        dag_run_id=dag_run_id,
        tracking_uri=tracking_uri,
    )
    if alias:
        registry.set_alias(ref.name, alias, ref.version, tracking_uri=tracking_uri)
    if dataset.get("path"):
        store_reference_statistics(ref.name, ref.version, {"eval": dataset["path"]}, evaluation,
                                   tracking_uri=tracking_uri)
    return {**ref.to_dict(), "alias": alias}


def store_reference_statistics(name: str, version: str | int, splits: dict[str, Any], evaluation: dict[str, Any], *,
                               tracking_uri: str | None, evaluated_split: str = "eval",
                               min_score: float | None = None) -> str:
    """Store the version's reference statistics (what monitoring compares live traffic with).

    ``splits``: ``{split name: COCO dataset dir}``; ``evaluation``: the evaluation's ``run_id``
    (where the table is stored) and ``detections`` (its COCO results file, made on ``evaluated_split``:
    a local path or a ``runs:/`` URI). ``min_score``: the serving threshold (default: the service's).
    """
    import json

    from detectops.monitoring.reference import store_reference
    from detectops.serve.config import ServeSettings

    detections = None
    if evaluation.get("detections"):
        path = evaluation["detections"]
        if path.startswith("runs:/"):  # made on another worker: read it from the evaluation run's artifacts
            import mlflow

            path = mlflow.artifacts.download_artifacts(path, tracking_uri=tracking_uri)
        detections = json.loads(Path(path).read_text())
    return store_reference(name, version, splits, evaluation["run_id"], tracking_uri=tracking_uri,
                           evaluated_split=evaluated_split, detections=detections,
                           min_score=ServeSettings.min_score if min_score is None else min_score)


def build_and_push(
    model: dict[str, Any],
    dataset: dict[str, Any],
    registered: dict[str, Any],
    *,
    registry: dict[str, Any],
    tracking_uri: str | None = None,
    pipeline_image: str | None = None,
) -> dict[str, Any]:
    """Build the serving image with the model baked in, push it, record the digest in MLflow.

    ``pipeline_image``: build on that pipeline image (the code the model trained with).

    Everything comes from the arguments (the registry connection's settings), nothing from
    the worker's environment. Returns the ``ImageRef`` dict plus ``image_by_digest`` (what to
    deploy; also under ``image``).
    """
    from detectops import build
    from detectops import registry as model_registry

    image = build.build_and_push(
        model["path"],
        registry=registry["registry"],
        repository=registry.get("repository") or build.DEFAULT_REPOSITORY,
        model_version=str(registered["version"]),
        model_name=registered["name"],
        dataset_sha256=dataset["sha256"],
        base_image=registry.get("base_image"),
        username=registry.get("username"),
        password=registry.get("password"),
        docker_host=registry.get("docker_host"),
        pipeline_image=pipeline_image,
    )
    model_registry.record_image(registered["name"], registered["version"], image, tracking_uri=tracking_uri)
    return {**image.to_dict(), "image": image.image_by_digest, "image_by_digest": image.image_by_digest}


def prepare_namespace(namespace: str, *, kube_config: str | None) -> dict[str, Any]:
    """Namespace + the deployer's ServiceAccount and namespaced Role (needs admin credentials)."""
    from detectops.deploy import prepare_namespace as prepare

    prepare(namespace, kubeconfig=kube_config)
    return {"namespace": namespace, "service_account": "detectops-deployer"}


def smoke_test_deployment(
    spec: dict[str, Any], *, kube_config: str | None, node_host: str = "127.0.0.1",
) -> dict[str, Any]:
    """From the host, through the Service's NodePort on ``node_host`` (loopback): a real photo, every check."""
    from detectops.deploy import connect
    from detectops.deploy.smoke import smoke_test
    from detectops.deploy.spec import DeploySpec

    kube = connect(kube_config)
    return smoke_test(kube, DeploySpec.from_dict(spec), via="nodeport", node_host=node_host).to_dict()
