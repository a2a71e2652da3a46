"""Skew distances against hand-computed cases, and on synthetic batches with and without a shift."""

from __future__ import annotations

import json
import math

import pytest

from detectops.data import SyntheticSpec, generate_synthetic
from detectops.data.versioning import build_version
from detectops.quality.skew import (
    FeatureSamples, SkewExceeded, SkewReport, compare_samples, compute_skew, js_distance, linf_distance,
    shared_histograms,
)

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform


def test_linf_hand_computed():
    # p = (3/4, 1/4, 0), q = (1/4, 1/4, 1/2): the largest gap is 1/2 (classes 1 and 3).
    assert linf_distance({1: 3, 2: 1}, {1: 1, 2: 1, 3: 2}) == pytest.approx(0.5)
    assert linf_distance({1: 5, 2: 5}, {1: 1, 2: 1}) == 0.0           # same mix, other sizes
    assert linf_distance({1: 1}, {2: 7}) == 1.0                        # disjoint


def test_js_hand_computed():
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4):
    # KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2) = 0.2075187...; KL(q||m) = log2(4/3) = 0.4150375...
    # JSD = (0.2075187 + 0.4150375) / 2 = 0.3112781; distance = sqrt(JSD) = 0.5579230.
    kl_pm = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_qm = math.log2(1 / 0.75)
    expected = math.sqrt((kl_pm + kl_qm) / 2)
    assert expected == pytest.approx(0.5579230, abs=1e-6)
    assert js_distance([5, 5], [8, 0]) == pytest.approx(expected, abs=1e-9)   # counts, not probabilities
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)                    # base 2: disjoint = 1
    assert js_distance([2, 3, 5], [4, 6, 10]) == pytest.approx(0.0, abs=1e-7)


def test_shared_histograms_use_the_same_bins():
    ha, hb, edges = shared_histograms([0, 1, 2, 3], [3, 3], bins=3)
    assert edges == [0.0, 1.0, 2.0, 3.0] and ha == [1, 1, 2] and hb == [0, 0, 2]
    assert shared_histograms([640, 640], [640], bins=5) == ([2], [1], [640.0, 640.0])  # all equal: one bin
    ha, hb, _ = shared_histograms([-5, 300], [10], bins=2, value_range=(0, 256))       # clipped into range
    assert ha == [1, 1] and hb == [1, 0]


def test_report_from_known_samples():
    ref = FeatureSamples(num_images=2)
    ref.class_counts.update({1: 3, 2: 1})
    ref.numeric.update(brightness=[64.0, 192.0], image_width=[100.0, 100.0], image_height=[50.0, 50.0],
                       box_relative_size=[0.2, 0.2, 0.2, 0.2])
    new = FeatureSamples(num_images=1)
    new.class_counts.update({1: 1, 2: 1, 3: 2})
    new.numeric.update(brightness=[64.0], image_width=[100.0], image_height=[50.0], box_relative_size=[0.2] * 4)
    report = compare_samples(ref, new, thresholds={"class_mix": 0.4, "brightness": 0.6}, bins=2)  # [0,128) [128,256)
    f = report.features
    assert f["class_mix"] == {**f["class_mix"], "kind": "categorical", "distance": 0.5, "threshold": 0.4,
                              "exceeded": True}
    assert f["brightness"]["distance"] == pytest.approx(0.557923, abs=1e-6)    # (1/2, 1/2) vs (1, 0)
    assert f["brightness"]["exceeded"] is False and f["brightness"]["threshold"] == 0.6
    assert f["image_width"]["distance"] == 0.0 and f["box_relative_size"]["distance"] == 0.0
    assert report.max_distance == pytest.approx(0.557923, abs=1e-6)
    assert report.exceeded == ["class_mix"]
    assert SkewReport.from_dict(json.loads(json.dumps(report.to_dict()))).to_dict() == report.to_dict()
    md = report.to_markdown()
    assert "| class_mix | categorical (L∞) | 0.500 | 0.400 |" in md and "**exceeded**" in md
    assert report.metrics()["skew.class_mix"] == 0.5
    with pytest.raises(SkewExceeded, match="class_mix"):
        report.raise_if_exceeded()
    with pytest.raises(Exception, match="Unknown skew feature"):
        compare_samples(ref, new, thresholds={"colour": 0.1})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The current dataset version: 48 synthetic images."""
    base = tmp_path_factory.mktemp("skew")
    generate_synthetic(base / "b0", SyntheticSpec(num_images=48, image_size=(64, 48), seed=1))
    return build_version(None, [base / "b0"], base / "versions").path


def _batch(path, **kw):
    generate_synthetic(path, SyntheticSpec(**{"num_images": 24, "image_size": (64, 48), **kw}))
    return path


def test_same_distribution_batch_shows_no_skew(reference, tmp_path):
    report = compute_skew(reference, _batch(tmp_path / "same", seed=2))
    assert report.exceeded == [], report.to_markdown()
    assert report.features["brightness"]["distance"] < 0.4


def test_darker_batch_shows_brightness_skew(reference, tmp_path):
    report = compute_skew(reference, _batch(tmp_path / "dark", seed=3, brightness=0.5))
    assert "brightness" in report.exceeded, report.to_markdown()
    assert report.features["brightness"]["distance"] > 0.7


def test_shifted_domain_shows_in_the_report(reference, tmp_path):
    """The demo's shifted batch: darker, noisier, smaller objects, other image size, one class."""
    shifted = _batch(tmp_path / "shifted", seed=4, brightness=0.5, noise=0.1, object_size=(0.05, 0.12),
                     image_size=(96, 48), class_weights={"circle": 1.0})
    report = compute_skew(reference, shifted, thresholds={"image_height": 0.9})
    assert set(report.exceeded) == {"class_mix", "brightness", "image_width", "box_relative_size"}
    assert report.features["image_width"]["distance"] == pytest.approx(1.0)   # 64 vs 96: disjoint bins
    assert report.features["image_height"]["distance"] == 0.0
