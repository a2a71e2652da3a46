"""``Detector``: the only code that calls a detector SavedModel.

Evaluation, serving and the smoke tests all go through ``Detector.predict`` so that they
agree on pre-processing (none beyond uint8 RGB) and on the meaning of the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detectops.models.contract import INPUT, SIGNATURE, SignatureSpec, verify_contract
from detectops.models.labels import read_label_map


@dataclass
class Detections:
    """Detections of one image, best first.

    ``boxes`` float32 [N, 4] normalised ``[ymin, xmin, ymax, xmax]``; ``classes`` int64 [N]
    (label-map ids); ``scores`` float32 [N].
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def above(self, min_score: float) -> Detections:
        keep = self.scores >= min_score
        return Detections(self.boxes[keep], self.classes[keep], self.scores[keep])

    def to_dicts(self, label_map: dict[int, str] | None = None) -> list[dict[str, Any]]:
        """JSON-friendly rows: ``{"box": [ymin, xmin, ymax, xmax], "class_id", "label", "score"}``."""
        label_map = label_map or {}
        return [
            {
                "box": [round(float(v), 5) for v in box],
                "class_id": int(c),
                "label": label_map.get(int(c), str(int(c))),
                "score": round(float(s), 5),
            }
            for box, c, s in zip(self.boxes, self.classes, self.scores)
        ]


def as_rgb_uint8(image: Any) -> np.ndarray:
    """An H x W x 3 uint8 array from ``image`` (grayscale H x W and RGBA are converted)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 image (0-255), got dtype {array.dtype}; "
            "convert with skimage.util.img_as_ubyte or np.asarray(PIL.Image.open(f).convert('RGB'))"
        )
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    elif array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"empty image, shape {array.shape}")
    return np.ascontiguousarray(array)


class Detector:
    """A loaded detector SavedModel.

    >>> det = Detector.load("path/to/saved_model")
    >>> det.predict(image).above(0.5).to_dicts(det.label_map)
    """

    def __init__(self, path: Path, fn: Any, spec: SignatureSpec, label_map: dict[int, str], keepalive: Any):
        self.path = path
        self._fn = fn
        self._keepalive = keepalive  # the loaded object owns the variables the signature uses
        self.spec = spec
        self.label_map = label_map

    @classmethod
    def load(cls, path: str | Path) -> Detector:
        """Verify the contract, load ``serving_default`` and the label map."""
        import tensorflow as tf

        path = Path(path)
        spec = verify_contract(path)
        loaded = tf.saved_model.load(str(path))
        return cls(path, loaded.signatures[SIGNATURE], spec, read_label_map(path), loaded)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(height, width)`` if the model only accepts that size (else any size works)."""
        return self.spec.input_size

    def predict(self, image: Any) -> Detections:
        """Detect objects in one H x W x 3 uint8 RGB image."""
        import tensorflow as tf

        array = as_rgb_uint8(image)
        if self.input_size is not None and array.shape[:2] != self.input_size:
            array = tf.image.resize(array, self.input_size).numpy().round().clip(0, 255).astype(np.uint8)
        out = self._fn(**{INPUT: tf.constant(array[np.newaxis])})
        n = int(out["num_detections"].numpy().reshape(-1)[0])
        return Detections(
            boxes=out["detection_boxes"].numpy()[0, :n].astype(np.float32).reshape(n, 4),
            classes=out["detection_classes"].numpy()[0, :n].round().astype(np.int64),
            scores=out["detection_scores"].numpy()[0, :n].astype(np.float32),
        )

    def predict_batch(self, images: list[Any]) -> list[Detections]:
        """One ``Detections`` per image. The contract's batch size is 1, so this loops."""
        return [self.predict(image) for image in images]

    def __repr__(self) -> str:
        return f"Detector({str(self.path)!r}, classes={len(self.label_map)})"
