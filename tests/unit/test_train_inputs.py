"""Training inputs and config: target encoding, the exact flip of dense targets, per-epoch plans, TrainConfig JSON."""

from __future__ import annotations

import numpy as np
import pytest

from detectops.train.config import TrainConfig, TrainConfigError
from detectops.train.inputs import Split, encode_targets, epoch_plan


def test_targets_peak_at_the_centre_cell_with_size_and_offset():
    # One box of class 1 in a 16-cell grid: x 0.25..0.5, y 0.5..0.75 -> centre (6.0, 10.0) cells, size 4x4.
    heatmap, size, offset, mask = encode_targets(np.array([[0.25, 0.5, 0.5, 0.75]]), np.array([1]), 16, 2)
    assert heatmap.shape == (16, 16, 2) and heatmap[..., 0].max() == 0
    assert np.unravel_index(heatmap[..., 1].argmax(), (16, 16)) == (10, 6) and heatmap[10, 6, 1] == 1.0
    assert mask.sum() == 1 and mask[10, 6, 0] == 1
    assert size[10, 6].tolist() == [4.0, 4.0] and offset[10, 6].tolist() == [0.0, 0.0]


def test_flipping_a_batch_equals_encoding_the_flipped_boxes():
    from detectops.train.inputs import BatchSource

    grid, boxes, classes = 16, np.array([[0.1, 0.2, 0.33, 0.5], [0.55, 0.6, 0.9, 0.95]]), np.array([0, 1])
    flipped_boxes = np.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=1)
    image = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    targets = [t[None] for t in encode_targets(boxes, classes, grid, 2)]
    source = BatchSource(Split(None, np.array([1]), np.array([[64, 64]]), image, *targets))
    images, heatmap, size, offset, mask = (t.numpy() for t in source.batch([0], [True], [1.0], [0.0]))
    expected = encode_targets(flipped_boxes, classes, grid, 2)
    np.testing.assert_allclose(images[0], image[0, :, ::-1].astype(np.float32), atol=1e-4)
    for got, want in zip((heatmap[0], size[0], offset[0], mask[0]), expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_an_epoch_plan_depends_only_on_seed_and_epoch():
    config = TrainConfig.tiny(batch_size=4, steps_per_epoch=0)
    a, b = epoch_plan(10, config, 2), epoch_plan(10, config, 2)
    assert a.steps == 2 and a.index.shape == (2, 4)
    assert all(np.array_equal(x, y) for x, y in zip((a.index, a.flip, a.gain), (b.index, b.flip, b.gain)))
    assert not np.array_equal(a.index, epoch_plan(10, config, 3).index)
    assert len(set(a.index.ravel().tolist())) == 8  # a permutation: no image twice in an epoch


def test_the_demo_budget_does_not_grow_with_the_dataset():
    from detectops.train.inputs import steps_per_epoch

    demo = TrainConfig.demo()
    first_batch, grown = steps_per_epoch(1_000, demo), steps_per_epoch(10_000, demo)
    assert first_batch == 62  # a first batch of 1,000 training images is walked whole
    assert grown == 64 and grown * demo.epochs <= 512  # ten times the data: the same number of steps
    plan = epoch_plan(10_000, demo, 1)
    assert plan.index.shape == (64, 16) and len(set(plan.index.ravel().tolist())) == 64 * 16
    assert plan.index.max() > 5_000  # sampled from the whole split, not its first images
    assert demo.eval_max_images == 200 and demo.max_train_images == 2048  # memory stays flat too
    # A warm start (a retrain) trains half as long; from scratch it is the whole budget.
    assert demo.warm_started().epochs == 4 < demo.epochs == 8
    assert TrainConfig.tiny().warm_started() == TrainConfig.tiny()  # 0: the same epochs
    assert TrainConfig.from_dict({"preset": "demo", "warm_start_epochs": 2}).warm_started().epochs == 2
    with pytest.raises(TrainConfigError, match="warm_start_epochs"):
        TrainConfig(warm_start_epochs=-1)


def test_a_capped_split_is_a_seeded_sample_of_the_whole_split(tmp_path):
    from detectops.data.synthetic import SYNTHETIC_LABEL_MAP, SyntheticSpec, generate_synthetic
    from detectops.train.inputs import load_split

    generate_synthetic(tmp_path / "ds", SyntheticSpec(num_images=40, seed=3))
    label_map = SYNTHETIC_LABEL_MAP
    config = TrainConfig.tiny()
    whole = load_split(tmp_path / "ds", label_map, config)
    capped = load_split(tmp_path / "ds", label_map, config, max_images=10)
    again = load_split(tmp_path / "ds", label_map, config, max_images=10)
    assert len(whole) == 40 and len(capped) == 10
    assert np.array_equal(capped.image_ids, again.image_ids)  # seeded: a resumed pod loads the same images
    assert capped.image_ids.max() > whole.image_ids[19]  # drawn from the whole split, not its first images
    position = {int(i): k for k, i in enumerate(whole.image_ids)}
    for k, image_id in enumerate(capped.image_ids):
        np.testing.assert_array_equal(capped.images[k], whole.images[position[int(image_id)]])


def test_train_config_json_round_trip_presets_and_errors():
    tiny = TrainConfig.tiny()
    assert TrainConfig.from_dict(tiny.to_dict()) == tiny
    assert TrainConfig.from_dict({"preset": "tiny", "epochs": "5"}) == TrainConfig.tiny(epochs=5)
    assert TrainConfig.demo().input_size == 192
    with pytest.raises(TrainConfigError, match="Unknown TrainConfig keys"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(TrainConfigError, match="multiple of 16"):
        TrainConfig(input_size=100)
