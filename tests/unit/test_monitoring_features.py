"""Prediction features: checked against hand-computed images, and the reference table built from a dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectops.monitoring.features import box_sizes, image_features, output_features, thumbnail


def test_a_flat_grey_image_has_its_luma_no_spread_no_saturation_and_no_edges():
    f = image_features(np.full((60, 80, 3), 100, np.uint8))
    assert f["width"] == 80 and f["height"] == 60 and f["aspect_ratio"] == pytest.approx(80 / 60, abs=1e-4)
    assert f["brightness_mean"] == pytest.approx(100, abs=1e-3)
    assert f["brightness_std"] == 0 and f["contrast"] == 0 and f["saturation"] == 0 and f["sharpness"] == 0


def test_pure_red_has_bt601_luma_and_full_saturation():
    pixels = np.zeros((10, 10, 3), np.uint8)
    pixels[..., 0] = 255
    f = image_features(pixels)
    assert f["brightness_mean"] == pytest.approx(0.299 * 255, abs=1e-2)
    assert f["saturation"] == pytest.approx(1.0)


def test_contrast_is_the_spread_between_dark_and_light_halves_and_edges_are_sharp():
    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[:, 20:] = 200
    f = image_features(pixels)
    assert f["brightness_mean"] == pytest.approx(100, abs=1e-2)
    assert f["contrast"] == pytest.approx(200, abs=1e-2)
    # The Laplacian is +-200 on the two columns beside the edge, 0 elsewhere (38x38 interior).
    lap = np.zeros((38, 38))
    lap[:, 18], lap[:, 19] = 200, -200
    assert f["sharpness"] == pytest.approx(lap.var(), rel=1e-4)


def test_blurring_lowers_sharpness():
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    blurred = ((noisy[:-1, :-1].astype(np.float32) + noisy[1:, 1:] + noisy[:-1, 1:] + noisy[1:, :-1]) / 4).astype(np.uint8)
    assert image_features(blurred)["sharpness"] < image_features(noisy)["sharpness"] / 3


def test_the_declared_size_wins_over_a_reduced_decode_and_thumbnails_are_bounded():
    big = np.zeros((3000, 4000, 3), np.uint8)
    assert max(thumbnail(big).shape[:2]) <= 128
    assert image_features(big[::8, ::8], width=4000, height=3000)["width"] == 4000


def test_output_features_and_relative_box_sizes():
    # A box covering a quarter of the image in each direction has size sqrt(1/16) = 0.25.
    sizes = box_sizes(np.array([[0, 0, 0.25, 0.25], [0, 0, 1, 1]]))
    assert sizes == [0.25, 1.0]
    out = output_features([0.9, 0.5], [3, 1], sizes)
    assert out["num_detections"] == 2 and out["mean_score"] == pytest.approx(0.7)
    assert out["mean_box_size"] == pytest.approx(0.625) and out["classes"] == [3, 1]
    assert output_features([], [], [])["mean_score"] is None


@pytest.mark.platform
def test_reference_rows_take_image_features_and_thresholded_detections(tiny_eval_case):
    from detectops.monitoring.reference import build_reference, summary

    _, dataset_dir = tiny_eval_case
    detections = [  # image 1 is 200x100: a 50x25 box has size sqrt(1250/20000) = 0.25
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 25], "score": 0.9},
        {"image_id": 1, "category_id": 18, "bbox": [0, 0, 5, 5], "score": 0.1},  # below min_score
    ]
    frame = build_reference({"eval": dataset_dir, "train": dataset_dir}, evaluated_split="eval",
                            detections=detections, min_score=0.3)
    assert sorted(frame["split"].value_counts().items()) == [("eval", 2), ("train", 2)]
    first = frame[(frame["split"] == "eval") & (frame["width"] == 200)].iloc[0]
    assert first["num_detections"] == 1 and list(first["classes"]) == [1]
    assert first["mean_box_size"] == pytest.approx(0.25, abs=1e-4)
    assert frame[frame["split"] == "train"]["num_detections"].isna().all()  # no detections asked for
    s = summary(frame, 0.3)
    assert s["rows"] == 4 and s["splits"] == {"eval": 2, "train": 2}
    json.dumps(s)


@pytest.mark.platform
def test_an_empty_dataset_has_no_reference(tmp_path):
    from detectops.data import CocoDataset
    from detectops.monitoring.reference import build_reference

    (tmp_path / "images").mkdir()
    CocoDataset(root=tmp_path, images=[], annotations=[], categories=[{"id": 1, "name": "a"}]).save()
    with pytest.raises(ValueError, match="no images"):
        build_reference({"eval": tmp_path})
