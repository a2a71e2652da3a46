"""Drift: live prediction records against a model version's reference, feature by feature, with Evidently.

Three tables are compared, because the features live at three grains:
- ``images``: one row per image, the input features (``features.IMAGE_FEATURES``); the reference
  is every image the version was trained and evaluated on;
- ``outputs``: one row per image, the model's output summary (detections, mean score, mean
  box size); the reference is the version's own detections on its evaluation split;
- ``detections``: one row per detection: its class (categorical), score and box size.

How a feature is judged depends on the window's size (``DriftPolicy``):
- fewer than ``min_samples`` images: no verdict at all ("insufficient_data"), whatever the numbers;
- fewer than ``large_sample`` rows: statistical tests, KS for numbers and chi² for classes,
  drift when p < ``p_value``;
- from ``large_sample`` rows on: distances, because at 100k rows any p-value is tiny for a
  trivial shift. Wasserstein normed by the reference's standard deviation for numbers, and
  Jensen-Shannon for classes; drift when the distance >= ``distance_threshold``.

The verdict is "drift" when the share of drifted features reaches ``drift_share``.

Evidently computes every per-column value (the data-drift preset's ``ValueDrift`` metrics; the
HTML report is the whole preset). One case it cannot: a feature
that is constant in the reference (every synthetic image is 320x240), where the normed
Wasserstein divides by a zero deviation. Such a feature is judged here as the share of current
rows that differ from the constant (drift when it reaches ``distance_threshold``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detectops.monitoring.features import IMAGE_FEATURES

OUTPUT_COLUMNS = ("num_detections", "mean_score", "mean_box_size")
DETECTION_NUMERIC = ("score", "box_size")
DETECTION_CATEGORICAL = ("class",)
TABLES = ("images", "outputs", "detections")


@dataclass(frozen=True)
class DriftPolicy:
    min_samples: int = 100
    large_sample: int = 1000
    distance_threshold: float = 0.1
    p_value: float = 0.05
    drift_share: float = 0.3
    html_sample: int = 5000

    def __post_init__(self) -> None:
        problems = []
        if self.min_samples < 1 or self.large_sample < self.min_samples:
            problems.append("need 1 <= min_samples <= large_sample")
        if not 0 < self.distance_threshold <= 1 or not 0 < self.p_value < 1 or not 0 < self.drift_share <= 1:
            problems.append("distance_threshold and drift_share must be in (0, 1], p_value in (0, 1)")
        if problems:
            raise ValueError(f"invalid drift policy {asdict(self)}: {'; '.join(problems)}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> DriftPolicy:
        return cls(**{k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__})


@dataclass
class FeatureDrift:
    table: str
    feature: str
    kind: str  # "num" | "cat"
    method: str
    value: float | None
    drifted: bool
    n_reference: int
    n_current: int

    @property
    def name(self) -> str:
        return f"{self.table}.{self.feature}"


@dataclass
class DriftResult:
    verdict: str  # "drift" | "no_drift" | "insufficient_data"
    images: int
    drift_share: float
    features: list[FeatureDrift] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "images": self.images, "drift_share": self.drift_share,
                "drifted_features": self.drifted, "reason": self.reason, "policy": self.policy,
                "features": [{**asdict(f), "name": f.name} for f in self.features]}


def _evidently() -> Any:
    """Import Evidently with its telemetry off and one pandas 3 gap filled.

    Evidently 0.7.23 imports ``pandas.core.dtypes.common.infer_dtype_from_object``, which pandas 3
    removed. Only its legacy column-type *test* calls it (never used here); the name is given
    back so that the import works.
    """
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import numpy as np
    import pandas.core.dtypes.common as common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = lambda dtype: np.dtype(dtype).type
    import evidently

    return evidently


# --------------------------------------------------------------------------------------- tables
def _detections(frame: Any) -> Any:
    import pandas as pd

    rows = {"class": [], "score": [], "box_size": []}
    if not frame.empty and "classes" in frame:
        for classes, scores, sizes in zip(frame["classes"], frame["scores"], frame["box_sizes"]):
            if classes is None or (isinstance(classes, float) and math.isnan(classes)):
                continue
            rows["class"] += [str(int(c)) for c in classes]
            rows["score"] += [float(s) for s in scores]
            rows["box_size"] += [float(s) for s in sizes]
    return pd.DataFrame(rows)


def tables(reference: Any, current: Any) -> dict[str, tuple[Any, Any, list[str], list[str]]]:
    """``{table: (reference rows, current rows, numeric columns, categorical columns)}``."""
    with_outputs = reference[reference["num_detections"].notna()] if "num_detections" in reference else reference.iloc[:0]
    image_cols = [c for c in IMAGE_FEATURES if c in reference and c in current]
    output_cols = [c for c in OUTPUT_COLUMNS if c in reference and c in current]
    return {
        "images": (reference[image_cols].astype(float), current[image_cols].astype(float), image_cols, []),
        "outputs": (with_outputs[output_cols].astype(float), current[output_cols].astype(float), output_cols, []),
        "detections": (_detections(with_outputs), _detections(current), list(DETECTION_NUMERIC),
                       list(DETECTION_CATEGORICAL)),
    }


# --------------------------------------------------------------------------------------- judge
def _methods(n_current: int, policy: DriftPolicy) -> tuple[str, str, float]:
    """(numeric method, categorical method, threshold) for a table of ``n_current`` rows."""
    if n_current >= policy.large_sample:
        return "wasserstein", "jensenshannon", policy.distance_threshold
    return "ks", "chisquare", policy.p_value


def _is_drift(method: str, value: float | None, threshold: float) -> bool:
    if value is None or math.isnan(value):
        return False
    return value < threshold if method in ("ks", "chisquare") else value >= threshold


def _constant_drift(ref: Any, cur: Any, threshold: float) -> tuple[float, bool]:
    share = float((cur != ref.iloc[0]).mean()) if len(cur) else 0.0
    return share, share >= threshold


def _judge_table(name: str, ref: Any, cur: Any, num: list[str], cat: list[str], policy: DriftPolicy) -> list[FeatureDrift]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    out: list[FeatureDrift] = []
    num_method, cat_method, threshold = _methods(len(cur), policy)
    usable_num = []
    for col in num:
        r, c = ref[col].dropna(), cur[col].dropna()
        if len(r) == 0 or len(c) == 0:
            continue
        if r.nunique() == 1:
            value, drifted = _constant_drift(r, c, policy.distance_threshold)
            out.append(FeatureDrift(name, col, "num", "constant_share", round(value, 6), drifted, len(r), len(c)))
        else:
            usable_num.append(col)
    usable_cat = [c for c in cat if ref[c].notna().any() and cur[c].notna().any()]
    if usable_num or usable_cat:
        columns = usable_num + usable_cat
        definition = DataDefinition(numerical_columns=usable_num, categorical_columns=usable_cat)
        # The preset's per-column metrics alone: the preset also renders its widgets (plots of every
        # column), which took 60 % of the time at 100k rows and only the HTML report needs.
        metrics = [ValueDrift(column=c, method=cat_method if c in usable_cat else num_method, threshold=threshold)
                   for c in columns]
        snapshot = Report(metrics).run(Dataset.from_pandas(cur[columns], data_definition=definition),
                                       Dataset.from_pandas(ref[columns], data_definition=definition))
        for metric in snapshot.dict()["metrics"]:
            config = metric.get("config", {})
            if not config.get("type", "").endswith("ValueDrift"):
                continue
            col, method, value = config["column"], config["method"], metric["value"]
            value = None if value is None else float(value)
            out.append(FeatureDrift(name, col, "cat" if col in usable_cat else "num", method,
                                    None if value is None else round(value, 6), _is_drift(method, value, threshold),
                                    int(ref[col].notna().sum()), int(cur[col].notna().sum())))
    return out


def compute_drift(reference: Any, current: Any, policy: DriftPolicy | None = None) -> DriftResult:
    """Judge ``current`` (prediction records as a DataFrame) against ``reference`` (``monitoring.reference``)."""
    _evidently()
    policy = policy or DriftPolicy()
    images = int(len(current))
    if images == 0:
        return DriftResult("insufficient_data", 0, 0.0, [], asdict(policy), "the window has no prediction records")
    features: list[FeatureDrift] = []
    for name, (ref, cur, num, cat) in tables(reference, current).items():
        if len(ref) and len(cur):
            features += _judge_table(name, ref, cur, num, cat, policy)
    share = sum(f.drifted for f in features) / len(features) if features else 0.0
    if images < policy.min_samples:
        return DriftResult("insufficient_data", images, round(share, 4), features, asdict(policy),
                           f"{images} images in the window, fewer than min_samples={policy.min_samples}: no verdict")
    verdict = "drift" if features and share >= policy.drift_share else "no_drift"
    drifted = [f.name for f in features if f.drifted]
    reason = (f"{len(drifted)} of {len(features)} features drifted ({share:.0%} >= {policy.drift_share:.0%}): "
              f"{', '.join(drifted)}" if verdict == "drift" else
              f"{len(drifted)} of {len(features)} features drifted ({share:.0%} < {policy.drift_share:.0%})")
    return DriftResult(verdict, images, round(share, 4), features, asdict(policy), reason)


def render_reports(reference: Any, current: Any, out_dir: str | Path, policy: DriftPolicy | None = None) -> list[Path]:
    """Evidently's HTML data-drift report of each table, from a sample of at most ``html_sample`` rows."""
    _evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    policy = policy or DriftPolicy()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (ref, cur, num, cat) in tables(reference, current).items():
        columns = [c for c in num if ref[c].nunique() > 1] + cat
        if not len(ref) or not len(cur) or not columns:
            continue
        cur = cur.sample(policy.html_sample, random_state=0) if len(cur) > policy.html_sample else cur
        num_method, cat_method, threshold = _methods(len(cur), policy)
        definition = DataDefinition(numerical_columns=[c for c in columns if c in num],
                                    categorical_columns=[c for c in columns if c in cat])
        snapshot = Report([DataDriftPreset(columns=columns, num_method=num_method, cat_method=cat_method,
                                           threshold=threshold)]).run(
            Dataset.from_pandas(cur[columns], data_definition=definition),
            Dataset.from_pandas(ref[columns], data_definition=definition))
        path = out / f"drift_{name}.html"
        snapshot.save_html(str(path))
        paths.append(path)
    return paths
