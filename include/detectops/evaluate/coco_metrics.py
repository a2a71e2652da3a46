"""COCO box metrics with pycocotools: the 12 standard numbers, per-class AP, PR curves.

pycocotools marks "not defined" (no ground truth in that class or area range) with -1;
here that becomes ``None``, so a missing number can never be mistaken for a bad one.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Names of ``COCOeval.stats`` in order (box AP at IoU .50:.95/.50/.75, by area, then AR by maxDets/area).
METRIC_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)

METRIC_DESCRIPTIONS: dict[str, str] = {
    "AP": "AP @ IoU 0.50:0.95, all areas, maxDets 100 (COCO mAP)",
    "AP50": "AP @ IoU 0.50",
    "AP75": "AP @ IoU 0.75",
    "APs": "AP small objects (area < 32^2 px)",
    "APm": "AP medium objects (32^2 <= area < 96^2 px)",
    "APl": "AP large objects (area >= 96^2 px)",
    "AR1": "AR given 1 detection per image",
    "AR10": "AR given 10 detections per image",
    "AR100": "AR given 100 detections per image",
    "ARs": "AR small objects, maxDets 100",
    "ARm": "AR medium objects, maxDets 100",
    "ARl": "AR large objects, maxDets 100",
}


@dataclass
class CocoMetrics:
    """What ``coco_metrics`` computes.

    ``metrics``: the 12 numbers of ``METRIC_NAMES`` (``None`` = undefined, no ground truth).
    ``per_class_ap`` / ``per_class_ap50``: by category name (``None`` = no ground truth of that class).
    ``precision``: ``COCOeval.eval['precision']`` for area "all", maxDets 100, shape
    [IoU thresholds, recall thresholds, categories], -1 where undefined — what PR curves plot.
    """

    metrics: dict[str, float | None]
    per_class_ap: dict[str, float | None]
    per_class_ap50: dict[str, float | None]
    category_ids: list[int]
    category_names: list[str]
    num_gt: dict[str, int]
    iou_thresholds: np.ndarray = field(repr=False)
    recall_thresholds: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-friendly part (no arrays)."""
        return {
            "metrics": dict(self.metrics),
            "per_class_ap": dict(self.per_class_ap),
            "per_class_ap50": dict(self.per_class_ap50),
            "num_gt": dict(self.num_gt),
        }


def _defined(value: float) -> float | None:
    return None if value < 0 else float(value)


def _mean_defined(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _ground_truth(gt: dict[str, Any]) -> Any:
    """A pycocotools ``COCO`` from a dict, filling the fields pycocotools needs but COCO files may omit."""
    from pycocotools.coco import COCO

    dataset = copy.deepcopy(gt)
    dataset.setdefault("info", {})
    for i, ann in enumerate(dataset.get("annotations", []), start=1):
        ann.setdefault("id", i)
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2]) * float(ann["bbox"][3]))
    dataset.setdefault("annotations", [])
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _results(coco_gt: Any, detections: list[dict[str, Any]]) -> Any:
    """The results ``COCO``; an empty one when there are no detections (``loadRes`` rejects [])."""
    from pycocotools.coco import COCO

    known = set(coco_gt.getImgIds())
    unknown = {d["image_id"] for d in detections} - known
    if unknown:
        raise ValueError(
            f"detections refer to image ids not in the ground truth: {sorted(unknown)[:10]}; "
            "evaluate against the same annotations file the images came from"
        )
    if detections:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes([dict(d) for d in detections])  # loadRes edits its input
    res = COCO()
    res.dataset = {
        "info": {},
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def coco_metrics(gt: dict[str, Any], detections: list[dict[str, Any]]) -> CocoMetrics:
    """COCO box metrics of ``detections`` against the ground-truth COCO dict ``gt``.

    ``detections``: COCO results, ``{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}``.
    Keep all detections (no score threshold): AP integrates over the score ranking.
    Detections of categories absent from ``gt["categories"]`` are ignored, as pycocotools does.
    """
    from pycocotools.cocoeval import COCOeval

    coco_gt = _ground_truth(gt)
    coco_dt = _results(coco_gt, detections)
    category_ids = sorted(coco_gt.getCatIds())
    names = [coco_gt.cats[c].get("name", str(c)) for c in category_ids]
    num_gt = {
        name: sum(1 for a in coco_gt.dataset["annotations"] if a["category_id"] == cid and not a.get("iscrowd"))
        for cid, name in zip(category_ids, names)
    }

    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    # precision: [T IoU thresholds, R recall thresholds, K categories, A areas, M maxDets]
    # area index 0 = "all", maxDets index -1 = 100.
    if "precision" in evaluator.eval:
        precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1]
    else:
        precision = -np.ones((len(evaluator.params.iouThrs), len(evaluator.params.recThrs), len(category_ids)))
    per_class_ap = {name: _mean_defined(precision[:, :, k]) for k, name in enumerate(names)}
    per_class_ap50 = {name: _mean_defined(precision[0, :, k]) for k, name in enumerate(names)}
    metrics = {name: _defined(v) for name, v in zip(METRIC_NAMES, evaluator.stats)}
    return CocoMetrics(
        metrics=metrics,
        per_class_ap=per_class_ap,
        per_class_ap50=per_class_ap50,
        category_ids=category_ids,
        category_names=names,
        num_gt=num_gt,
        iou_thresholds=np.asarray(evaluator.params.iouThrs),
        recall_thresholds=np.asarray(evaluator.params.recThrs),
        precision=precision,
    )
