"""Value skew of a new batch against the current dataset version, as TFDV measures it.

Each feature gets one distance in [0, 1] and a threshold:

- **categorical** features (the class mix of the boxes): the L-infinity distance, the largest
  difference between the two relative frequencies of any one value;
- **numeric** features (image brightness, image width and height, relative box size): the
  Jensen-Shannon *distance* (square root of the divergence, base 2) between the two
  histograms over shared bins.

    report = compute_skew(current_version_dir, batch_dir)
    report.to_markdown()            # for the task log and MLflow
    report.exceeded                 # names of features above their threshold
    report.raise_if_exceeded()      # stops the run only then

Only statistics are computed here (image headers from the JSON, one small grey-scale decode
per image for brightness); NumPy, SciPy and PIL load inside the functions.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from detectops.data.coco import CocoDataset
from detectops.errors import DataValidationError

CATEGORICAL = "categorical"
NUMERIC = "numeric"
#: Feature -> kind. Brightness is the mean grey level (0-255) of an image; box size is
#: sqrt(box area / image area), so 0.1 is a box a tenth of the image's side.
FEATURES: dict[str, str] = {
    "class_mix": CATEGORICAL,
    "brightness": NUMERIC,
    "image_width": NUMERIC,
    "image_height": NUMERIC,
    "box_relative_size": NUMERIC,
}
#: Defaults chosen so that two samples of one synthetic distribution (tens of images) stay
#: well below and a visible shift (half the brightness, half the object size) is well above.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "class_mix": 0.25,
    "brightness": 0.5,
    "image_width": 0.5,
    "image_height": 0.5,
    "box_relative_size": 0.5,
}
#: Histogram range of the bounded numeric features; the others span both samples.
_FIXED_RANGES: dict[str, tuple[float, float]] = {"brightness": (0.0, 256.0), "box_relative_size": (0.0, 1.0)}
DEFAULT_BINS = 10
#: Images decoded for brightness at most (an even, deterministic sample of a large version).
MAX_BRIGHTNESS_IMAGES = 2000


class SkewExceeded(DataValidationError):
    """A batch's values differ from the current dataset version by more than a threshold."""


# ----------------------------------------------------------------------------- distances
def linf_distance(p_counts: Mapping[Any, float], q_counts: Mapping[Any, float]) -> float:
    """L-infinity distance of two categorical distributions given as counts (or weights)."""
    p_total, q_total = float(sum(p_counts.values())), float(sum(q_counts.values()))
    if p_total <= 0 or q_total <= 0:
        return 0.0 if p_total == q_total else 1.0
    keys = set(p_counts) | set(q_counts)
    return max(abs(p_counts.get(k, 0) / p_total - q_counts.get(k, 0) / q_total) for k in keys)


def js_distance(p_hist: Sequence[float], q_hist: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2, so in [0, 1]) of two histograms over the same bins."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon

    p, q = np.asarray(p_hist, dtype=np.float64), np.asarray(q_hist, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0 if p.sum() == q.sum() else 1.0
    d = float(jensenshannon(p, q, base=2))  # normalises both to probabilities
    return 0.0 if math.isnan(d) else min(max(d, 0.0), 1.0)


def shared_histograms(a: Sequence[float], b: Sequence[float], bins: int = DEFAULT_BINS,
                      value_range: tuple[float, float] | None = None) -> tuple[list[int], list[int], list[float]]:
    """Counts of ``a`` and ``b`` over the same ``bins`` equal-width bins, and the bin edges.

    Without ``value_range`` the bins span both samples; when every value is the same there is
    one bin.
    """
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if value_range is None:
        both = np.concatenate([a, b])
        lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
        if hi <= lo:
            return [int(a.size)], [int(b.size)], [lo, lo]
        value_range = (lo, hi)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    ha, _ = np.histogram(np.clip(a, *value_range), bins=edges)
    hb, _ = np.histogram(np.clip(b, *value_range), bins=edges)
    return ha.astype(int).tolist(), hb.astype(int).tolist(), edges.tolist()


# ----------------------------------------------------------------------------- statistics
@dataclass
class FeatureSamples:
    """The raw values of every feature of one dataset (or of the union of a version's splits)."""

    class_counts: Counter = field(default_factory=Counter)
    numeric: dict[str, list[float]] = field(default_factory=lambda: {f: [] for f, k in FEATURES.items()
                                                                      if k == NUMERIC})
    num_images: int = 0


def _dataset_dirs(path: Path) -> list[Path]:
    """A COCO dataset directory, or the split directories of a dataset version."""
    from detectops.data.versioning import MANIFEST_FILE, SPLITS

    if (path / MANIFEST_FILE).is_file():
        return [path / s for s in SPLITS]
    return [path]


def image_brightness(path: str | os.PathLike[str]) -> float:
    """Mean grey level (0-255) of an image, from a small decode (JPEG draft mode: fast)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L", (64, 64))  # JPEG decodes at 1/2..1/8 scale; other formats ignore it
        small = im.convert("L")
        small.thumbnail((64, 64))
        return float(np.asarray(small, dtype=np.float32).mean())


def collect_samples(path: str | os.PathLike[str], max_brightness_images: int = MAX_BRIGHTNESS_IMAGES) -> FeatureSamples:
    """Feature values of a COCO dataset directory or a dataset version (all its splits)."""
    out = FeatureSamples()
    datasets = [CocoDataset.load(d) for d in _dataset_dirs(Path(path))]
    all_images = [(ds, im) for ds in datasets for im in ds.images]
    out.num_images = len(all_images)
    step = max(1, math.ceil(len(all_images) / max_brightness_images))
    for i, (ds, im) in enumerate(all_images):
        out.numeric["image_width"].append(float(im["width"]))
        out.numeric["image_height"].append(float(im["height"]))
        if i % step == 0:
            out.numeric["brightness"].append(image_brightness(ds.image_path(im)))
    for ds in datasets:
        sizes = {int(im["id"]): (float(im["width"]), float(im["height"])) for im in ds.images}
        for a in ds.annotations:
            out.class_counts[int(a["category_id"])] += 1
            w_img, h_img = sizes.get(int(a["image_id"]), (0.0, 0.0))
            _, _, w, h = (float(v) for v in a["bbox"])
            if w_img > 0 and h_img > 0:
                out.numeric["box_relative_size"].append(math.sqrt(max(w * h, 0.0) / (w_img * h_img)))
    return out


# ----------------------------------------------------------------------------- report
@dataclass
class SkewReport:
    """Per feature: ``{kind, distance, threshold, exceeded, ...details}``; ``max_distance`` over all."""

    features: dict[str, dict[str, Any]]
    max_distance: float
    reference: str = ""
    batch: str = ""

    @property
    def exceeded(self) -> list[str]:
        return [name for name, f in self.features.items() if f["exceeded"]]

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "max_distance": self.max_distance, "exceeded": self.exceeded,
                "reference": self.reference, "batch": self.batch}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SkewReport":
        return cls(features=dict(d["features"]), max_distance=float(d["max_distance"]),
                   reference=str(d.get("reference", "")), batch=str(d.get("batch", "")))

    def metrics(self, prefix: str = "skew.") -> dict[str, float]:
        """``{"skew.<feature>": distance}`` for ``mlflow.log_metrics``."""
        return {f"{prefix}{name}": float(f["distance"]) for name, f in self.features.items()}

    def to_markdown(self) -> str:
        lines = [f"Value skew of batch `{self.batch}` against `{self.reference}`:", "",
                 "| feature | kind | distance | threshold | reference | batch | |",
                 "|---|---|---:|---:|---|---|---|"]
        for name, f in self.features.items():
            measure = "L∞" if f["kind"] == CATEGORICAL else "JS"
            flag = "**exceeded**" if f["exceeded"] else "ok"
            lines.append(f"| {name} | {f['kind']} ({measure}) | {f['distance']:.3f} | {f['threshold']:.3f} | "
                         f"{f.get('reference_summary', '')} | {f.get('batch_summary', '')} | {flag} |")
        verdict = (f"Exceeded: {', '.join(self.exceeded)}." if self.exceeded
                   else "No feature exceeds its threshold.")
        return "\n".join(lines + ["", f"Largest distance {self.max_distance:.3f}. {verdict}"])

    def raise_if_exceeded(self) -> None:
        """Raise :class:`SkewExceeded` naming each feature above its threshold (and the numbers)."""
        if self.exceeded:
            raise SkewExceeded(
                self.to_markdown() + "\nThe batch differs from the current data more than the thresholds "
                "allow. Check that it is the data you meant to land; if the shift is real, raise the "
                "thresholds for this run (Params) and trigger it again.")


def _summary(values: Sequence[float]) -> str:
    if not values:
        return "no values"
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    return f"mean {v.mean():.3g}, n={v.size}"


def _class_summary(counts: Counter) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(f"{k}: {counts[k] / total:.2f}" for k in sorted(counts))


def compare_samples(reference: FeatureSamples, batch: FeatureSamples, *,
                    thresholds: Mapping[str, float] | None = None, bins: int = DEFAULT_BINS) -> SkewReport:
    """Distances between two sets of feature values (see :func:`compute_skew`)."""
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    unknown = set(limits) - set(FEATURES)
    if unknown:
        raise DataValidationError(f"Unknown skew feature(s) {sorted(unknown)} in the thresholds; "
                                  f"choose from {list(FEATURES)}.")
    features: dict[str, dict[str, Any]] = {}
    for name, kind in FEATURES.items():
        if kind == CATEGORICAL:
            distance = linf_distance(reference.class_counts, batch.class_counts)
            details = {"reference_summary": _class_summary(reference.class_counts),
                       "batch_summary": _class_summary(batch.class_counts)}
        else:
            ref_v, new_v = reference.numeric[name], batch.numeric[name]
            h_ref, h_new, edges = shared_histograms(ref_v, new_v, bins, _FIXED_RANGES.get(name))
            distance = js_distance(h_ref, h_new)
            details = {"reference_summary": _summary(ref_v), "batch_summary": _summary(new_v),
                       "bin_edges": [round(e, 4) for e in edges], "reference_histogram": h_ref,
                       "batch_histogram": h_new}
        threshold = float(limits[name])
        features[name] = {"kind": kind, "distance": round(float(distance), 6), "threshold": threshold,
                          "exceeded": bool(distance > threshold), **details}
    return SkewReport(features=features, max_distance=max(f["distance"] for f in features.values()))


def compute_skew(reference_dataset_dir: str | os.PathLike[str], batch_dir: str | os.PathLike[str], *,
                 thresholds: Mapping[str, float] | None = None, bins: int = DEFAULT_BINS) -> SkewReport:
    """Skew of ``batch_dir`` (a COCO dataset) against ``reference_dataset_dir`` (a COCO dataset
    or a dataset version: all its splits). ``thresholds`` override :data:`DEFAULT_THRESHOLDS`."""
    report = compare_samples(collect_samples(reference_dataset_dir), collect_samples(batch_dir),
                             thresholds=thresholds, bins=bins)
    report.reference, report.batch = str(reference_dataset_dir), str(batch_dir)
    return report


__all__ = ["FEATURES", "DEFAULT_THRESHOLDS", "SkewExceeded", "SkewReport", "FeatureSamples", "linf_distance",
           "js_distance", "shared_histograms", "collect_samples", "compare_samples", "compute_skew",
           "image_brightness"]
