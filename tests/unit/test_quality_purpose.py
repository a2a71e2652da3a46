"""Issue 6, item 1: a full COCO export (categories without boxes) is a valid dataset.

The per-class minimum applies only to the classes a purpose needs: evaluation needs none,
training needs the classes being trained. Checked in ``validate_dataset``, the
``detectops validate`` CLI and the GX provider operator the level-0 DAG runs.
"""

from __future__ import annotations

import json

import pytest

from detectops.data import CocoDataset, SyntheticSpec, generate_synthetic
from detectops.errors import DetectOpsError
from detectops.quality import validate_dataset
from detectops.quality.purpose import Purpose, resolve_purpose

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform

#: Categories a full export declares although this dataset has no box of them.
EMPTY_CATEGORIES = [{"id": 90, "name": "kite"}, {"id": 91, "name": "giraffe"}]


@pytest.fixture(scope="module")
def full_export(tmp_path_factory):
    """Synthetic circles and squares, plus two declared categories without boxes."""
    root = tmp_path_factory.mktemp("export") / "ds"
    generate_synthetic(root, SyntheticSpec(num_images=6, image_size=(48, 48), objects_per_image=(2, 3),
                                           class_weights={"circle": 1.0, "square": 1.0}, seed=5))
    ds = CocoDataset.load(root)
    ds.categories += EMPTY_CATEGORIES
    ds.save()
    return root


def _keys(report):
    return {(f["table"], f["expectation"], f["column"]) for f in report.failures}


def test_full_export_passes_by_default_and_for_evaluation(full_export):
    assert validate_dataset(full_export).success, validate_dataset(full_export).summary()
    assert validate_dataset(full_export, purpose="evaluation").success


def test_training_needs_boxes_of_the_trained_classes_only(full_export):
    # Training circles and squares: the empty kite/giraffe categories do not matter, also not as
    # "unknown" categories of the class_counts table.
    trained = {1: "circle", 2: "square"}
    report = validate_dataset(full_export, label_map=trained, purpose=Purpose.training(trained))
    assert report.success, report.summary()

    # Training kites too: the declared but empty kite class fails, naming the class and its count.
    with_kite = {1: "circle", 2: "square", 90: "kite"}
    report = validate_dataset(full_export, purpose=Purpose.training(with_kite))
    assert not report.success
    fails = [f for f in report.failures if f["table"] == "class_counts"]
    assert [(f["column"], f["examples"]) for f in fails] == [("count", [{"count": 0, "category_id": 90}])]

    # A trained class the dataset does not even declare is missing, and the message says which.
    report = validate_dataset(full_export, purpose=Purpose.training({1: "circle", 6: "diamond"}))
    assert ("class_counts", "expect_column_distinct_values_to_contain_set", "category_id") in _keys(report)
    assert "missing [6]" in report.summary()


def test_bounds_are_configurable_per_purpose(full_export):
    n_boxes = len(CocoDataset.load(full_export).annotations)
    strict = Purpose.training({1: "circle"}, min_boxes_per_class=n_boxes + 1)
    assert ("class_counts", "expect_column_values_to_be_between", "count") in _keys(
        validate_dataset(full_export, purpose=strict))
    capped = Purpose.training({1: "circle"}, min_boxes_per_class=0, max_boxes_per_class=1)
    assert not validate_dataset(full_export, purpose=capped).success
    few_images = Purpose.evaluation(min_images=100)
    assert ("images", "expect_table_row_count_to_be_between", None) in _keys(
        validate_dataset(full_export, purpose=few_images))


def test_purpose_records_round_trip_and_resolve():
    p = Purpose.training({"2": "square", "1": "circle"}, min_boxes_per_class=3)
    assert p.required_classes == (1, 2)
    assert Purpose.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert resolve_purpose(None) == Purpose.evaluation()
    assert resolve_purpose("training", {1: "a"}).required_classes == (1,)
    assert resolve_purpose(p.to_dict()) == p
    with pytest.raises(DetectOpsError, match="label map"):
        resolve_purpose("training")
    with pytest.raises(DetectOpsError, match="choose from"):
        resolve_purpose("fine-tuning")
    with pytest.raises(DetectOpsError, match="max_boxes_per_class"):
        Purpose("training", (1,), min_boxes_per_class=5, max_boxes_per_class=2)


def test_cli_validate_accepts_a_full_export(full_export, tmp_path, capsys):
    from detectops.cli import main

    assert main(["validate", str(full_export)]) == 0
    assert json.loads(capsys.readouterr().out)["success"] is True

    label_map = tmp_path / "labels.json"
    label_map.write_text(json.dumps({"1": "circle", "90": "kite"}))
    assert main(["validate", str(full_export), "--purpose", "training", "--label-map", str(label_map)]) == 2
    assert "category_id=90" in capsys.readouterr().err


def test_dag_gx_operator_accepts_a_full_export(full_export, tmp_path, monkeypatch):
    """What the level-0 DAG runs: the provider operator on the class_counts table."""
    from detectops.errors import DataValidationError
    from detectops.orchestration import validate_table_with_gx

    monkeypatch.setenv("DETECTOPS_WORK", str(tmp_path / "work"))
    ref = CocoDataset.load(full_export).ref().to_dict()
    assert validate_table_with_gx(ref, "class_counts", {"run_id": "manual__1"})["success"] is True
    with pytest.raises(DataValidationError, match="category_id=91"):
        validate_table_with_gx(ref, "class_counts", {"run_id": "manual__2"},
                               purpose=Purpose.training({1: "circle", 91: "giraffe"}).to_dict())
