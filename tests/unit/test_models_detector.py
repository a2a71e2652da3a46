"""Detector: loads a contract SavedModel and returns exactly what the model emitted."""

from __future__ import annotations

import numpy as np
import pytest

from detectops.models import Detections, Detector
from tests.support.tiny_detector import make_tiny_detector

BOXES = [[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.9, 0.8], [0.0, 0.0, 0.1, 0.1]]
CLASSES = [1, 47, 18]
SCORES = [0.9, 0.6, 0.2]


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Detector:
    path = make_tiny_detector(tmp_path_factory.mktemp("tiny") / "model", boxes=BOXES, classes=CLASSES, scores=SCORES)
    return Detector.load(path)


def test_predict_returns_typed_detections(detector):
    d = detector.predict(np.zeros((37, 53, 3), np.uint8))
    assert isinstance(d, Detections) and len(d) == 3
    assert d.boxes.dtype == np.float32 and d.boxes.shape == (3, 4)
    assert d.classes.dtype == np.int64 and d.classes.tolist() == CLASSES
    assert d.scores.dtype == np.float32
    np.testing.assert_allclose(d.boxes, BOXES, rtol=1e-6)
    np.testing.assert_allclose(d.scores, SCORES, rtol=1e-6)


def test_label_map_and_rows(detector):
    assert detector.label_map == {1: "person", 18: "dog", 47: "cup"}
    assert detector.input_size is None
    rows = detector.predict(np.zeros((8, 8, 3), np.uint8)).above(0.5).to_dicts(detector.label_map)
    assert [(r["label"], r["score"]) for r in rows] == [("person", 0.9), ("cup", 0.6)]


def test_grayscale_and_rgba_are_accepted_batch_loops(detector):
    gray = np.zeros((10, 12), np.uint8)
    rgba = np.zeros((10, 12, 4), np.uint8)
    results = detector.predict_batch([gray, rgba])
    assert [len(r) for r in results] == [3, 3]


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((10, 10, 3), np.float32), "expected a uint8 image"),
    (np.zeros((10, 10, 2), np.uint8), r"expected an H x W x 3 RGB image, got shape \(10, 10, 2\)"),
])
def test_bad_images_are_explained(detector, image, message):
    with pytest.raises(ValueError, match=message):
        detector.predict(image)


def test_num_detections_truncates_padding(tmp_path):
    det = Detector.load(make_tiny_detector(tmp_path / "empty", boxes=[], classes=[], scores=[], label_map=None))
    d = det.predict(np.zeros((5, 5, 3), np.uint8))
    assert len(d) == 0 and d.boxes.shape == (0, 4)
    assert det.label_map == {}
