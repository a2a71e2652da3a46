"""Score a batch of images with a detector the way the serving app answers requests.

Per file: ``decode_image`` with the service's limits and the model's input size (the same call
``/detect`` and ``:predict`` make), ``Detector.predict`` on the decoded pixels (what the
service's inference engine runs), then the service's own answer builders: the ``:predict``
prediction (``detection_boxes`` ...) and the ``/detect`` rows above ``min_score``.

Files are read and decoded on a thread of their own, and ``workers`` model calls (two by
default) run on the decoded images, the results taken in file order: the same shape as the
service (a decoding pool, two inference workers). Two model calls in flight keep both cores
busy between TensorFlow's ops (one call alone leaves them idle part of the time: two give
1.1-1.35x its throughput here); PIL and TensorFlow release the GIL. The answers do not
depend on it: a concurrent call gives the same bits as a lone one.

A file that does not decode (not an image, truncated, too large) becomes an ``ImageFailure``
with the service's error code and message; the rest is scored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Model calls in flight (see the module's docstring). Measured on 2 cores: batch scoring at
#: 1.19x its throughput with one; three did not do better.
DEFAULT_WORKERS = 2
#: Files decoded ahead of the model, and files submitted ahead of the consumer.
PIPELINE_DEPTH = 8
#: Images kept (as thumbnails) for the contact sheet.
CONTACT_SHEET_IMAGES = 12
THUMBNAIL = 360
#: Bins of the score histogram (every detection the model returned).
HISTOGRAM_EDGES = tuple(round(x, 1) for x in np.linspace(0.0, 1.0, 11))


@dataclass(frozen=True)
class ImageFailure:
    """A file that could not be scored: the service's error ``code`` and a message saying why."""

    image_id: int
    file_name: str
    code: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScoredImage:
    """One scored image: the ``:predict`` prediction (raw contract outputs) and the ``/detect`` rows."""

    image_id: int
    file_name: str
    width: int
    height: int
    format: str
    prediction: dict[str, Any]
    detections: list[dict[str, Any]]
    coco: list[dict[str, Any]]  # COCO results (pixel [x, y, w, h] of the file's own size), every detection

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "coco"}


@dataclass
class BatchScore:
    """What one pass over a batch produced (see ``score_images``): aggregates, not every answer.

    The per-image answers go to the ``sink`` as they are made, so a batch of any size is scored
    in bounded memory; ``images`` keeps each scored image's COCO record (id, file name, size).
    """

    min_score: float
    label_map: dict[int, str]
    images: list[dict[str, Any]] = field(default_factory=list)
    failures: list[ImageFailure] = field(default_factory=list)
    per_class: Counter = field(default_factory=Counter)  # /detect rows (score >= min_score) by label
    with_detections: int = 0
    score_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(HISTOGRAM_EDGES) - 1, np.int64))
    samples: list[tuple[np.ndarray, list[dict[str, Any]]]] = field(default_factory=list)  # thumbnails + COCO boxes
    wall_s: float = 0.0
    model_s: float = 0.0  # the model calls' time, summed over the workers

    @property
    def num_files(self) -> int:
        return len(self.images) + len(self.failures)

    def add(self, im: ScoredImage) -> None:
        self.images.append({"id": im.image_id, "file_name": im.file_name, "width": im.width, "height": im.height})
        self.per_class.update(row["label"] for row in im.detections)
        self.with_detections += bool(im.detections)
        scores = np.asarray(im.prediction["detection_scores"], dtype=float)
        self.score_counts += np.histogram(scores, bins=np.asarray(HISTOGRAM_EDGES))[0]


def _thumbnail(pixels: np.ndarray) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(pixels)
    im.thumbnail((THUMBNAIL, THUMBNAIL))
    return np.asarray(im)


def _sample_ids(files: Sequence[tuple[int, str, Path]], count: int) -> set[int]:
    """Ids of ``count`` files spread evenly over the batch (deterministic)."""
    if not files:
        return set()
    picks = np.linspace(0, len(files) - 1, num=min(count, len(files))).round().astype(int)
    return {int(files[i][0]) for i in picks}


def score_images(
    detector: Any,
    files: Sequence[tuple[int, str, Path]],
    settings: Any,
    *,
    min_score: float | None = None,
    workers: int = DEFAULT_WORKERS,
    samples: int = CONTACT_SHEET_IMAGES,
    sink: Callable[[ScoredImage], None] | None = None,
) -> BatchScore:
    """Score ``files`` (``(image id, file name, path)``) with ``detector`` under the service's ``settings``.

    Each ``ScoredImage`` (the ``:predict`` and ``/detect`` answers, COCO results) is handed to
    ``sink`` as soon as it is made (e.g. ``report.OutputWriter.add``, or ``list.append``).
    ``settings``: a ``detectops.serve.ServeSettings`` (image limits, default ``min_score``).
    ``detector``: a ``detectops.models.Detector`` (or anything with ``predict``, ``label_map``
    and ``input_size``), called from ``workers`` threads at once.
    """
    from detectops.evaluate.runner import map_ordered, prefetch, to_coco_results
    from detectops.serve.errors import RequestError
    from detectops.serve.imageio import decode_image
    from detectops.serve.processing import labelled_detections as detect_rows
    from detectops.serve.processing import raw_prediction as predict_output

    min_score = float(settings.min_score if min_score is None else min_score)
    label_map = {int(k): str(v) for k, v in (getattr(detector, "label_map", None) or {}).items()}
    target_size = getattr(detector, "input_size", None)
    keep = _sample_ids(files, samples)
    out = BatchScore(min_score=min_score, label_map=label_map)
    clock = time.perf_counter

    def load(item: tuple[int, str, Path]) -> Any:
        """Read and decode one file (on the decoding thread): the image, or why it cannot be scored."""
        image_id, name, path = int(item[0]), item[1], Path(item[2])
        try:
            data = path.read_bytes()
        except OSError as exc:
            return ImageFailure(image_id, name, "unreadable_file", f"the file could not be read ({exc})")
        try:
            return decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                                target_size=target_size)
        except RequestError as exc:
            return ImageFailure(image_id, name, exc.code, exc.message)

    def score(loaded: tuple[tuple[int, str, Path], Any]) -> tuple[ImageFailure | ScoredImage, Any, Any, float]:
        """The model and the answers for one decoded file (on a worker): ``(answer, image, detections, seconds)``."""
        (image_id, name, _path), img = loaded
        if isinstance(img, ImageFailure):
            return img, None, None, 0.0
        t0 = clock()
        d = detector.predict(img.pixels)
        model_s = clock() - t0
        scored = ScoredImage(
            image_id=int(image_id), file_name=name, width=img.width, height=img.height, format=img.format,
            prediction=predict_output(d), detections=detect_rows(d, img, min_score, label_map),
            coco=to_coco_results(image_id, d, width=img.width, height=img.height))
        return scored, img, d, model_s

    started = clock()
    # Like the service: files are decoded on their own thread while ``workers`` model calls run,
    # a few files ahead so that one slow file does not leave a worker idle.
    with closing(prefetch(files, load, depth=PIPELINE_DEPTH)) as decoded:  # its thread stops with the loop
        for _loaded, (answer, img, d, model_s) in map_ordered(decoded, score, workers=workers,
                                                               ahead=PIPELINE_DEPTH):
            if isinstance(answer, ImageFailure):
                log.warning("%s: %s (%s)", answer.file_name, answer.reason, answer.code)
                out.failures.append(answer)
                continue
            out.model_s += model_s
            out.add(answer)
            if sink is not None:
                sink(answer)
            if answer.image_id in keep:
                thumb = _thumbnail(img.pixels)
                out.samples.append((thumb, to_coco_results(answer.image_id, d, width=thumb.shape[1],
                                                           height=thumb.shape[0])))
    out.wall_s = clock() - started
    return out


# --------------------------------------------------------------------------- the whole job
def run_key(model: dict[str, Any], input_sha256: str, min_score: float) -> str:
    """The idempotency key of one scoring: the model version (and its content), the input's content, the threshold."""
    source = {"model_name": model.get("registered_name"), "model_version": model.get("registered_version"),
              "model_sha256": model.get("sha256"), "input_sha256": input_sha256, "min_score": round(float(min_score), 6)}
    return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:32]


def _model_info(model: str, *, tracking_uri: str | None, name: str | None, version: str | None) -> dict[str, Any]:
    from detectops.models import fetch_model

    ref = fetch_model(str(model), tracking_uri=tracking_uri).to_dict()
    registry = str(model).startswith("models:/")  # fetch_model resolved the registered name and version
    ref["registered_name"] = name or (ref["name"] if registry else None)
    version = version if version is not None else (ref["version"] if registry else None)
    ref["registered_version"] = str(version) if version is not None else None
    return ref


def predict_batch(
    input_location: str | Path,
    model: str | Path,
    *,
    tracking_uri: str | None = None,
    output_dir: str | Path | None = None,
    min_score: float | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    experiment: str | None = None,
    settings: Any = None,
    tags: dict[str, Any] | None = None,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, Any]:
    """Score every image of ``input_location`` with ``model``; write the outputs; log them to MLflow.

    ``input_location``: a directory, or a ``runs:/<id>/batch`` URI of the data store.
    ``model``: anything ``detectops.models.fetch_model`` takes (a SavedModel directory, ``models:/...``).
    ``model_name`` / ``model_version``: the registered version it is (tags, and part of the run key).
    ``tracking_uri``: log to MLflow (experiment ``detectops-batch-inference``); with an existing
    finished run of the same key nothing is scored again and that run is returned (``reused``).
    Without it, only the files in ``output_dir`` are written.
    ``workers``: files scored at once (``score_images``); the answers are the same for any value.

    Returns a small, JSON-able summary (what the DAG's XCom carries): the run, counts, failures.
    """
    from detectops import settings as paths
    from detectops.batch import inputs, report
    from detectops.serve.config import ServeSettings

    serve = settings or ServeSettings.from_env()
    threshold = float(serve.min_score if min_score is None else min_score)
    batch = inputs.resolve(input_location, tracking_uri=tracking_uri)
    info = _model_info(model, tracking_uri=tracking_uri, name=model_name, version=model_version)
    key = run_key(info, batch.sha256, threshold)
    experiment = experiment or report.EXPERIMENT
    if tracking_uri:
        existing = report.find_logged(key, experiment=experiment, tracking_uri=tracking_uri)
        if existing is not None:
            log.info("this batch was scored with this model before: MLflow run %s", existing["run_id"])
            return {**existing, "reused": True}

    from detectops.models import Detector

    detector = Detector.load(info["path"])
    detector.predict(np.zeros((32, 32, 3), np.uint8))  # warm-up: tracing is not part of the batch
    out = Path(output_dir) if output_dir else paths.work_dir() / "batch-scoring" / key
    with report.OutputWriter(out) as writer:
        scored = score_images(detector, batch.files, serve, min_score=threshold, workers=workers, sink=writer.add)
        summary = report.summary_of(scored, model=info, batch=batch.to_dict())
        files = writer.finish(scored, summary)
    result = {**report.xcom_summary(summary), "key": key, "output_dir": str(out), "run_id": None, "reused": False}
    if tracking_uri:
        result["run_id"] = report.log_scoring(summary, files, key=key, experiment=experiment,
                                              tracking_uri=tracking_uri, tags=tags)
        result["experiment"] = experiment
    return result
