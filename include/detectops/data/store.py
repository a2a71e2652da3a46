"""The shared data store: batches and dataset versions in MLflow's artifact store.

Pods in any cluster can read what the tracking server serves (``--serve-artifacts``), never a
host path. Each stored directory is one MLflow run in the experiment ``detectops-data``,
tagged with its kind and content hash, its files under the artifact path ``<kind>/``:

    uri = publish_dir(batch_dir, kind="batch", sha256=dataset_hash(batch_dir), tracking_uri=URI)
    # -> "runs:/<run id>/batch"; publishing the same content again returns the same URI
    path = fetch_dir(uri, dst, tracking_uri=URI)   # downloads and checks the content hash

The content hash is the project's own: :func:`~detectops.data.hashing.dataset_hash` of a
batch (a COCO dataset directory), :func:`~detectops.data.versioning.version_hash` of a dataset
version. It is checked before uploading (a wrong hash would name other data) and after
downloading (what a pod trains on is exactly what was published).

MLflow loads inside the functions; importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Literal

from detectops.errors import DataValidationError, DetectOpsError
from detectops.fsutil import publish, scratch_dir

log = logging.getLogger(__name__)

DATA_EXPERIMENT = "detectops-data"
KINDS: tuple[str, ...] = ("batch", "dataset")
Kind = Literal["batch", "dataset"]
TAG_KIND = "detectops.kind"
TAG_SHA256 = "detectops.sha256"
TAG_NAME = "detectops.name"
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})/(?P<path>[^/].*)$")


class StoreIntegrityError(DataValidationError):
    """Stored content does not match its content hash (corrupted, tampered or mislabelled)."""


def content_hash(path: str | os.PathLike[str], kind: Kind) -> str:
    """The content hash that names a stored directory of ``kind``."""
    _check_kind(kind)
    if kind == "batch":
        from detectops.data.hashing import dataset_hash

        return dataset_hash(path)
    from detectops.data.versioning import version_hash

    return version_hash(path)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise DetectOpsError(f"Unknown kind {kind!r} of stored data; choose from {list(KINDS)}.")


def _client(tracking_uri: str | None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client) -> str:
    exp = client.get_experiment_by_name(DATA_EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(DATA_EXPERIMENT)
    except Exception:  # noqa: BLE001 - another process created it first (RESOURCE_ALREADY_EXISTS)
        exp = client.get_experiment_by_name(DATA_EXPERIMENT)
        if exp is None:
            raise
        return exp.experiment_id


def find_stored(sha256: str, kind: Kind, *, tracking_uri: str | None = None) -> str | None:
    """The URI of the finished upload of this content, or None."""
    _check_kind(kind)
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(DATA_EXPERIMENT)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=(f"tags.`{TAG_SHA256}` = '{sha256}' and tags.`{TAG_KIND}` = '{kind}' "
                       "and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time ASC"], max_results=1)
    return f"runs:/{runs[0].info.run_id}/{kind}" if runs else None


def publish_dir(local_dir: str | os.PathLike[str], *, kind: Kind, sha256: str,
                tracking_uri: str | None = None, name: str | None = None) -> str:
    """Upload ``local_dir`` to the artifact store once per content hash; return its ``runs:/`` URI.

    Idempotent: if a finished upload of ``sha256`` exists it is returned and nothing is
    uploaded. An upload that dies half-way leaves a run marked FAILED, which is never returned.
    Raises :class:`StoreIntegrityError` if ``local_dir``'s content hash is not ``sha256``.
    """
    _check_kind(kind)
    local_dir = Path(local_dir)
    actual = content_hash(local_dir, kind)
    if actual != sha256:
        raise StoreIntegrityError(
            f"{local_dir} hashes to {actual}, not {sha256}: refusing to store it under the wrong name. "
            f"Pass the {kind}'s own content hash.")
    existing = find_stored(sha256, kind, tracking_uri=tracking_uri)
    if existing:
        log.info("%s %s is already stored at %s", kind, sha256[:12], existing)
        return existing
    client = _client(tracking_uri)
    run = client.create_run(_experiment_id(client), run_name=f"{kind}-{sha256[:12]}",
                            tags={TAG_KIND: kind, TAG_SHA256: sha256, TAG_NAME: name or local_dir.name})
    run_id = run.info.run_id
    try:
        client.log_artifacts(run_id, str(local_dir), artifact_path=kind)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    uri = f"runs:/{run_id}/{kind}"
    log.info("stored %s %s at %s", kind, sha256[:12], uri)
    return uri


def stored_info(uri: str, *, tracking_uri: str | None = None) -> dict[str, str]:
    """``{run_id, kind, sha256, name}`` of a URI that :func:`publish_dir` returned."""
    m = _RUNS_URI.match(uri)
    if not m:
        raise DetectOpsError(f"{uri!r} is not a data store URI; expected runs:/<run id>/<batch|dataset> "
                             "as returned by publish_dir (or `detectops land`).")
    from mlflow.exceptions import MlflowException

    try:
        tags = _client(tracking_uri).get_run(m["run_id"]).data.tags
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise DetectOpsError(f"The data store has no run {m['run_id']} ({uri}): was it published "
                                 "to this MLflow server?") from exc
        raise
    if tags.get(TAG_KIND) not in KINDS or not tags.get(TAG_SHA256) or tags[TAG_KIND] != m["path"]:
        raise DetectOpsError(f"{uri} is not stored data (run {m['run_id']} is not in {DATA_EXPERIMENT} "
                             "or lacks its kind and hash tags).")
    return {"run_id": m["run_id"], "kind": tags[TAG_KIND], "sha256": tags[TAG_SHA256],
            "name": tags.get(TAG_NAME, "")}


def fetch_dir(uri: str, dst: str | os.PathLike[str], *, tracking_uri: str | None = None) -> Path:
    """Download stored data to ``dst`` (which becomes the batch or version directory); return it.

    The download lands beside ``dst`` and is renamed into place only after its content hash
    matched the one recorded at upload, so ``dst`` never holds unverified data. If ``dst``
    already holds exactly this content, nothing is downloaded.
    """
    import mlflow.artifacts

    info = stored_info(uri, tracking_uri=tracking_uri)
    kind, sha = info["kind"], info["sha256"]
    dst = Path(dst)
    if dst.exists():
        try:
            held = content_hash(dst, kind)  # type: ignore[arg-type]
        except DetectOpsError:  # not a batch / version at all
            held = None
        if held == sha:
            return dst
        raise DetectOpsError(f"{dst} exists and holds other data than {uri} ({sha[:12]}). "
                             "Fetch into a new directory, or remove it first.")
    with scratch_dir(dst) as tmp:
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp), tracking_uri=tracking_uri)
        got = tmp / kind
        actual = content_hash(got, kind)  # type: ignore[arg-type]
        if actual != sha:
            raise StoreIntegrityError(
                f"The download of {uri} hashes to {actual}, not {sha}: the stored {kind} is corrupted or "
                "was changed after upload. Land the batch again (it gets a new run).")
        publish(got, dst, replace=False)
    return dst


def log_dataset_input(uri: str, *, name: str | None = None, context: str = "training",
                      tracking_uri: str | None = None) -> None:
    """Log stored data as an MLflow dataset input of the *active* run (name, digest = hash, source = URI)."""
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    info = stored_info(uri, tracking_uri=tracking_uri)
    dataset = MetaDataset(source=HTTPDatasetSource(url=uri), name=name or f"{info['kind']}-{info['sha256'][:12]}",
                          digest=info["sha256"][:36])
    mlflow.log_input(dataset, context=context)


__all__ = ["DATA_EXPERIMENT", "KINDS", "StoreIntegrityError", "content_hash", "find_stored", "publish_dir",
           "stored_info", "fetch_dir", "log_dataset_input"]
