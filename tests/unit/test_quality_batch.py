"""Level 1's per-batch verdict: accepted, quarantined with its report, or rejected for a new class."""

from __future__ import annotations

import json
import shutil

import pytest

from detectops.data import SYNTHETIC_LABEL_MAP, CocoDataset, SyntheticSpec, generate_synthetic
from detectops.quality.batch import ACCEPTED, QUARANTINED, REJECTED, BatchVerdict, quarantine, validate_batch
from detectops.quality.purpose import Purpose

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch") / "good"
    generate_synthetic(root, SyntheticSpec(num_images=10, image_size=(48, 48), objects_per_image=(2, 4), seed=9))
    return root


def _copy(good, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(good, dst)
    return dst


def test_good_batch_is_accepted(good, tmp_path):
    verdict = validate_batch(good, SYNTHETIC_LABEL_MAP, report_dir=tmp_path / "rep")
    assert verdict.accepted and verdict.status == ACCEPTED, verdict.reason
    assert verdict.report["statistics"] == {**verdict.report["statistics"], "engine": "provider"}
    assert verdict.report["statistics"]["purpose"]["name"] == "training"
    assert sum(s["evaluated"] for s in verdict.report["suites"]) > 30
    assert json.loads((tmp_path / "rep" / "gx_results.json").read_text())["annotations"]["success"] is True
    assert BatchVerdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict


def test_schema_problems_are_quarantined_with_their_report(good, tmp_path):
    bad = _copy(good, tmp_path, "bad")
    ds = CocoDataset.load(bad)
    ds.annotations[0]["bbox"] = [40.0, 0.0, 30.0, 5.0]  # far past the right edge
    ds.save()
    for engine in ("provider", "gx"):  # the GX provider's operator and GX directly agree
        verdict = validate_batch(bad, SYNTHETIC_LABEL_MAP, engine=engine)
        assert verdict.status == QUARANTINED and not verdict.accepted
        assert "x_overflow': 1 bad row(s)" in verdict.reason and "quarantined" in verdict.reason

    where = quarantine(bad, tmp_path / "quarantine", verdict.report)
    assert CocoDataset.load(where / "batch").annotations[0]["bbox"] == [40.0, 0.0, 30.0, 5.0]  # not lost
    assert json.loads((where / "report.json").read_text())["success"] is False
    assert quarantine(bad, tmp_path / "quarantine", verdict.report) == where  # same batch, same place
    assert bad.is_dir()  # the caller decides when the original goes

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "annotations.json").write_text("{not json")
    verdict = validate_batch(garbage, SYNTHETIC_LABEL_MAP)
    assert verdict.status == QUARANTINED and "not valid JSON" in verdict.reason
    assert (quarantine(garbage, tmp_path / "quarantine", verdict) / "batch" / "annotations.json").is_file()


def test_a_class_outside_the_label_map_is_rejected(good, tmp_path):
    verdict = validate_batch(good, {1: "circle", 2: "square"})
    assert verdict.status == REJECTED
    assert "class 3 ('triangle') is not in the model's label map" in verdict.reason
    assert "A new class needs a new model" in verdict.reason

    renamed = _copy(good, tmp_path, "renamed")
    ds = CocoDataset.load(renamed)
    ds.categories[0]["name"] = "ball"
    ds.save()
    verdict = validate_batch(renamed, SYNTHETIC_LABEL_MAP)
    assert verdict.status == REJECTED and "class 1 is 'ball' in the batch but 'circle'" in verdict.reason


def test_training_purpose_needs_every_class_but_is_configurable(tmp_path):
    circles = tmp_path / "circles"
    generate_synthetic(circles, SyntheticSpec(num_images=4, image_size=(48, 48), seed=2,
                                              class_weights={"circle": 1.0, "square": 1.0}))
    verdict = validate_batch(circles, SYNTHETIC_LABEL_MAP)  # triangles etc. have no box
    assert verdict.status == QUARANTINED and "missing" in verdict.reason
    lenient = Purpose.training(SYNTHETIC_LABEL_MAP, min_boxes_per_class=0)
    assert validate_batch(circles, SYNTHETIC_LABEL_MAP, purpose=lenient).accepted
