"""The features that describe one prediction: what the image looked like and what the model said.

The same functions run in three places, so a drift verdict compares like with like:
- the serving app, once per image, into the prediction log (``serve.processing``);
- registration, over the training and evaluation data, into a model version's reference
  (``monitoring.reference``);
- tests and benchmarks.

Image features are computed on a thumbnail of at most ``THUMBNAIL`` pixels on its long side,
taken by striding (no resampling): a few hundred microseconds even for a 12-megapixel photo,
which keeps the serving cost far below the model's (``bench_serve.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

THUMBNAIL = 128
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601

#: Numeric features of the input image, one value per image.
IMAGE_FEATURES = ("width", "height", "aspect_ratio", "brightness_mean", "brightness_std", "contrast",
                  "saturation", "sharpness")
#: Features of the model's output, one value per image (``classes``/``scores``/``box_sizes`` are lists).
OUTPUT_FEATURES = ("num_detections", "mean_score", "mean_box_size")
#: Per-detection features (one value per detection, not per image).
DETECTION_FEATURES = ("classes", "scores", "box_sizes")


def thumbnail(pixels: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """A strided view of ``pixels`` [H,W,3] whose long side is at most about ``size``."""
    step = max(1, -(-max(pixels.shape[:2]) // size))
    return pixels[::step, ::step]


def image_features(pixels: np.ndarray, width: int | None = None, height: int | None = None) -> dict[str, float]:
    """Features of one RGB uint8 image [H,W,3].

    ``width``/``height``: the uploaded image's size when ``pixels`` was decoded at reduced
    scale (they default to the array's). Brightness is luma in 0..255; ``contrast`` is the
    spread of the middle 96 % of luma (p98 - p2 in whole grey levels), robust to a few specular pixels;
    ``saturation`` the mean HSV saturation (0..1); ``sharpness`` the variance of the
    4-neighbour Laplacian of luma (a blur measure: small when blurred).
    """
    h = int(height if height is not None else pixels.shape[0])
    w = int(width if width is not None else pixels.shape[1])
    thumb = thumbnail(pixels).astype(np.float32)
    luma = thumb @ _LUMA
    # Percentiles from a 256-bin histogram: exact to one grey level and ~20x cheaper than a sort.
    cdf = np.cumsum(np.bincount(np.clip(luma, 0, 255).astype(np.uint8).ravel(), minlength=256)) / luma.size
    p2, p98 = float(np.searchsorted(cdf, 0.02)), float(np.searchsorted(cdf, 0.98))
    r, g, b = thumb[..., 0], thumb[..., 1], thumb[..., 2]
    hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)  # max(axis=2) is 20x slower
    saturation = (hi - lo) / np.maximum(hi, 1.0)
    if min(luma.shape) >= 3:
        lap = (luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * luma[1:-1, 1:-1])
        sharpness = float(lap.var())
    else:
        sharpness = 0.0
    return {
        "width": float(w),
        "height": float(h),
        "aspect_ratio": round(w / h, 4) if h else 0.0,
        "brightness_mean": round(float(luma.mean()), 3),
        "brightness_std": round(float(luma.std()), 3),
        "contrast": round(float(p98 - p2), 3),
        "saturation": round(float(saturation.mean()), 4),
        "sharpness": round(sharpness, 2),
    }


def box_sizes(boxes_normalized: np.ndarray) -> list[float]:
    """Relative box sizes: ``sqrt(box area / image area)`` of boxes ``[ymin, xmin, ymax, xmax]`` in 0..1.

    The square root makes the size linear in the object's extent (0.1 = a tenth of the image).
    """
    b = np.asarray(boxes_normalized, np.float32).reshape(-1, 4)
    area = np.clip(b[:, 2] - b[:, 0], 0, 1) * np.clip(b[:, 3] - b[:, 1], 0, 1)
    return [round(float(s), 4) for s in np.sqrt(area)]


def output_features(scores: Sequence[float], classes: Sequence[int], sizes: Sequence[float]) -> dict[str, Any]:
    """Features of one image's detections (those at or above the service's ``min_score``)."""
    n = len(scores)
    return {
        "num_detections": n,
        "mean_score": round(float(np.mean(scores)), 4) if n else None,
        "mean_box_size": round(float(np.mean(sizes)), 4) if n else None,
        "classes": [int(c) for c in classes],
        "scores": [round(float(s), 4) for s in scores],
        "box_sizes": [round(float(s), 4) for s in sizes],
    }
