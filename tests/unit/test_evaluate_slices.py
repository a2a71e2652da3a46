"""Slices of a test split (per batch, per class, per brightness bucket) on hand-built cases with known AP."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from detectops.evaluate.coco_metrics import coco_metrics
from detectops.evaluate.slices import (
    BRIGHTNESS_EDGES,
    UNMAPPED_BATCH,
    batches_from_images,
    brightness_bucket,
    evaluate_slices,
    image_brightness,
    mean_luma,
    slice_image_ids,
)

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
BATCHES = {"a1.jpg": "batch-a", "a2.jpg": "batch-a", "b1.jpg": "batch-b", "b2.jpg": "batch-b"}


def _case():
    """4 images (2 per batch); every image has a circle, images 1 and 3 also a square.

    The detector finds every box of batch a exactly (score .9) and nothing in batch b.
    """
    images = [{"id": i, "file_name": name, "width": 100, "height": 100} for i, name in enumerate(BATCHES, start=1)]
    annotations = []
    for im in images:
        annotations.append({"image_id": im["id"], "category_id": 1, "bbox": [10.0, 10.0, 30.0, 30.0]})
        if im["id"] in (1, 3):
            annotations.append({"image_id": im["id"], "category_id": 2, "bbox": [50.0, 50.0, 40.0, 40.0]})
    for i, a in enumerate(annotations, start=1):
        a.update(id=i, area=a["bbox"][2] * a["bbox"][3], iscrowd=0)
    gt = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 0.9}
        for a in annotations if a["image_id"] in (1, 2)
    ]
    return gt, detections


def test_perfect_batch_scores_one_and_missed_batch_zero():
    gt, dets = _case()
    report = evaluate_slices(gt, dets, image_batches=BATCHES, min_images=2, min_boxes=3)
    a, b = report.slices["batch"]["batch-a"], report.slices["batch"]["batch-b"]
    assert (a.ap, a.ap50, a.num_images, a.num_boxes, a.too_small) == (pytest.approx(1.0), pytest.approx(1.0), 2, 3, False)
    assert (b.ap, b.ap50, b.num_images, b.num_boxes, b.too_small) == (0.0, 0.0, 2, 3, False)
    assert "brightness" not in report.slices  # no brightness given, no brightness slices


def test_per_class_ap_over_the_whole_split():
    gt, dets = _case()
    report = evaluate_slices(gt, dets, min_boxes=3)
    # circle: 2 of 4 found, both ranked first -> precision 1 up to recall .5: 51 of 101 recall points.
    circle, square = report.per_class["circle"], report.per_class["square"]
    assert circle.ap == pytest.approx(51 / 101) and circle.num_boxes == 4 and not circle.too_small
    assert square.ap == pytest.approx(51 / 101) and square.num_boxes == 2 and square.too_small


def test_brightness_buckets_use_the_fixed_edges():
    gt, dets = _case()
    luma = {1: 10.0, 2: BRIGHTNESS_EDGES[0] - 0.01, 3: BRIGHTNESS_EDGES[0], 4: 200.0}
    report = evaluate_slices(gt, dets, brightness=luma, min_images=2, min_boxes=1)
    dark, mid, bright = (report.slices["brightness"][k] for k in ("dark", "mid", "bright"))
    assert dark.ap == pytest.approx(1.0) and dark.num_images == 2 and not dark.too_small
    assert mid.ap == 0.0 and mid.num_images == 1 and mid.too_small  # 1 image < 2
    assert bright.ap == 0.0 and bright.num_boxes == 1
    assert report.config["brightness_edges"] == list(BRIGHTNESS_EDGES)


def test_empty_bucket_is_listed_undefined_and_too_small():
    gt, dets = _case()
    report = evaluate_slices(gt, dets, brightness={i: 120.0 for i in range(1, 5)}, edges=(50, 100))
    assert list(report.slices["brightness"]) == ["dark", "mid", "bright"]
    dark = report.slices["brightness"]["dark"]
    assert (dark.ap, dark.num_images, dark.too_small) == (None, 0, True)
    assert report.to_dict()["slices"]["brightness"]["bright"]["num_images"] == 4


def test_slice_ap_equals_ap_of_a_dataset_made_of_the_slice_alone():
    """Restricting COCOeval's imgIds must give what evaluating the slice's images separately gives."""
    gt, _ = _case()
    rng = np.random.default_rng(3)
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.uniform(0.1, 1)),
         "bbox": [v + float(rng.uniform(-6, 6)) for v in a["bbox"]]}
        for a in gt["annotations"]
    ] + [{"image_id": i, "category_id": 1, "bbox": [60.0, 5.0, 20.0, 20.0], "score": float(rng.uniform(0, 1))}
         for i in range(1, 5)]
    report = evaluate_slices(gt, dets, image_batches=BATCHES)
    ids = {1, 2}
    alone = {
        "images": [im for im in gt["images"] if im["id"] in ids],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in ids],
        "categories": CATEGORIES,
    }
    expected = coco_metrics(alone, [d for d in dets if d["image_id"] in ids]).metrics
    assert 0 < expected["AP"] < 1
    assert report.slices["batch"]["batch-a"].ap == pytest.approx(expected["AP"])
    assert report.slices["batch"]["batch-a"].ap50 == pytest.approx(expected["AP50"])


def test_images_missing_from_the_batch_mapping_form_their_own_slice():
    gt, _ = _case()
    groups = slice_image_ids(gt["images"], image_batches={"a1.jpg": "batch-a"})
    assert groups["batch"] == {UNMAPPED_BATCH: [2, 3, 4], "batch-a": [1]}


def test_batches_come_from_image_records_only_when_every_image_names_one():
    images = [{"id": 1, "file_name": "x.jpg", "batch": "b1"}, {"id": 2, "file_name": "y.jpg", "batch": "b2"}]
    assert batches_from_images(images) == {"x.jpg": "b1", "y.jpg": "b2"}
    assert batches_from_images([*images, {"id": 3, "file_name": "z.jpg"}]) is None
    assert batches_from_images([]) is None


def test_bad_edges_and_missing_brightness_are_refused():
    gt, _ = _case()
    with pytest.raises(ValueError, match="low < high"):
        slice_image_ids(gt["images"], brightness={i: 1.0 for i in range(1, 5)}, edges=(170, 85))
    with pytest.raises(ValueError, match="image id 4"):
        slice_image_ids(gt["images"], brightness={1: 1.0, 2: 1.0, 3: 1.0})


def test_brightness_bucket_edges_and_mean_luma():
    assert [brightness_bucket(v) for v in (0, 84.9, 85, 169.9, 170, 255)] == ["dark", "dark", "mid", "mid", "bright", "bright"]
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    assert mean_luma(red) == pytest.approx(200 * 0.299, abs=1e-3)
    assert mean_luma(np.full((600, 900, 3), 77, np.uint8)) == pytest.approx(77.0)


def test_image_brightness_reads_each_image_of_a_dataset(tmp_path):
    from detectops.data import CocoDataset

    (tmp_path / "images").mkdir()
    images = []
    for i, level in enumerate((30, 120, 220), start=1):
        Image.fromarray(np.full((20, 30, 3), level, np.uint8)).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 30, "height": 20})
    ds = CocoDataset(root=tmp_path, images=images, categories=CATEGORIES)
    luma = image_brightness(ds)
    assert luma == {1: pytest.approx(30), 2: pytest.approx(120), 3: pytest.approx(220)}
    assert [brightness_bucket(luma[i]) for i in (1, 2, 3)] == ["dark", "mid", "bright"]
