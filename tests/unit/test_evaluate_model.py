"""evaluate_model end to end: the tiny contract SavedModel on a 2-image dataset, real TF and pycocotools."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from detectops.evaluate import EvaluationResult, evaluate_model
from tests.support.fixtures import TINY_EVAL_EXPECTED

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from tests.support.fixtures import make_tiny_eval_case

    tmp = tmp_path_factory.mktemp("eval")
    model_dir, dataset_dir = make_tiny_eval_case(tmp)
    return evaluate_model(model_dir, dataset_dir, output_dir=tmp / "report"), tmp


def test_metrics_match_the_hand_computed_values(evaluated):
    result, _ = evaluated
    assert result.per_class_ap["person"] == pytest.approx(1.0)
    assert result.per_class_ap["dog"] == pytest.approx(51 / 101)
    assert result.per_class_ap["cup"] is None
    assert result.metrics["AP"] == pytest.approx(TINY_EVAL_EXPECTED["AP"])
    assert result.num_images == 2 and result.num_detections == 4


def test_latency_and_references_are_recorded(evaluated):
    result, tmp = evaluated
    assert 0 < result.latency["p50_ms"] <= result.latency["p95_ms"]
    assert result.latency["throughput_ips"] > 0
    assert result.dataset["num_images"] == 2 and len(result.dataset["sha256"]) == 64
    assert result.model["path"].endswith("tiny_model") and len(result.model["sha256"]) == 64


def test_artifacts_are_written_and_readable(evaluated):
    result, tmp = evaluated
    arts = result.artifacts
    rows = {r["name"]: r for r in csv.DictReader(open(arts["per_class_ap_csv"]))}
    assert float(rows["person"]["ap"]) == pytest.approx(1.0) and rows["cup"]["ap"] == ""
    assert "| person |" in open(arts["per_class_ap_md"]).read()
    results = json.load(open(arts["coco_results_json"]))
    assert {r["category_id"] for r in results} == {1, 18}
    assert [r["bbox"] for r in results if r["image_id"] == 1 and r["category_id"] == 1] == [[40.0, 10.0, 80.0, 40.0]]
    for key in ("pr_curves_png", "samples_png"):
        with Image.open(arts[key]) as im:
            assert im.format == "PNG" and im.width > 300
    summary = json.load(open(arts["summary_json"]))
    assert EvaluationResult.from_dict(summary).metrics == result.metrics
    # Nothing but the report directory is left beside it (no temp dirs).
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []


def test_score_threshold_drops_low_scores_and_result_round_trips(evaluated, tmp_path):
    _, tmp = evaluated
    result = evaluate_model(tmp / "tiny_model", tmp / "tiny_dataset", output_dir=tmp_path / "r", score_threshold=0.7)
    assert result.num_detections == 2  # only the person boxes (0.9); the dogs (0.6) are gone
    assert result.per_class_ap["dog"] == pytest.approx(0.0)
    assert EvaluationResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_failed_evaluation_leaves_previous_report_untouched(evaluated, tmp_path):
    _, tmp = evaluated
    report = tmp / "report"
    before = sorted(p.name for p in report.iterdir())
    (tmp / "tiny_dataset" / "images" / "img2.png").rename(tmp / "img2.png.bak")
    try:
        with pytest.raises(Exception, match="img2.png"):
            evaluate_model(tmp / "tiny_model", tmp / "tiny_dataset", output_dir=report)
    finally:
        (tmp / "img2.png.bak").rename(tmp / "tiny_dataset" / "images" / "img2.png")
    assert sorted(p.name for p in report.iterdir()) == before
    assert not [p for p in tmp.iterdir() if ".tmp-" in p.name]
