"""Run a detector over a dataset's images: COCO results, per-image latency, throughput.

Images are decoded on a small prefetch thread while the model runs on the current one
(PIL's decoders and TensorFlow both release the GIL), so decoding hides behind inference
and evaluation throughput stays close to raw model throughput.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from detectops.errors import DataValidationError


class _Detections(Protocol):
    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


class _Predictor(Protocol):
    def predict(self, image: np.ndarray) -> _Detections: ...


@dataclass
class InferenceRun:
    """What one pass over the images produced.

    ``results``: COCO results (pixel ``[x, y, w, h]``); ``latencies_ms``: the model call alone,
    per image; ``wall_s``: the whole loop (decode + model + conversion), warm-up excluded.
    """

    results: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def num_images(self) -> int:
        return len(self.latencies_ms)


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to H x W x 3 uint8 RGB; a broken file raises ``DataValidationError``."""
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise DataValidationError(
            f"image file {path} is listed in the dataset's annotations.json but missing; "
            "restore it or remove its entry (then run `detectops validate` on the dataset)"
        )
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataValidationError(
            f"cannot decode image {path}: {exc}. Re-export it as JPEG/PNG or drop it from the "
            "dataset's annotations.json (and run `detectops validate` on the dataset)."
        ) from exc


def to_coco_results(image_id: int, detections: _Detections, width: int, height: int) -> list[dict[str, Any]]:
    """Normalised ``[ymin, xmin, ymax, xmax]`` detections -> COCO results in pixel ``[x, y, w, h]``."""
    boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4).clip(0.0, 1.0)
    x = boxes[:, 1] * width
    y = boxes[:, 0] * height
    w = (boxes[:, 3] - boxes[:, 1]) * width
    h = (boxes[:, 2] - boxes[:, 0]) * height
    return [
        {
            "image_id": int(image_id),
            "category_id": int(c),
            "bbox": [round(float(a), 2), round(float(b), 2), round(float(cw), 2), round(float(ch), 2)],
            "score": round(float(s), 5),
        }
        for a, b, cw, ch, c, s in zip(x, y, w, h, detections.classes, detections.scores)
    ]


def map_ordered(
    items: Iterable[Any], fn: Callable[[Any], Any], *, workers: int = 1, ahead: int = 2
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, fn(item))`` in the order of ``items``, computing ``fn`` on ``workers`` threads.

    At most ``workers + ahead`` calls are submitted before the consumer takes their results, so
    memory stays bounded however long ``items`` is. An exception in ``fn`` is re-raised here,
    in the consumer, for the item that caused it; calls not yet started are then cancelled.
    Closing the generator early cancels what has not started and waits for what has.
    """
    pending: deque[tuple[Any, Future[Any]]] = deque()
    limit = max(1, workers) + max(0, ahead)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="detectops-map") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= limit:
                    head, future = pending.popleft()
                    yield head, future.result()
            while pending:
                head, future = pending.popleft()
                yield head, future.result()
        finally:
            for _, future in pending:
                future.cancel()


def prefetch(items: Iterable[Any], load: Callable[[Any], Any], depth: int = 2) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, load(item))`` in order, loading up to ``depth`` items ahead on one thread.

    An exception in ``load`` is re-raised here, in the consumer, for the item that caused it.
    """
    return map_ordered(items, load, workers=1, ahead=depth)


def run_detector(
    detector: _Predictor,
    images: Sequence[tuple[int, str | Path]],
    *,
    warmup: bool = True,
    prefetch_depth: int = 2,
) -> InferenceRun:
    """Run ``detector.predict`` on every ``(image_id, path)``; time the model call per image.

    The first image is run once before timing starts (``warmup``), so one-off graph tracing
    and memory allocation do not show up as latency.
    """
    run = InferenceRun()
    if not images:
        return run
    if warmup:
        detector.predict(load_image(images[0][1]))
    clock = time.perf_counter
    start = clock()
    for (image_id, _path), image in prefetch(images, lambda it: load_image(it[1]), depth=prefetch_depth):
        t0 = clock()
        detections = detector.predict(image)
        run.latencies_ms.append((clock() - t0) * 1000.0)
        run.results.extend(to_coco_results(image_id, detections, width=image.shape[1], height=image.shape[0]))
    run.wall_s = clock() - start
    return run


def latency_summary(run: InferenceRun) -> dict[str, float]:
    """``p50_ms``, ``p95_ms``, ``mean_ms`` of the model call; ``throughput_ips`` end to end."""
    if not run.latencies_ms:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "mean_ms": 0.0, "throughput_ips": 0.0}
    lat = np.asarray(run.latencies_ms)
    return {
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p95_ms": round(float(np.percentile(lat, 95)), 3),
        "mean_ms": round(float(lat.mean()), 3),
        "throughput_ips": round(run.num_images / run.wall_s, 3) if run.wall_s > 0 else 0.0,
    }
