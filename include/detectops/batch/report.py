"""A scored batch's outputs: COCO results, the per-image answers, a summary, a contact sheet; MLflow.

Files written by :class:`OutputWriter` (and logged under ``batch_scoring/``):

- ``results.json``  COCO results (``image_id``, ``category_id``, pixel ``bbox`` [x, y, w, h], ``score``),
  every detection the model returned, like the evaluation's ``coco_results.json``;
- ``images.json``   the COCO ``images`` (id, file name, size) and ``categories`` the results refer to,
  and the ``failed`` files with their reasons;
- ``predictions.jsonl`` one line per image: the ``:predict`` prediction and the ``/detect`` rows;
- ``summary.json``  counts (scored, failed, detections per class at ``min_score``), the score histogram,
  throughput, the model and the input;
- ``contact_sheet.png`` annotated samples spread over the batch.

One MLflow run per key (:func:`detectops.batch.scoring.run_key`: model version, input content,
threshold) in the experiment ``detectops-batch-inference``: a retried task finds it and logs nothing twice.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from detectops.fsutil import atomic_write_text

EXPERIMENT = "detectops-batch-inference"
KEY_TAG = "detectops.batch_scoring_key"
ARTIFACT_DIR = "batch_scoring"
FILES = {"results": "results.json", "images": "images.json", "predictions": "predictions.jsonl",
         "summary": "summary.json", "contact_sheet": "contact_sheet.png"}
#: Failures listed in the XCom summary (all of them are in summary.json).
XCOM_FAILURES = 20


def summary_of(scored: Any, *, model: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    """Counts, detections per class at ``min_score``, the histogram of every detection's score, speed."""
    from detectops.batch.scoring import HISTOGRAM_EDGES

    return {
        "model": {k: model.get(k) for k in ("registered_name", "registered_version", "name", "version", "sha256", "source")},
        "input": {k: batch.get(k) for k in ("location", "sha256", "num_files")},
        "min_score": scored.min_score,
        "images_total": scored.num_files,
        "images_scored": len(scored.images),
        "images_failed": len(scored.failures),
        "images_with_detections": scored.with_detections,
        "failures": [f.to_dict() for f in scored.failures],
        "detections": int(sum(scored.per_class.values())),
        "detections_per_class": dict(sorted(scored.per_class.items())),
        "score_histogram": {"edges": list(HISTOGRAM_EDGES), "counts": [int(c) for c in scored.score_counts]},
        "wall_s": round(scored.wall_s, 3),
        "model_s": round(scored.model_s, 3),
        "throughput_ips": round(len(scored.images) / scored.wall_s, 3) if scored.wall_s > 0 else 0.0,
    }


def xcom_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without the long parts (histogram; failures beyond the first ``XCOM_FAILURES``)."""
    out = {k: v for k, v in summary.items() if k not in ("score_histogram", "failures")}
    out["failures"] = summary["failures"][:XCOM_FAILURES]
    out["failures_not_listed"] = max(0, len(summary["failures"]) - XCOM_FAILURES)
    return out


def contact_sheet_png(scored: Any, path: str | Path) -> Path:
    """The sampled images with their detections at ``min_score`` (``evaluate.plots.samples_grid_png``)."""
    from PIL import Image, ImageDraw

    from detectops.evaluate.plots import samples_grid_png

    samples = [(thumb, [], boxes) for thumb, boxes in scored.samples]
    path = samples_grid_png(samples, scored.label_map, path, display_threshold=scored.min_score)
    with Image.open(path) as im:  # its caption speaks of ground truth: a batch has none
        sheet = im.convert("RGB")
    draw = ImageDraw.Draw(sheet)
    draw.rectangle([0, 0, sheet.width, 15], fill=(255, 255, 255))
    draw.text((4, 2), f"{len(samples)} of {scored.num_files} images; detections with score >= {scored.min_score:g}",
              fill=(0, 0, 0))
    sheet.save(path, format="PNG")
    return Path(path)


class OutputWriter:
    """Writes the files listed in the module docstring into ``out_dir``: the per-image ones as the
    images are scored (:meth:`add`), the rest at :meth:`finish`. Every file appears complete or not
    at all (written beside, renamed into place); leaving the ``with`` block early removes the partial ones.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out = Path(out_dir)
        self.paths = {kind: self.out / name for kind, name in FILES.items()}
        self._partial = {kind: self.paths[kind].with_name(f".{self.paths[kind].name}.partial")
                         for kind in ("results", "predictions")}
        self._results = self._predictions = None
        self._first = True

    def __enter__(self) -> OutputWriter:
        self.out.mkdir(parents=True, exist_ok=True)
        self._results = self._partial["results"].open("w")
        self._predictions = self._partial["predictions"].open("w")
        self._results.write("[")
        return self

    def add(self, im: Any) -> None:
        """One scored image: its COCO results and its line of ``predictions.jsonl``."""
        for r in im.coco:
            self._results.write(("" if self._first else ",") + json.dumps(r, separators=(",", ":")))
            self._first = False
        self._predictions.write(json.dumps(im.to_dict(), separators=(",", ":")) + "\n")

    def finish(self, scored: Any, summary: dict[str, Any]) -> dict[str, Path]:
        """Write ``images.json``, ``summary.json`` and the contact sheet; put every file in place."""
        self._results.write("]\n")
        for f in (self._results, self._predictions):
            f.close()
        images = {"images": scored.images,
                  "categories": [{"id": k, "name": v} for k, v in sorted(scored.label_map.items())],
                  "failed": [f.to_dict() for f in scored.failures]}
        atomic_write_text(self.paths["images"], json.dumps(images, indent=1) + "\n")
        atomic_write_text(self.paths["summary"], json.dumps(summary, indent=1) + "\n")
        tmp = self.paths["contact_sheet"].with_suffix(".tmp.png")
        contact_sheet_png(scored, tmp).replace(self.paths["contact_sheet"])
        for kind, partial in self._partial.items():
            partial.replace(self.paths[kind])
        return dict(self.paths)

    def __exit__(self, *exc: Any) -> None:
        for f in (self._results, self._predictions):
            if f is not None and not f.closed:
                f.close()
        for partial in self._partial.values():
            partial.unlink(missing_ok=True)


# --------------------------------------------------------------------------- MLflow
def _experiment_id(client: Any, experiment: str, *, create: bool) -> str | None:
    from detectops.evaluate.mlflow_log import get_or_create_experiment

    if create:
        return get_or_create_experiment(client, experiment)
    exp = client.get_experiment_by_name(experiment)
    return exp.experiment_id if exp is not None and exp.lifecycle_stage != "deleted" else None


def find_logged(key: str, *, experiment: str = EXPERIMENT, tracking_uri: str) -> dict[str, Any] | None:
    """The XCom summary of the finished run with this key (from its ``summary.json``), or None."""
    from detectops.evaluate.mlflow_log import connect, find_finished_run

    client = connect(tracking_uri)
    experiment_id = _experiment_id(client, experiment, create=False)
    run_id = experiment_id and find_finished_run(client, experiment_id, KEY_TAG, key)
    if not run_id:
        return None
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="detectops-batch-") as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{ARTIFACT_DIR}/{FILES['summary']}",
                                                    dst_path=tmp, tracking_uri=tracking_uri)
        summary = json.loads(Path(local).read_text())
    return {**xcom_summary(summary), "key": key, "run_id": run_id, "experiment": experiment, "output_dir": None}


def log_scoring(summary: dict[str, Any], files: dict[str, Path], *, key: str, experiment: str = EXPERIMENT,
                tracking_uri: str, tags: dict[str, Any] | None = None) -> str:
    """Log one scored batch as an MLflow run (once per ``key``); return the run id."""
    from mlflow.entities import Metric, Param

    from detectops import settings
    from detectops.evaluate.mlflow_log import connect, find_finished_run, metric_key

    client = connect(tracking_uri)
    experiment_id = _experiment_id(client, experiment, create=True)
    existing = find_finished_run(client, experiment_id, KEY_TAG, key)
    if existing:
        return existing
    model, batch = summary["model"], summary["input"]
    params = {"model_name": model.get("registered_name") or model.get("name"),
              "model_version": model.get("registered_version") or model.get("version"),
              "model_sha256": model.get("sha256"), "model_source": model.get("source"),
              "input_location": batch.get("location"), "input_sha256": batch.get("sha256"),
              "min_score": summary["min_score"], "code_version": settings.code_version()}
    params = {k: str(v)[:6000] for k, v in params.items() if v is not None}
    metrics = {k: float(summary[k]) for k in ("images_total", "images_scored", "images_failed", "images_with_detections",
                                              "detections", "wall_s", "throughput_ips")}
    metrics.update({f"detections_class/{metric_key(k)}": float(v) for k, v in summary["detections_per_class"].items()})
    all_tags = {KEY_TAG: key, "detectops.kind": "batch_scoring", "model_name": params.get("model_name"),
                "model_version": params.get("model_version"), "input_sha256": batch.get("sha256"), **(tags or {})}
    name = f"score-{params.get('model_name', 'model')}-v{params.get('model_version', '?')}-{(batch.get('sha256') or '')[:8]}"
    run_id = client.create_run(experiment_id, run_name=name,
                               tags={k: str(v) for k, v in all_tags.items() if v is not None}).info.run_id
    try:
        ts = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()])
        for path in files.values():
            client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
