"""MLflow Model Registry for detectors: log, register with lineage, aliases, tags, download.

Aliases (``champion``, ``challenger``), not the deprecated stages. Every registered version
carries lineage tags: the SavedModel's sha256 (also the idempotency key), its source, the
dataset hash and code version it was evaluated with, and the DAG run when there is one.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detectops import settings
from detectops.errors import DetectOpsError
from detectops.evaluate.mlflow_log import connect
from detectops.registry.aliases import CHALLENGER, CHAMPION  # noqa: F401 (kept importable from here)

#: Name (MLflow 3 logged model name) of a pyfunc model inside a run: ``model-<sha256[:12]>``.
#: One run can log several models (two candidates evaluated together); each gets its own
#: logged model and files, found again by its content hash.
MODEL_NAME_IN_RUN = "model"

#: The tag that identifies a SavedModel's content; registering it twice returns the first version.
SHA_TAG = "model_sha256"


@dataclass(frozen=True)
class RegisteredModelRef:
    """A registered model version: ``model_uri`` is ``models:/NAME/VERSION``."""

    name: str
    version: str
    run_id: str | None
    model_uri: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegisteredModelRef:
        return cls(name=str(d["name"]), version=str(d["version"]), run_id=d.get("run_id"), model_uri=str(d["model_uri"]))

    @classmethod
    def from_version(cls, mv: Any) -> RegisteredModelRef:
        return cls(name=mv.name, version=str(mv.version), run_id=mv.run_id, model_uri=f"models:/{mv.name}/{mv.version}")


def _model_dict(model_ref: Any) -> dict[str, Any]:
    """``ModelRef`` / dict / path -> dict with at least ``path`` and ``sha256``."""
    if hasattr(model_ref, "to_dict"):
        d = dict(model_ref.to_dict())
    elif isinstance(model_ref, dict):
        d = dict(model_ref)
    else:
        d = {"path": str(model_ref), "source": str(model_ref), "name": Path(model_ref).name}
    if not (Path(d["path"]) / "saved_model.pb").is_file():
        raise DetectOpsError(
            f"{d['path']} is not a SavedModel directory (no saved_model.pb); "
            "fetch the model first with `detectops fetch-model SOURCE`"
        )
    if not d.get("sha256"):
        from detectops.models.cache import sha256_dir

        d["sha256"] = sha256_dir(Path(d["path"]))
    return d


def _pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc model (given explicitly: MLflow's inference loads TF, slowly)."""
    reqs = []
    for dist in ("mlflow", "tensorflow-cpu", "numpy", "pillow"):
        try:
            reqs.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return reqs


def _logged_model_uri(client: Any, run_id: str, sha256: str) -> str | None:
    """``models:/<model_id>`` of the pyfunc model with these files already logged in ``run_id``, if any.

    Matched by content hash, never by name alone: a run may hold other models, and reusing
    one of them gave a new version another model's files.
    """
    run = client.get_run(run_id)
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'",
    )
    for logged in models:
        if logged.tags.get(SHA_TAG) == sha256 and getattr(logged.status, "name", logged.status) == "READY":
            return f"models:/{logged.model_id}"
    return None


def log_pyfunc_model(model_ref: Any, run_id: str, *, tracking_uri: str | None = None) -> str:
    """Log the SavedModel as its own pyfunc model (``model-<sha12>``) in ``run_id``, once; return its model URI."""
    client = connect(tracking_uri)
    model = _model_dict(model_ref)
    existing = _logged_model_uri(client, run_id, model["sha256"])
    if existing:
        return existing
    import mlflow

    from detectops.registry.pyfunc import SAVED_MODEL_ARTIFACT, DetectorPyfunc

    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=f"{MODEL_NAME_IN_RUN}-{model['sha256'][:12]}",
            python_model=DetectorPyfunc(),
            artifacts={SAVED_MODEL_ARTIFACT: str(model["path"])},
            pip_requirements=_pip_requirements(),
            tags={SHA_TAG: model["sha256"]},
        )
    return info.model_uri


def all_version_tags(name: str, *, tracking_uri: str | None = None) -> list[tuple[str, dict[str, str]]]:
    """``(version, tags)`` of every version of ``name`` (none if the model is not registered)."""
    client = connect(tracking_uri)
    return [(mv.version, dict(mv.tags)) for mv in client.search_model_versions(f"name = '{name}'", max_results=10000)]


def find_version_by_sha(name: str, sha256: str, *, tracking_uri: str | None = None) -> RegisteredModelRef | None:
    """The oldest version of ``name`` whose ``model_sha256`` tag is ``sha256``, if any."""
    client = connect(tracking_uri)
    matches = [
        mv for mv in client.search_model_versions(f"name = '{name}'", max_results=10000)
        if mv.tags.get(SHA_TAG) == sha256
    ]
    if not matches:
        return None
    return RegisteredModelRef.from_version(min(matches, key=lambda mv: int(mv.version)))


def register_model(
    model_ref: Any,
    run_id: str,
    name: str,
    tags: dict[str, Any] | None = None,
    *,
    dataset: Any = None,
    dataset_sha256: str | None = None,
    dag_run_id: str | None = None,
    tracking_uri: str | None = None,
) -> RegisteredModelRef:
    """Register the SavedModel of ``model_ref`` under ``name`` from the evaluation run ``run_id``.

    Logs the pyfunc model into the run first (once). Idempotent: if a version of ``name``
    already has this SavedModel's sha256, that version is returned and nothing is created.
    Lineage tags: ``model_sha256``, ``model_source``, ``model_name``, ``model_version``,
    ``dataset_sha256`` and ``dataset_name`` (from ``dataset``, a ``DatasetRef`` or its dict;
    else the run's ``dataset_sha256`` param), ``code_version``, ``dag_run_id``, plus ``tags``.
    """
    model = _model_dict(model_ref)
    existing = find_version_by_sha(name, model["sha256"], tracking_uri=tracking_uri)
    if existing is not None:
        return existing
    client = connect(tracking_uri)
    data = dict(dataset.to_dict()) if hasattr(dataset, "to_dict") else dict(dataset or {})
    dataset_sha256 = dataset_sha256 or data.get("sha256")
    if dataset_sha256 is None:
        dataset_sha256 = client.get_run(run_id).data.params.get("dataset_sha256")
    lineage = {
        SHA_TAG: model["sha256"],
        "model_source": model.get("source"),
        "model_name": model.get("name"),
        "model_version": model.get("version"),
        "dataset_sha256": dataset_sha256,
        "dataset_name": data.get("name"),
        "code_version": settings.code_version(),
        "dag_run_id": dag_run_id,
        **(tags or {}),
    }
    lineage = {k: str(v) for k, v in lineage.items() if v is not None}
    model_uri = log_pyfunc_model(model, run_id, tracking_uri=tracking_uri)
    import mlflow

    mv = mlflow.register_model(model_uri, name, tags=lineage)
    return RegisteredModelRef(name=name, version=str(mv.version), run_id=run_id, model_uri=f"models:/{name}/{mv.version}")


def set_alias(name: str, alias: str, version: str | int, *, tracking_uri: str | None = None) -> None:
    """Point ``models:/NAME@alias`` at ``version`` (moving it from any other version)."""
    connect(tracking_uri).set_registered_model_alias(name, alias, str(version))


def get_alias(name: str, alias: str, *, tracking_uri: str | None = None) -> RegisteredModelRef | None:
    """The version ``alias`` points at, or ``None`` when the model or the alias does not exist."""
    client = connect(tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return RegisteredModelRef.from_version(mv)


def delete_alias(name: str, alias: str, *, tracking_uri: str | None = None) -> None:
    connect(tracking_uri).delete_registered_model_alias(name, alias)


def set_version_tag(name: str, version: str | int, key: str, value: Any, *, tracking_uri: str | None = None) -> None:
    """Tag one model version (e.g. ``image_digest`` once the serving image is built)."""
    connect(tracking_uri).set_model_version_tag(name, str(version), key, str(value))


def record_image(name: str, version: str | int, image: Any, *, tracking_uri: str | None = None) -> None:
    """Record the serving image of a version: ``image_digest``, ``image_repository``, ``image_tag``, ``image``.

    ``image``: an ``ImageRef`` (``repository``, ``tag``, ``digest``) or its dict. ``image`` is the
    pinned reference ``repository@digest`` that deployments run.
    """
    d = dict(image.to_dict()) if hasattr(image, "to_dict") else dict(image)
    client = connect(tracking_uri)
    tags = {
        "image_digest": d["digest"],
        "image_repository": d["repository"],
        "image_tag": d.get("tag"),
        "image": f"{d['repository']}@{d['digest']}",
    }
    for key, value in tags.items():
        if value is not None:
            client.set_model_version_tag(name, str(version), key, str(value))


def get_version_tags(name: str, version: str | int, *, tracking_uri: str | None = None) -> dict[str, str]:
    return dict(connect(tracking_uri).get_model_version(name, str(version)).tags)


def download_saved_model(model_uri: str, dst_dir: str | Path, *, tracking_uri: str | None = None) -> Path:
    """Download ``model_uri`` (e.g. ``models:/NAME@champion``) into ``dst_dir``; return the SavedModel directory."""
    connect(tracking_uri)
    import mlflow

    dst_dir = Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst_dir)))
    # The pyfunc model keeps the SavedModel under artifacts/<original directory name>/.
    found = sorted(p.parent for p in local.rglob("saved_model.pb"))
    if not found:
        raise DetectOpsError(f"{model_uri} holds no SavedModel (no saved_model.pb under {local}); was it registered by detectops?")
    return found[0]
