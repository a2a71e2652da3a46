"""Prediction log: one JSON line per image served, for monitoring and drift detection.

Serving must never wait for the log, so ``PredictionLog.write()`` only puts the record on
a bounded in-memory queue; a daemon thread serialises and writes the lines in batches and
flushes after each batch. If the sink cannot keep up and the queue fills, records are
dropped and counted (``detectops_prediction_log_dropped_total``) rather than slowing requests.

Sink (``DETECTOPS_PREDICTION_LOG``): ``""`` or ``"off"`` disables it, ``"stdout"`` or ``"-"``
writes to standard output (what Kubernetes log collectors read), anything else is a file
path, appended to (its directory is created).

A line looks like (the features are ``detectops.monitoring.features``; ``scores``, ``classes`` and
``box_sizes`` list the detections at or above ``min_score``)::

    {"time": "2026-11-22T19:40:01.123456+00:00", "request_id": "5f0c...", "endpoint": "/detect",
     "model_name": "detector", "model_version": "1", "instance": 0, "format": "JPEG",
     "width": 640.0, "height": 480.0, "aspect_ratio": 1.3333, "brightness_mean": 118.4,
     "brightness_std": 52.1, "contrast": 190.2, "saturation": 0.31, "sharpness": 412.7,
     "min_score": 0.3, "num_detections": 2, "mean_score": 0.69, "mean_box_size": 0.21,
     "classes": [1, 47], "scores": [0.91, 0.47], "box_sizes": [0.33, 0.09], "latency_ms": 61.2}
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_STOP = object()


class PredictionLog:
    """Asynchronous JSON-lines writer. ``write(record)`` never blocks."""

    def __init__(self, sink: str | Path | None, *, max_queue: int = 10_000,
                 on_drop: Callable[[], None] | None = None, stream: IO[str] | None = None) -> None:
        """``stream``: write to this open text stream instead of opening ``sink``."""
        text = str(sink).strip() if sink is not None else ""
        self.enabled = stream is not None or text.lower() not in ("", "off", "none")
        self._given_stream = stream
        self.sink = text
        self._on_drop = on_drop
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._stream: IO[str] | None = None
        self._owns_stream = False

    def start(self) -> PredictionLog:
        if not self.enabled or self._thread is not None:
            return self
        if self._given_stream is not None:
            self._stream = self._given_stream
        elif self.sink in ("stdout", "-"):
            self._stream = sys.stdout
        else:
            path = Path(self.sink)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = path.open("a", encoding="utf-8")  # append: restarts never lose history
            self._owns_stream = True
        self._thread = threading.Thread(target=self._worker, name="detectops-predlog", daemon=True)
        self._thread.start()
        return self

    def write(self, record: dict[str, Any]) -> bool:
        """Queue one record; ``False`` if it was dropped (log disabled or queue full)."""
        if not self.enabled or self._thread is None:
            return False
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            if self._on_drop is not None:
                self._on_drop()
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None
        if self._owns_stream and self._stream is not None:
            self._stream.close()
        self._stream = None

    def _worker(self) -> None:
        assert self._stream is not None
        while True:
            batch = [self._queue.get()]
            while len(batch) < 512:  # drain what is there: one write + flush per burst
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(r is _STOP for r in batch)
            lines = [json.dumps(r, separators=(",", ":"), default=str) for r in batch if r is not _STOP]
            if lines:
                try:
                    self._stream.write("\n".join(lines) + "\n")
                    self._stream.flush()
                except (OSError, ValueError):
                    log.exception("prediction log: could not write %d records to %s", len(lines), self.sink)
            if stop:
                return
