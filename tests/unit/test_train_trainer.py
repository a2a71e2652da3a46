"""The level-1 trainer on a tiny synthetic set: learning, export contract, warm start, resume, determinism.

One tiny training run (``trained``) is shared by the module; the other tests compare against it,
so the whole file trains three tiny runs and stays within seconds of TensorFlow tracing each.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from detectops.data.synthetic import SyntheticSpec, generate_synthetic
from detectops.train import LocalCheckpointStore, TrainConfig
from detectops.train.checkpoints import epoch_dir_name

LABEL_MAP = {1: "circle", 2: "square"}
SPEC = dict(image_size=(96, 72), class_weights={"circle": 1.0, "square": 1.0}, objects_per_image=(1, 2))


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    generate_synthetic(root / "train", SyntheticSpec(num_images=32, seed=1, **SPEC))
    generate_synthetic(root / "val", SyntheticSpec(num_images=8, seed=2, **SPEC))
    return root


@pytest.fixture(scope="module")
def config():
    return TrainConfig.tiny(epochs=3, steps_per_epoch=4, eval_every=0)


@pytest.fixture(scope="module")
def trained(dataset_dir, config, tmp_path_factory):
    """``(result, out_dir, store)`` of one uninterrupted tiny run with a checkpoint per epoch."""
    from detectops.train import train

    out = tmp_path_factory.mktemp("run_a")
    store = LocalCheckpointStore(out / "checkpoints")
    lines: list[str] = []
    result = train(dataset_dir, LABEL_MAP, out, config, checkpoints=store, log=lines.append)
    return result, out, store, lines


def _final_weights(result):
    import h5py

    path = f"{result.export_dir}/assets/detectops/weights.weights.h5"
    with h5py.File(path, "r") as f:
        arrays = []
        f.visititems(lambda name, obj: arrays.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def _assert_same_weights(a, b):
    assert [n for n, _ in a] == [n for n, _ in b]
    for (name, x), (_, y) in zip(a, b):
        assert np.array_equal(x, y), f"weights differ at {name}"


def test_loss_falls_and_progress_is_logged_per_epoch(trained, config):
    result, _, store, lines = trained
    losses = [row["loss"] for row in result.history]
    assert len(losses) == config.epochs
    assert losses[-1] < losses[0] * 0.9, losses
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == config.epochs and "val AP" in epoch_lines[-1]
    assert result.val_AP is not None and result.val_AP50 is not None  # evaluated after the last epoch
    assert store.latest()[0] == config.epochs


def test_export_honours_the_contract_and_decodes_boxes(trained):
    from PIL import Image

    from detectops.models.contract import verify_contract
    from detectops.models.detector import Detector

    result, _, _, _ = trained
    spec = verify_contract(result.export_dir)
    assert spec.input_size is None  # any image size: the model resizes inside
    detector = Detector.load(result.export_dir)
    assert detector.label_map == LABEL_MAP
    image = np.asarray(Image.new("RGB", (130, 90), (40, 200, 90)))
    found = detector.predict(image)
    assert len(found) == TrainConfig.tiny().max_detections
    assert found.boxes.shape == (len(found), 4)
    assert (found.boxes >= 0).all() and (found.boxes <= 1).all()
    assert (found.boxes[:, 2] >= found.boxes[:, 0]).all() and (found.boxes[:, 3] >= found.boxes[:, 1]).all()
    assert set(found.classes.tolist()) <= set(LABEL_MAP)
    assert (np.diff(found.scores) <= 0).all()  # best first


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(trained, dataset_dir, config, tmp_path):
    from detectops.train import train

    result_a, _, store_a, _ = trained
    store = LocalCheckpointStore(tmp_path / "checkpoints")
    # The "killed pod" got through epoch 1 only.
    shutil.copytree(store_a.root / epoch_dir_name(1), store.root / epoch_dir_name(1))
    result_b = train(dataset_dir, LABEL_MAP, tmp_path / "out", config, checkpoints=store, log=lambda _: None)
    assert result_b.resumed_from_epoch == 1
    assert [r["epoch"] for r in result_b.history] == [1, 2, 3]
    assert result_b.final_loss == result_a.final_loss
    _assert_same_weights(_final_weights(result_a), _final_weights(result_b))


def test_same_seed_same_weights(trained, dataset_dir, config, tmp_path):
    from detectops.train import train

    result_a = trained[0]
    result_b = train(dataset_dir, LABEL_MAP, tmp_path, config, log=lambda _: None)
    assert result_b.resumed_from_epoch == 0
    assert [r["loss"] for r in result_b.history] == [r["loss"] for r in result_a.history]
    _assert_same_weights(_final_weights(result_a), _final_weights(result_b))


def test_warm_start_loads_the_champions_weights(trained, config):
    import keras

    from detectops.train.model import build_model
    from detectops.train.trainer import load_warm_start

    champion = trained[0].export_dir
    keras.utils.set_random_seed(config.seed + 1)
    model = build_model(config, len(LABEL_MAP))
    reference = build_model(config, len(LABEL_MAP))
    reference.load_weights(f"{champion}/assets/detectops/weights.weights.h5")
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reference.get_weights()))
    load_warm_start(model, champion, LABEL_MAP, config)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        assert np.array_equal(a, b)


def test_warm_start_refuses_another_label_map_or_a_foreign_model(trained, dataset_dir, config, tmp_path):
    from detectops.train import train
    from detectops.train.export import WarmStartError

    champion = trained[0].export_dir
    with pytest.raises(WarmStartError, match="label map"):
        train(dataset_dir, {**LABEL_MAP, 3: "triangle"}, tmp_path, config, warm_start_from=champion, log=lambda _: None)
    with pytest.raises(WarmStartError, match="not exported by detectops.train"):
        train(dataset_dir, LABEL_MAP, tmp_path, config, warm_start_from=tmp_path, log=lambda _: None)


def test_a_class_outside_the_label_map_is_refused(dataset_dir, config, tmp_path):
    from detectops.train import train
    from detectops.train.inputs import TrainingDataError

    with pytest.raises(TrainingDataError, match="not in the model's label map"):
        train(dataset_dir, {1: "circle"}, tmp_path, config, log=lambda _: None)


def test_a_resumed_run_still_reports_its_warm_start(trained, dataset_dir, tmp_path):
    """A warm start trains its own (shorter) number of epochs; the retried pod resumes from a
    checkpoint (not from the champion) of that same configuration, and the run was warm-started."""
    from detectops.train import train

    champion = trained[0].export_dir
    # Same network as the champion's; 3 epochs from scratch, 1 from trained weights.
    short = TrainConfig.tiny(epochs=3, warm_start_epochs=1, steps_per_epoch=1, eval_every=0)
    store = LocalCheckpointStore(tmp_path / "checkpoints")
    first = train(dataset_dir, LABEL_MAP, tmp_path / "a", short, checkpoints=store, warm_start_from=champion,
                  log=lambda _: None)
    assert first.warm_started_from == str(champion) and first.resumed_from_epoch == 0
    assert first.epochs == 1 and [row["epoch"] for row in first.history] == [1]
    retry = train(dataset_dir, LABEL_MAP, tmp_path / "b", short, checkpoints=store, warm_start_from=champion,
                  log=lambda _: None)
    assert retry.resumed_from_epoch == 1
    assert retry.warm_started_from == str(champion)
