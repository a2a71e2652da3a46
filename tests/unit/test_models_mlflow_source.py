"""fetch_model on an MLflow URI: the SavedModel inside the logged artifacts lands in the cache.

Uses a throwaway SQLite tracking store (no server), laid out like the registry's pyfunc
models: the SavedModel under ``<model>/artifacts/saved_model``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectops.errors import ModelSourceError
from detectops.models import Detector, fetch_model
from tests.support.tiny_detector import make_tiny_detector

pytestmark = [pytest.mark.platform, pytest.mark.slow]  # MLflow import and SQLite schema creation: ~10 s


@pytest.fixture()
def tracking(tmp_path):
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(previous)


def test_runs_uri_finds_the_saved_model_in_the_artifacts(tracking, tmp_path, monkeypatch):
    mlflow = tracking
    saved_model = make_tiny_detector(tmp_path / "export", classes=[1, 47])
    experiment = mlflow.create_experiment("models-test", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(saved_model), artifact_path="model/artifacts/saved_model")

    uri = mlflow.get_tracking_uri()
    # Only the explicit URI counts: neither the worker's environment nor MLflow's global state.
    mlflow.set_tracking_uri("http://127.0.0.1:1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    ref = fetch_model(f"runs:/{run.info.run_id}/model", cache_dir=tmp_path / "cache", tracking_uri=uri)
    assert (ref.name, ref.version) == ("model", run.info.run_id)
    assert Path(ref.path).parent == tmp_path / "cache" / "mlflow"
    assert [p.name for p in (tmp_path / "cache" / "mlflow").iterdir()] == [Path(ref.path).name]  # no temp left
    assert ref.sha256 == fetch_model(str(saved_model)).sha256  # same files as were logged
    assert Detector.load(ref.path).predict(np.zeros((4, 4, 3), np.uint8)).classes.tolist() == [1, 47]


def test_missing_run_says_what_to_check(tracking, tmp_path):
    with pytest.raises(ModelSourceError, match="MLFLOW_TRACKING_URI"):
        fetch_model("runs:/0123456789abcdef0123456789abcdef/model", cache_dir=tmp_path / "cache",
                    tracking_uri=tracking.get_tracking_uri())
    assert not any((tmp_path / "cache" / "mlflow").iterdir())
