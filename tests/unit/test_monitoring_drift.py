"""Drift verdicts on hand-made distributions: same, shifted, too few samples, very large samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectops.monitoring.drift import DriftPolicy, compute_drift
from detectops.monitoring.features import IMAGE_FEATURES


def _frame(n: int, seed: int, *, brightness: float = 120.0, box: float = 0.2, classes=(1, 2, 3),
           class_p=None, with_outputs: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(50.0 + i * 10, 5.0, n) for i, name in enumerate(IMAGE_FEATURES)}
    data["width"], data["height"] = np.full(n, 320.0), np.full(n, 240.0)  # constant, like synthetic data
    data["brightness_mean"] = rng.normal(brightness, 15.0, n)
    frame = pd.DataFrame(data)
    if with_outputs:
        counts = rng.integers(1, 4, n)
        frame["num_detections"] = counts.astype(float)
        frame["classes"] = [list(rng.choice(classes, k, p=class_p)) for k in counts]
        frame["scores"] = [list(rng.uniform(0.4, 1.0, k)) for k in counts]
        frame["box_sizes"] = [list(np.clip(rng.normal(box, 0.05, k), 0.01, 1)) for k in counts]
        frame["mean_score"] = [float(np.mean(s)) for s in frame["scores"]]
        frame["mean_box_size"] = [float(np.mean(s)) for s in frame["box_sizes"]]
    return frame


REFERENCE = _frame(1500, 0)


def test_the_same_distribution_gives_no_drift():
    result = compute_drift(REFERENCE, _frame(400, 1))
    assert result.verdict == "no_drift", result.reason
    methods = {f.name: f.method for f in result.features}
    assert methods["images.brightness_mean"] == "ks" and methods["detections.class"] == "chisquare"
    assert methods["images.width"] == "constant_share"
    assert len(result.drifted) <= 1  # 14 features at p < 0.05: a single false alarm is possible, no more


def test_darker_images_with_smaller_objects_and_another_class_mix_drift():
    shifted = _frame(400, 2, brightness=60.0, box=0.08, class_p=[0.8, 0.1, 0.1])
    shifted["sharpness"] = shifted["sharpness"] * 0.3
    shifted["width"] = 640.0
    result = compute_drift(REFERENCE, shifted)
    assert result.verdict == "drift", result.reason
    assert {"images.brightness_mean", "images.width", "images.sharpness", "outputs.mean_box_size",
            "detections.box_size", "detections.class"} <= set(result.drifted)


def test_too_few_requests_give_no_verdict_even_when_shifted():
    result = compute_drift(REFERENCE, _frame(30, 3, brightness=40.0), DriftPolicy(min_samples=100))
    assert result.verdict == "insufficient_data" and "30 images" in result.reason
    assert compute_drift(REFERENCE, REFERENCE.iloc[:0]).verdict == "insufficient_data"


def test_very_large_windows_use_distances_so_a_trivial_shift_is_not_drift_but_a_real_one_is():
    reference = _frame(100_000, 7)
    big = _frame(100_000, 4, brightness=121.0)  # +1 grey level (0.07 sd): KS flags it at this size
    result = compute_drift(reference, big)
    methods = {f.name: f.method for f in result.features}
    assert methods["images.brightness_mean"] == "wasserstein" and methods["detections.class"] == "jensenshannon"
    assert result.verdict == "no_drift" and "images.brightness_mean" not in result.drifted, result.reason
    from scipy.stats import ks_2samp

    assert ks_2samp(reference["brightness_mean"], big["brightness_mean"]).pvalue < 0.05  # why p-values are not used
    dark = compute_drift(reference, _frame(100_000, 5, brightness=80.0, box=0.1))
    assert "images.brightness_mean" in dark.drifted and "detections.box_size" in dark.drifted


def test_policy_is_checked():
    with pytest.raises(ValueError, match="drift policy"):
        DriftPolicy(drift_share=0)
    assert DriftPolicy.from_dict({"min_samples": 5, "unknown": 1}).min_samples == 5


def test_html_reports_are_written(tmp_path):
    from detectops.monitoring.drift import render_reports

    paths = render_reports(REFERENCE, _frame(200, 6), tmp_path, DriftPolicy(html_sample=100))
    assert sorted(p.name for p in paths) == ["drift_detections.html", "drift_images.html", "drift_outputs.html"]
    assert all(p.stat().st_size > 10_000 for p in paths)
