"""A tiny SavedModel that satisfies the detector contract, for tests.

It ignores the pixels and always returns the same detections, so a test knows exactly what
to expect. Writing one takes about a second (tf.Module + tf.function, no Keras model).

    path = make_tiny_detector(tmp_path / "tiny", boxes=[[0.1, 0.1, 0.5, 0.5]], classes=[1], scores=[0.9])
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_BOXES = ((0.1, 0.2, 0.5, 0.6), (0.3, 0.3, 0.9, 0.8))
DEFAULT_CLASSES = (1, 18)
DEFAULT_SCORES = (0.9, 0.6)
DEFAULT_LABEL_MAP = {1: "person", 18: "dog", 47: "cup"}


def make_tiny_detector(
    path: str | Path,
    *,
    boxes: Sequence[Sequence[float]] = DEFAULT_BOXES,
    classes: Sequence[int] = DEFAULT_CLASSES,
    scores: Sequence[float] = DEFAULT_SCORES,
    label_map: Mapping[int, str] | None = DEFAULT_LABEL_MAP,
) -> Path:
    """Write a contract-satisfying SavedModel with fixed detections to ``path``; return it.

    ``serving_default``: ``input_tensor`` uint8 [1, H, W, 3] (H, W dynamic) ->
    ``detection_boxes`` float32 [1, N, 4], ``detection_classes`` float32 [1, N],
    ``detection_scores`` float32 [1, N], ``num_detections`` float32 [1].
    ``label_map=None`` writes no ``assets/label_map.json``.
    """
    import numpy as np
    import tensorflow as tf

    path = Path(path)
    n = len(scores)
    if not (len(boxes) == len(classes) == n):
        raise ValueError("boxes, classes and scores must have the same length")
    boxes_np = np.asarray(boxes, dtype=np.float32).reshape(1, n, 4)
    classes_np = np.asarray(classes, dtype=np.float32).reshape(1, n)
    scores_np = np.asarray(scores, dtype=np.float32).reshape(1, n)

    class TinyDetector(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.boxes = tf.constant(boxes_np)
            self.classes = tf.constant(classes_np)
            self.scores = tf.constant(scores_np)

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
        def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
            # Touch the input so the graph really depends on it (and a wrong dtype fails).
            _ = tf.reduce_max(input_tensor)
            return {
                "detection_boxes": self.boxes,
                "detection_classes": self.classes,
                "detection_scores": self.scores,
                "num_detections": tf.constant([float(n)], tf.float32),
            }

    module = TinyDetector()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    if label_map is not None:
        assets = path / "assets"
        assets.mkdir(parents=True, exist_ok=True)
        (assets / "label_map.json").write_text(
            json.dumps({str(k): v for k, v in sorted(label_map.items())}, indent=1) + "\n"
        )
    return path
