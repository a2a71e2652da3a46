"""Training against a real MLflow server: checkpoints as run artifacts, and `detectops train` with a run key.

A retried pod must find the run of the pod it replaces (tag ``detectops.run_key``) and resume
from that run's checkpoints; these tests use the session's real tracking server.
"""

from __future__ import annotations

import json

import pytest

from detectops.data.synthetic import SyntheticSpec, generate_synthetic
from detectops.train import MlflowCheckpointStore
from detectops.train.checkpoints import COMPLETE_MARKER

SPEC = dict(image_size=(96, 72), class_weights={"circle": 1.0, "square": 1.0}, objects_per_image=(1, 2))


def _new_run(tracking_uri: str, name: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name) or client.get_experiment(client.create_experiment(name))
    return client.create_run(exp.experiment_id).info.run_id


def test_mlflow_checkpoint_store_round_trip(mlflow_server, tmp_path):
    run_id = _new_run(mlflow_server, "ckpt-roundtrip")
    store = MlflowCheckpointStore(mlflow_server, run_id, download_dir=tmp_path / "dl")
    assert store.latest() is None
    for epoch in (1, 2):
        files = tmp_path / f"files{epoch}"
        files.mkdir()
        (files / "weights.bin").write_bytes(bytes([epoch]) * 1000)
        (files / "state.json").write_text(json.dumps({"epoch": epoch}))
        store.save(epoch, files)
    # An upload cut short (no COMPLETE marker) must not count as a checkpoint.
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "weights.bin").write_bytes(b"half")
    store.client.log_artifacts(run_id, str(partial), "checkpoints/epoch-003")

    epoch, directory = MlflowCheckpointStore(mlflow_server, run_id, download_dir=tmp_path / "dl2").latest()
    assert epoch == 2
    assert (directory / "weights.bin").read_bytes() == bytes([2]) * 1000
    assert json.loads((directory / "state.json").read_text()) == {"epoch": 2}
    assert (directory / COMPLETE_MARKER).is_file()


def test_cli_train_logs_to_mlflow_and_a_retry_reuses_the_run(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    from detectops.cli import main
    from detectops.models.contract import verify_contract

    data = tmp_path / "data"
    generate_synthetic(data / "train", SyntheticSpec(num_images=16, seed=1, **SPEC))
    generate_synthetic(data / "val", SyntheticSpec(num_images=4, seed=2, **SPEC))
    config = json.dumps({"preset": "tiny", "epochs": 2, "steps_per_epoch": 1})
    args = ["train", "--dataset", str(data), "--label-map", '{"1": "circle", "2": "square"}', "--config", config,
            "--tracking-uri", mlflow_server, "--experiment", "train-cli", "--run-key", "dagrun-1"]

    first = tmp_path / "xcom1.json"
    assert main([*args, "--out", str(tmp_path / "pod1"), "--xcom-file", str(first)]) == 0
    xcom = json.loads(first.read_text())
    assert xcom["model_uri"] == f"runs:/{xcom['run_id']}/model"
    assert xcom["epochs"] == 2 and xcom["resumed_from_epoch"] == 0 and xcom["val_AP50"] is not None

    client = MlflowClient(mlflow_server)
    run = client.get_run(xcom["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.input_size"] == "64"
    assert [m.step for m in client.get_metric_history(xcom["run_id"], "loss")] == [1, 2]
    assert "val_AP" in run.data.metrics
    model_dir = client.download_artifacts(xcom["run_id"], "model", str(tmp_path / "downloaded"))
    verify_contract(model_dir)

    # The retried pod (a fresh working directory) finds the same run and resumes after its last epoch.
    second = tmp_path / "xcom2.json"
    assert main([*args, "--out", str(tmp_path / "pod2"), "--xcom-file", str(second)]) == 0
    retry = json.loads(second.read_text())
    assert retry["run_id"] == xcom["run_id"]
    assert retry["resumed_from_epoch"] == 2
    assert retry["val_AP"] == pytest.approx(xcom["val_AP"])


def test_cli_train_explains_a_bad_label_map(tmp_path, capsys):
    from detectops.cli import main

    code = main(["train", "--dataset", str(tmp_path), "--label-map", "{not json", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "--label-map is not valid JSON" in capsys.readouterr().err
