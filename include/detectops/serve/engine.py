"""The inference engine: worker threads own the model calls; requests queue for them.

Why a few workers and a queue
-----------------------------
TensorFlow already spreads one inference over every core (intra-op threads), but not all of
the time: between ops, and in the ops it does not split, cores sit idle. Two calls in flight
fill those gaps: on the project's 2-core machines CenterNet gives 1.1-1.35x the images per
second of one call at a time, and more calls add little (``scripts/benchmarks/bench_batch.py``
measures it; with ``bench_serve.py``'s 8 clients the service went from 0.60x to 0.97x of the
model's best rate). So the engine runs ``workers`` model calls at once (the service's default
is 2, ``DETECTOPS_INFERENCE_WORKERS``) and no more: request handlers (async, on the event loop)
decode their images in a thread pool and ``submit()`` them here; the workers drain the queue
and run the model back-to-back. Decoding the next image overlaps with the current inferences,
which is what keeps the service close to the model's own throughput under concurrent load. A
bounded queue gives back-pressure: when it is full the request gets 503 instead of waiting
for ever. A lone request is one call either way: its latency does not change.

Micro-batching (``max_batch_size``, ``max_wait_ms``)
----------------------------------------------------
The worker can collect up to ``max_batch_size`` queued images, waiting at most
``max_wait_ms`` after the first for more to arrive. If the detector declares
``batch_capable = True`` and has ``predict_batch(images)`` (a model whose signature really
runs batch > 1 in one call), a batch of same-sized images goes to the model in one call;
otherwise (the detector contract's input is ``[1, H, W, 3]``, and ``Detector.predict_batch``
loops) the batch is run image by image, each answered as soon as it is done, so batching
then only costs the wait.

On a CPU-only machine batching does not pay: measured on the project's 2-core machines
(docs ENVIRONMENT.md), CenterNet-MobileNetV3 gives 18 images/s at batch 1, 19 at batch 2,
16 at batch 4 and 13 at batch 8 — a single image already keeps both cores busy, so bigger
batches only add queueing delay (and ``max_wait_ms`` adds latency to every lone request).
The defaults are therefore ``max_batch_size=1``, ``max_wait_ms=0``; raise them on a GPU,
where a batch costs about as much as one image.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from detectops.serve.errors import RequestError

log = logging.getLogger(__name__)


class DetectionsLike(Protocol):
    boxes: np.ndarray  # [N, 4] normalised ymin, xmin, ymax, xmax
    classes: np.ndarray  # [N] int
    scores: np.ndarray  # [N] float


class DetectorLike(Protocol):
    """What the engine needs from ``detectops.models.Detector``."""

    label_map: dict[int, str]

    def predict(self, image: np.ndarray) -> DetectionsLike: ...


@dataclass(frozen=True)
class BatchStats:
    """Reported to the metrics hook after each batch the worker took from the queue."""

    batch_size: int  # images taken from the queue together
    call_seconds: tuple[float, ...]  # duration of each model call (one, or one per image)


class EngineBusy(RequestError):
    def __init__(self, capacity: int) -> None:
        super().__init__(503, "overloaded",
                         f"the server is busy ({capacity} images already queued for the model); retry shortly")


class EngineStopped(RequestError):
    def __init__(self) -> None:
        super().__init__(503, "not_ready", "the model is not loaded (yet); retry when /readyz answers 200")


_STOP = object()


class InferenceEngine:
    """Runs model calls on ``workers`` threads (at most that many at once), optionally micro-batching.

    ``submit(image)`` returns a ``concurrent.futures.Future`` of the detections
    (``asyncio.wrap_future`` it on the event loop). ``on_batch`` (e.g. Prometheus) is called
    on the worker thread after each model call. The detector must allow concurrent
    ``predict`` calls when ``workers`` > 1 (``Detector``'s SavedModel function does).
    """

    def __init__(
        self,
        detector: DetectorLike,
        *,
        max_batch_size: int = 1,
        max_wait_ms: float = 0.0,
        max_queue: int = 64,
        workers: int = 1,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.detector = detector
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.max_queue = max_queue
        self.workers = workers
        self._on_batch = on_batch
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._threads: list[threading.Thread] = []
        self._running = False
        self._batched = bool(getattr(detector, "batch_capable", False)) and callable(
            getattr(detector, "predict_batch", None))

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> InferenceEngine:
        if not self._threads:
            self._running = True
            self._threads = [threading.Thread(target=self._worker, name=f"detectops-inference-{i}", daemon=True)
                             for i in range(self.workers)]
            for thread in self._threads:
                thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued work, then stop the workers (one stop each, queued behind the work)."""
        if not self._threads:
            return
        self._running = False
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # -- requests ------------------------------------------------------------------------
    def submit(self, image: np.ndarray) -> Future:
        if not self._running:
            raise EngineStopped()
        fut: Future = Future()
        try:
            self._queue.put_nowait((image, fut))
        except queue.Full:
            raise EngineBusy(self.max_queue) from None
        return fut

    def predict(self, image: np.ndarray, timeout: float | None = None) -> DetectionsLike:
        """Blocking convenience (warm-up, scripts)."""
        return self.submit(image).result(timeout)

    def warm_up(self, size: tuple[int, int] = (320, 320)) -> float:
        """Run one inference through the queue (first calls trace/allocate); return its seconds."""
        t0 = time.perf_counter()
        self.predict(np.full((*size, 3), 114, dtype=np.uint8), timeout=300)
        return time.perf_counter() - t0

    # -- worker --------------------------------------------------------------------------
    def _collect(self, first: Any) -> list[Any]:
        items = [first]
        if self.max_batch_size == 1:
            return items
        deadline = time.perf_counter() + self.max_wait_s
        while len(items) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            if item is _STOP:
                break
        return items

    def _worker(self) -> None:
        while True:
            items = self._collect(self._queue.get())
            stops = sum(it is _STOP for it in items)
            work = [it for it in items if it is not _STOP and it[1].set_running_or_notify_cancel()]
            if work:
                self._run(work)
            if stops:
                # Answer anything still queued, so no caller waits for ever; every other worker
                # needs its own stop, so the ones taken here beyond this worker's go back.
                while True:
                    try:
                        it = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if it is _STOP:
                        stops += 1
                    elif it[1].set_running_or_notify_cancel():
                        it[1].set_exception(EngineStopped())
                for _ in range(stops - 1):
                    self._queue.put(_STOP)
                return

    def _run(self, work: Sequence[tuple[np.ndarray, Future]]) -> None:
        calls: list[float] = []
        if self._batched and len(work) > 1 and len({im.shape for im, _ in work}) == 1:
            t0 = time.perf_counter()
            try:
                results = self.detector.predict_batch([im for im, _ in work])  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - handed to every caller
                log.exception("batched inference failed")
                for _, fut in work:
                    fut.set_exception(exc)
                return
            calls.append(time.perf_counter() - t0)
            for (_, fut), res in zip(work, results, strict=True):
                fut.set_result(res)
        else:
            for im, fut in work:
                t0 = time.perf_counter()
                try:
                    res = self.detector.predict(im)
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    log.exception("inference failed")
                    fut.set_exception(exc)
                    continue
                calls.append(time.perf_counter() - t0)
                fut.set_result(res)  # answered now, not after the rest of the batch
        self._report(BatchStats(len(work), tuple(calls)))

    def _report(self, stats: BatchStats) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(stats)
            except Exception:  # noqa: BLE001 - metrics must never break inference
                log.exception("on_batch hook failed")
