"""``evaluate_model``: one model on one dataset -> COCO metrics, latency and report files.

This is the one place where the evaluation steps are composed; each step lives in its own
module (``runner``, ``coco_metrics``, ``plots``, ``report``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detectops import settings
from detectops.evaluate.coco_metrics import coco_metrics
from detectops.evaluate.plots import pr_curves_png, samples_grid_png
from detectops.evaluate.report import write_json, write_per_class_csv, write_per_class_markdown
from detectops.evaluate.runner import latency_summary, load_image, run_detector
from detectops.fsutil import staged_dir

#: Artifact file names inside the output directory (also their paths under the MLflow run).
ARTIFACT_FILES = {
    "per_class_ap_csv": "per_class_ap.csv",
    "per_class_ap_md": "per_class_ap.md",
    "pr_curves_png": "pr_curves.png",
    "samples_png": "samples.png",
    "coco_results_json": "coco_results.json",
    "summary_json": "summary.json",
}


@dataclass
class EvaluationResult:
    """The record of one evaluation (crosses XCom as ``to_dict()``).

    ``metrics``: the 12 COCO metrics (``AP``, ``AP50``, ... ``ARl``; ``None`` = undefined);
    ``per_class_ap`` / ``per_class_ap50``: by class name; ``latency``: ``p50_ms``, ``p95_ms``,
    ``mean_ms`` (model call), ``throughput_ips`` (end to end); ``model`` / ``dataset``: the
    references evaluated (dicts of ``ModelRef`` / ``DatasetRef``); ``artifacts``: name -> path.
    """

    metrics: dict[str, float | None]
    per_class_ap: dict[str, float | None]
    per_class_ap50: dict[str, float | None]
    latency: dict[str, float]
    num_images: int
    num_detections: int
    score_threshold: float
    model: dict[str, Any]
    dataset: dict[str, Any]
    output_dir: str
    artifacts: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvaluationResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _model_info(model: Any) -> dict[str, Any]:
    """A ``ModelRef`` dict for ``model``: a ``ModelRef``, its dict, or anything ``fetch_model`` accepts.

    A SavedModel directory, ``centernet``, a zoo name, ``models:/NAME@champion`` ... are all
    resolved by ``detectops.models.fetch_model`` (which verifies the contract and hashes it).
    """
    if hasattr(model, "to_dict"):
        return dict(model.to_dict())
    if isinstance(model, dict):
        return dict(model)
    from detectops.models import fetch_model

    return dict(fetch_model(str(model)).to_dict())


def default_output_dir(model: dict[str, Any], dataset_sha256: str) -> Path:
    """``<work>/evaluations/<model>__<dataset hash>``: one directory per (model, data) pair."""
    tag = (model.get("sha256") or "")[:12] or Path(model["path"]).name
    return settings.work_dir() / "evaluations" / f"{tag}__{dataset_sha256[:12]}"


def evaluate_model(
    model: Any,
    dataset_dir: str | Path,
    *,
    output_dir: str | Path | None = None,
    score_threshold: float = 0.0,
    display_threshold: float = 0.3,
    num_samples: int = 6,
    dataset_name: str | None = None,
) -> EvaluationResult:
    """Evaluate a detector on a COCO dataset directory and write the report files.

    ``score_threshold``: detections below it are dropped before the metrics; the default 0
    keeps all, as COCO evaluation expects (AP integrates over the score ranking).
    ``display_threshold`` only affects the sample picture.
    """
    from detectops.data import CocoDataset
    from detectops.models import Detector

    started = time.perf_counter()
    info = _model_info(model)
    dataset = CocoDataset.load(dataset_dir)
    dataset_ref = dataset.ref(dataset_name)
    out = Path(output_dir) if output_dir is not None else default_output_dir(info, dataset_ref.sha256)

    detector = Detector.load(info["path"])
    images = [(int(im["id"]), dataset.image_path(im)) for im in dataset.images]
    run = run_detector(detector, images)
    results = [r for r in run.results if r["score"] >= score_threshold]
    gt = dataset.to_json_dict()
    cm = coco_metrics(gt, results)
    latency = latency_summary(run)

    label_map = {**detector.label_map, **dataset.label_map()}
    by_image_gt = dataset.annotations_by_image()
    by_image_dt: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image_dt.setdefault(r["image_id"], []).append(r)

    with staged_dir(out, replace=True) as tmp:  # a rerun's report replaces the last one whole
        write_per_class_csv(cm, tmp / ARTIFACT_FILES["per_class_ap_csv"])
        write_per_class_markdown(
            cm, tmp / ARTIFACT_FILES["per_class_ap_md"],
            title=f"{info.get('name') or Path(info['path']).name} on {dataset_ref.name}",
        )
        pr_curves_png(cm, tmp / ARTIFACT_FILES["pr_curves_png"])
        samples = [
            (load_image(path), by_image_gt.get(image_id, []), by_image_dt.get(image_id, []))
            for image_id, path in images[:num_samples]
        ]
        samples_grid_png(samples, label_map, tmp / ARTIFACT_FILES["samples_png"], display_threshold=display_threshold)
        write_json(results, tmp / ARTIFACT_FILES["coco_results_json"])
        result = EvaluationResult(
            metrics=cm.metrics,
            per_class_ap=cm.per_class_ap,
            per_class_ap50=cm.per_class_ap50,
            latency=latency,
            num_images=run.num_images,
            num_detections=len(results),
            score_threshold=score_threshold,
            model=info,
            dataset=dataset_ref.to_dict(),
            output_dir=str(out.resolve()),
            artifacts={k: str((out / name).resolve()) for k, name in ARTIFACT_FILES.items()},
            duration_s=round(time.perf_counter() - started, 3),
        )
        write_json(result.to_dict(), tmp / ARTIFACT_FILES["summary_json"])
    return result
