"""COCO metrics on cases small enough to compute by hand (real pycocotools, no mocks)."""

from __future__ import annotations

import pytest

from detectops.evaluate.coco_metrics import METRIC_NAMES, coco_metrics

# One 200x200 image, one person box of 100x100 px (area 10000 >= 96^2: a "large" object).
GT = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
    "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100]}],
}


def det(x: float, y: float, w: float = 100, h: float = 100, score: float = 0.9, cat: int = 1, image: int = 1) -> dict:
    return {"image_id": image, "category_id": cat, "bbox": [x, y, w, h], "score": score}


def test_perfect_detection_gives_ap_1_and_names_all_12_metrics():
    cm = coco_metrics(GT, [det(10, 10)])
    assert list(cm.metrics) == list(METRIC_NAMES)
    for name in ("AP", "AP50", "AP75", "APl", "AR1", "AR10", "AR100", "ARl"):
        assert cm.metrics[name] == pytest.approx(1.0), name
    assert cm.per_class_ap["person"] == pytest.approx(1.0)


def test_undefined_metrics_are_none_not_minus_one():
    cm = coco_metrics(GT, [det(10, 10)])
    # No small/medium ground truth, and no dog at all: pycocotools says -1, we say None.
    assert cm.metrics["APs"] is None and cm.metrics["APm"] is None
    assert cm.metrics["ARs"] is None and cm.metrics["ARm"] is None
    assert cm.per_class_ap["dog"] is None and cm.per_class_ap50["dog"] is None
    assert cm.num_gt == {"person": 1, "dog": 0}


def test_shift_with_known_iou_passes_exactly_the_thresholds_below_it():
    # Shifted 23 px right: IoU = 77*100 / (2*10000 - 77*100) = 0.626, which passes
    # IoU thresholds 0.50, 0.55, 0.60 and fails 0.65 ... 0.95 -> AP = 3/10.
    cm = coco_metrics(GT, [det(33, 10)])
    assert cm.metrics["AP50"] == pytest.approx(1.0)
    assert cm.metrics["AP75"] == pytest.approx(0.0)
    assert cm.metrics["AP"] == pytest.approx(0.3)
    assert cm.metrics["AR100"] == pytest.approx(0.3)


def test_false_positive_ranked_first_halves_ap():
    # Ranking: FP (0.95) then TP (0.9): precision 0 then 1/2 at recall 1; the interpolated
    # precision is 0.5 at every recall point -> AP 0.5. Ranked after the TP it costs nothing.
    fp = det(100, 100, score=0.95)  # same size (a large object too), no overlap with the GT
    assert coco_metrics(GT, [fp, det(10, 10, score=0.9)]).metrics["AP"] == pytest.approx(0.5)
    assert coco_metrics(GT, [det(10, 10, score=0.9), {**fp, "score": 0.5}]).metrics["AP"] == pytest.approx(1.0)


def test_missed_object_caps_recall_and_gives_51_of_101_points():
    gt = {**GT, "annotations": GT["annotations"] + [{"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 100, 100, 100]}]}
    cm = coco_metrics(gt, [det(10, 10)])
    # Precision 1 up to recall 0.5: recall points 0.00 .. 0.50 (51 of 101) -> AP = 51/101.
    assert cm.metrics["AP"] == pytest.approx(51 / 101)
    assert cm.metrics["AR100"] == pytest.approx(0.5)


def test_no_detections_gives_zero_where_there_is_ground_truth():
    cm = coco_metrics(GT, [])
    assert cm.metrics["AP"] == 0.0 and cm.metrics["AR100"] == 0.0
    assert cm.per_class_ap == {"person": 0.0, "dog": None}
    assert cm.precision.shape == (10, 101, 2)


def test_wrong_class_does_not_count_and_unknown_category_is_ignored():
    cm = coco_metrics(GT, [det(10, 10, cat=2), det(10, 10, cat=99)])
    assert cm.metrics["AP"] == 0.0
    assert cm.per_class_ap["dog"] is None  # a dog detection without dog ground truth stays undefined


def test_detection_on_unknown_image_is_an_error_that_says_so():
    with pytest.raises(ValueError, match="image ids not in the ground truth"):
        coco_metrics(GT, [det(10, 10, image=7)])


def test_pr_arrays_give_curve_per_class():
    cm = coco_metrics(GT, [det(33, 10)])
    k = cm.category_ids.index(1)
    assert cm.recall_thresholds.shape == (101,)
    assert cm.precision[0, :, k] == pytest.approx(1.0)  # IoU 0.50: perfect curve
    assert cm.precision[5, :, k] == pytest.approx(0.0)  # IoU 0.75: never matched


def test_ground_truth_without_area_or_iscrowd_is_accepted_and_input_not_mutated():
    gt = {**GT, "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 100, 100]}]}
    d = det(10, 10)
    coco_metrics(gt, [d])
    assert "area" not in gt["annotations"][0]
    assert set(d) == {"image_id", "category_id", "bbox", "score"}
