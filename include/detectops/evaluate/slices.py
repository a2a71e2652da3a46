"""AP and AP50 per slice of a test split: per batch, per class, per image-brightness bucket.

The detector runs once over the split; its COCO results are then scored on each slice by
running pycocotools' ``COCOeval`` with ``params.imgIds`` restricted to the slice's images.
COCO matches detections to ground truth image by image, so a slice's numbers are exactly
those of a dataset made of that slice's images alone, without running the model again.

A slice with too few images or boxes is still reported, but marked ``too_small``: below
about 20 boxes a single box moves AP by 5 points or more, more than any sensible drop bound,
so a gate must not act on it (see ``detectops.gate``).

    report = evaluate_slices(gt, coco_results, image_batches={"a.jpg": "batch-1", ...},
                             brightness=image_brightness(dataset))
    report.per_class["ring"].ap, report.slices["brightness"]["dark"].ap
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from detectops.evaluate.coco_metrics import _ground_truth, _mean_defined, _results

log = logging.getLogger(__name__)

#: Mean-luma edges (BT.601 luma, 0-255) between the buckets ``dark | mid | bright``.
#: Fixed thirds of the 8-bit range, not quantiles of the data: a bucket must mean the same
#: thing in every dataset version and for candidate and champion alike, so its AP can be
#: compared across runs. On the synthetic generator they separate what matters: its default
#: images sit at luma 80-180 (mostly mid), ``brightness=0.6`` moves most below 85 (dark),
#: ``brightness=1.4`` moves half above 170 (bright); ordinary photos average 100-130.
BRIGHTNESS_EDGES: tuple[float, float] = (85.0, 170.0)
BRIGHTNESS_BUCKETS: tuple[str, str, str] = ("dark", "mid", "bright")

#: Slices with fewer images, or fewer ground-truth boxes, are reported but ``too_small``.
MIN_SLICE_IMAGES = 10
MIN_SLICE_BOXES = 20

#: The batch of test images the ``image_batches`` mapping does not name.
UNMAPPED_BATCH = "(unmapped)"


def mean_luma(pixels: np.ndarray) -> float:
    """Mean luma (ITU-R BT.601, 0-255) of an H x W x 3 uint8 image.

    The prediction log's ``brightness_mean`` (``monitoring.features``), so a bucket here
    means the same in production.
    """
    from detectops.monitoring.features import image_features

    return image_features(pixels)["brightness_mean"]


def brightness_bucket(luma: float, edges: Sequence[float] = BRIGHTNESS_EDGES) -> str:
    """``dark`` below ``edges[0]``, ``bright`` at or above ``edges[1]``, else ``mid``."""
    low, high = edges
    if luma < low:
        return BRIGHTNESS_BUCKETS[0]
    return BRIGHTNESS_BUCKETS[2] if luma >= high else BRIGHTNESS_BUCKETS[1]


def image_brightness(dataset: Any) -> dict[int, float]:
    """``{image_id: mean luma}`` of every image of a ``CocoDataset`` (decodes each image once).

    Brightness belongs to the data, not the model: compute it once per split and pass it to
    ``evaluate_slices`` for every model evaluated on that split.
    """
    from detectops.evaluate.runner import load_image

    return {int(im["id"]): mean_luma(load_image(dataset.image_path(im))) for im in dataset.images}


def batches_from_images(images: Sequence[Mapping[str, Any]]) -> dict[str, str] | None:
    """``{file_name: batch}`` from image records that carry a ``"batch"`` key, as a dataset
    version's splits do (``detectops.data.versioning``); ``None`` unless every image has one."""
    if not images or any(im.get("batch") in (None, "") for im in images):
        return None
    return {str(im["file_name"]): str(im["batch"]) for im in images}


def _check_edges(edges: Sequence[float]) -> tuple[float, float]:
    if len(edges) != 2 or not 0 <= edges[0] < edges[1] <= 255:
        raise ValueError(f"brightness edges must be two luma values 0 <= low < high <= 255, got {list(edges)}")
    return float(edges[0]), float(edges[1])


@dataclass
class SliceMetrics:
    """AP of one slice. ``ap`` / ``ap50`` are ``None`` when the slice has no ground-truth box."""

    kind: str  # "batch" | "brightness" | "class"
    name: str
    num_images: int
    num_boxes: int
    ap: float | None
    ap50: float | None
    too_small: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SliceReport:
    """What ``evaluate_slices`` computes.

    ``per_class``: by class name, over the whole split; ``slices``: ``{kind: {name: metrics}}``
    for kinds ``batch`` (only with an image -> batch mapping) and ``brightness`` (only with
    per-image brightness). ``config``: the edges and limits used, so a report explains itself.
    """

    per_class: dict[str, SliceMetrics] = field(default_factory=dict)
    slices: dict[str, dict[str, SliceMetrics]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_class": {k: v.to_dict() for k, v in self.per_class.items()},
            "slices": {kind: {k: v.to_dict() for k, v in group.items()} for kind, group in self.slices.items()},
            "config": dict(self.config),
        }


def slice_image_ids(
    images: Sequence[Mapping[str, Any]],
    *,
    image_batches: Mapping[str, str] | None = None,
    brightness: Mapping[int, float] | None = None,
    edges: Sequence[float] = BRIGHTNESS_EDGES,
) -> dict[str, dict[str, list[int]]]:
    """``{kind: {slice name: [image ids]}}`` for the batch and brightness slices.

    ``image_batches`` maps an image's ``file_name`` (exactly as in the annotations) to the
    batch it came from; test images it does not name form the batch ``(unmapped)``.
    All three brightness buckets are always listed, empty ones too, so that reports line up.
    """
    out: dict[str, dict[str, list[int]]] = {}
    if image_batches is not None:
        batches: dict[str, list[int]] = {}
        for im in images:
            batch = image_batches.get(str(im["file_name"]), UNMAPPED_BATCH)
            batches.setdefault(str(batch), []).append(int(im["id"]))
        if UNMAPPED_BATCH in batches:
            log.warning("%d test images are in no batch of the mapping; they form the slice %s",
                        len(batches[UNMAPPED_BATCH]), UNMAPPED_BATCH)
        out["batch"] = dict(sorted(batches.items()))
    if brightness is not None:
        edges = _check_edges(edges)
        buckets: dict[str, list[int]] = {name: [] for name in BRIGHTNESS_BUCKETS}
        for im in images:
            image_id = int(im["id"])
            if image_id not in brightness:
                raise ValueError(f"no brightness for image id {image_id}; compute it with image_brightness(dataset)")
            buckets[brightness_bucket(brightness[image_id], edges)].append(image_id)
        out["brightness"] = buckets
    return out


def _ap_on(coco_gt: Any, coco_dt: Any, image_ids: list[int]) -> tuple[float | None, float | None]:
    """``(AP, AP50)`` of all classes on ``image_ids`` only (``None``: no ground truth there)."""
    from pycocotools.cocoeval import COCOeval

    if not image_ids:
        return None, None
    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    evaluator.params.imgIds = sorted(image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    if "precision" not in evaluator.eval:
        return None, None
    # [IoU thresholds, recall thresholds, categories, area "all", maxDets 100]: the same
    # numbers as COCOeval.stats[0] and [1], without summarize()'s printing.
    precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1]
    return _mean_defined(precision), _mean_defined(precision[0])


def evaluate_slices(
    gt: dict[str, Any],
    detections: list[dict[str, Any]],
    *,
    image_batches: Mapping[str, str] | None = None,
    brightness: Mapping[int, float] | None = None,
    edges: Sequence[float] = BRIGHTNESS_EDGES,
    min_images: int = MIN_SLICE_IMAGES,
    min_boxes: int = MIN_SLICE_BOXES,
) -> SliceReport:
    """Per-class and per-slice AP/AP50 of ``detections`` (COCO results) against the COCO dict ``gt``.

    A class is ``too_small`` with fewer than ``min_boxes`` ground-truth boxes; a slice with
    fewer than ``min_images`` images or ``min_boxes`` boxes. Crowd boxes are not counted,
    as COCO ignores them.
    """
    coco_gt = _ground_truth(gt)
    coco_dt = _results(coco_gt, detections)
    boxes_per_image: dict[int, int] = {}
    for ann in coco_gt.dataset["annotations"]:
        if not ann.get("iscrowd"):
            boxes_per_image[int(ann["image_id"])] = boxes_per_image.get(int(ann["image_id"]), 0) + 1

    report = SliceReport(config={
        "brightness_edges": list(_check_edges(edges)),
        "brightness_buckets": list(BRIGHTNESS_BUCKETS),
        "min_images": int(min_images),
        "min_boxes": int(min_boxes),
    })
    report.per_class = _per_class(coco_gt, coco_dt, min_boxes)
    groups = slice_image_ids(coco_gt.dataset["images"], image_batches=image_batches, brightness=brightness, edges=edges)
    for kind, named in groups.items():
        report.slices[kind] = {}
        for name, ids in named.items():
            ap, ap50 = _ap_on(coco_gt, coco_dt, ids)
            num_boxes = sum(boxes_per_image.get(i, 0) for i in ids)
            report.slices[kind][name] = SliceMetrics(
                kind=kind, name=name, num_images=len(ids), num_boxes=num_boxes, ap=ap, ap50=ap50,
                too_small=len(ids) < min_images or num_boxes < min_boxes,
            )
    return report


def _per_class(coco_gt: Any, coco_dt: Any, min_boxes: int) -> dict[str, SliceMetrics]:
    """COCO per-class AP over the whole split (one ``COCOeval``, the per-category precision)."""
    from pycocotools.cocoeval import COCOeval

    category_ids = sorted(coco_gt.getCatIds())
    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    precision = np.asarray(evaluator.eval["precision"])[:, :, :, 0, -1] if "precision" in evaluator.eval else None
    out = {}
    for k, cid in enumerate(category_ids):
        anns = [a for a in coco_gt.loadAnns(coco_gt.getAnnIds(catIds=[cid])) if not a.get("iscrowd")]
        name = str(coco_gt.cats[cid].get("name", cid))
        ap = _mean_defined(precision[:, :, k]) if precision is not None else None
        ap50 = _mean_defined(precision[0, :, k]) if precision is not None else None
        out[name] = SliceMetrics(
            kind="class", name=name, num_images=len({a["image_id"] for a in anns}),
            num_boxes=len(anns), ap=ap, ap50=ap50, too_small=len(anns) < min_boxes,
        )
    return out
