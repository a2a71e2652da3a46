"""The shared data store on a real MLflow tracking server (artifacts served by the server)."""

from __future__ import annotations

import pytest

from detectops.data import SyntheticSpec, dataset_hash, generate_synthetic
from detectops.data.store import (
    DATA_EXPERIMENT, StoreIntegrityError, fetch_dir, find_stored, log_dataset_input, publish_dir, stored_info,
)
from detectops.data.versioning import build_version, version_hash
from detectops.errors import DetectOpsError


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("store") / "batch-a"
    generate_synthetic(root, SyntheticSpec(num_images=4, image_size=(32, 32), seed=7))
    return root


def _runs(uri):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(DATA_EXPERIMENT).experiment_id])


def test_publish_is_idempotent_and_fetch_verifies(mlflow_server, batch, tmp_path):
    sha = dataset_hash(batch)
    assert find_stored(sha, "batch", tracking_uri=mlflow_server) is None
    uri = publish_dir(batch, kind="batch", sha256=sha, tracking_uri=mlflow_server)
    assert uri.startswith("runs:/") and uri.endswith("/batch")
    n_runs = len(_runs(mlflow_server))
    assert publish_dir(batch, kind="batch", sha256=sha, tracking_uri=mlflow_server) == uri
    assert len(_runs(mlflow_server)) == n_runs  # not uploaded twice
    assert stored_info(uri, tracking_uri=mlflow_server) == {
        "run_id": uri.split("/")[1], "kind": "batch", "sha256": sha, "name": "batch-a"}

    got = fetch_dir(uri, tmp_path / "fetched", tracking_uri=mlflow_server)
    assert got == tmp_path / "fetched" and dataset_hash(got) == sha
    assert fetch_dir(uri, got, tracking_uri=mlflow_server) == got  # already there: no download
    with pytest.raises(DetectOpsError, match="holds other data"):
        fetch_dir(uri, batch.parent, tracking_uri=mlflow_server)


def test_wrong_hash_and_tampered_upload_are_refused(mlflow_server, batch, tmp_path):
    from mlflow import MlflowClient

    with pytest.raises(StoreIntegrityError, match="refusing"):
        publish_dir(batch, kind="batch", sha256="0" * 64, tracking_uri=mlflow_server)
    uri = publish_dir(batch, kind="batch", sha256=dataset_hash(batch), tracking_uri=mlflow_server)
    # Someone overwrites an image in the stored run: the download no longer matches its hash.
    evil = tmp_path / "000000.jpg"
    evil.write_bytes(b"not the same picture")
    MlflowClient(mlflow_server).log_artifact(uri.split("/")[1], str(evil), artifact_path="batch/images")
    with pytest.raises(StoreIntegrityError, match="corrupted"):
        fetch_dir(uri, tmp_path / "dst", tracking_uri=mlflow_server)
    assert not (tmp_path / "dst").exists()  # nothing unverified left behind
    with pytest.raises(DetectOpsError, match="not a data store URI"):
        stored_info("s3://bucket/batch", tracking_uri=mlflow_server)


def test_dataset_versions_round_trip_and_log_as_inputs(mlflow_server, batch, tmp_path):
    import mlflow

    version = build_version(None, [batch], tmp_path / "versions")
    uri = publish_dir(version.path, kind="dataset", sha256=version.sha256, tracking_uri=mlflow_server)
    got = fetch_dir(uri, tmp_path / "pod" / version.sha256, tracking_uri=mlflow_server)
    assert version_hash(got) == version.sha256

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("detectops-store-test")
    with mlflow.start_run() as run:
        log_dataset_input(uri, context="training")
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest, i.dataset.source) for i in inputs][0][:2] == (
        f"dataset-{version.sha256[:12]}", version.sha256[:36])
    assert uri in inputs[0].dataset.source
