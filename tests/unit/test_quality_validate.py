"""GX validation of COCO datasets: a good dataset passes, each kind of breakage is named."""

from __future__ import annotations

import json

import pytest

from detectops.data import CocoDataset, SyntheticSpec, generate_synthetic
from detectops.errors import DataValidationError
from detectops.quality import Bounds, build_suite, dataset_tables, validate_dataset

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good") / "ds"
    generate_synthetic(root, SyntheticSpec(num_images=8, image_size=(64, 64), objects_per_image=(2, 3),
                                           object_size=(0.15, 0.3), seed=21))
    return root


def _break(root):
    """Apply one of each breakage; return the ids involved."""
    ds = CocoDataset.load(root)
    broken_images = {im["id"] for im in ds.images[:3]}
    a = [x for x in ds.annotations if x["image_id"] not in broken_images]  # boxes on intact images
    a[1]["id"] = a[0]["id"]                                   # duplicate annotation id
    a[2]["image_id"] = 999                                    # image does not exist
    a[3]["bbox"] = [60.0, 10.0, 30.0, 10.0]                   # 60 + 30 > 64: out of bounds
    a[4]["bbox"] = [5.0, 5.0, 0.0, 10.0]; a[4]["area"] = 0.0  # zero area
    a[5]["category_id"] = 77                                  # unknown category
    ds.images[1]["width"] = 100                               # declared size != file size
    ds.save()
    first = ds.image_path(ds.images[0])
    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])                 # truncated JPEG
    ds.image_path(ds.images[2]).write_bytes(b"not an image")  # unreadable
    return {"dup": a[0]["id"], "missing": a[2]["id"], "oob": a[3]["id"], "zero": a[4]["id"],
            "unknown": a[5]["id"], "truncated": ds.images[0]["id"], "garbage": ds.images[2]["id"],
            "wrong_size": ds.images[1]["id"]}


def test_tables_shape(good):
    t = dataset_tables(good)
    assert set(t) == {"images", "annotations", "class_counts"}
    assert t["images"]["readable"].all() and (t["images"]["actual_width"] == 64).all()
    ann = t["annotations"]
    assert ann["image_exists"].all() and (ann["image_width"] == 64).all()
    assert (ann["x_overflow"] == ann["x"] + ann["w"] - 64).all()
    assert t["class_counts"]["count"].sum() == len(ann)


def test_build_suite_is_a_gx_suite_with_parameters():
    import great_expectations as gx

    suite = build_suite("annotations", {1: "circle", 2: "square"}, Bounds(box_tolerance_px=3))
    assert isinstance(suite, gx.ExpectationSuite) and suite.name == "detectops_annotations"
    by_col = {(e.expectation_type, getattr(e, "column", None)): e for e in suite.expectations}
    assert by_col[("expect_column_values_to_be_in_set", "category_id")].value_set == [1, 2]
    assert by_col[("expect_column_values_to_be_between", "x_overflow")].max_value == 3
    with pytest.raises(ValueError, match="Unknown table"):
        build_suite("nope")


def test_good_dataset_passes_and_writes_reports(good, tmp_path):
    report = validate_dataset(good, report_dir=tmp_path / "rep")
    assert report.success, report.summary()
    report.raise_for_failure()  # no error
    assert {s["table"] for s in report.suites} == {"images", "annotations", "class_counts"}
    full = json.loads((tmp_path / "rep" / "gx_results.json").read_text())
    assert full["annotations"]["success"] is True and full["annotations"]["results"]
    assert "passed all" in (tmp_path / "rep" / "summary.txt").read_text()
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["success"] is True


def test_broken_dataset_names_every_failure(good, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(good, root)
    ids = _break(root)
    report = validate_dataset(root, report_dir=tmp_path / "rep")
    assert not report.success
    fails = {(f["table"], f["expectation"], f["column"]): f for f in report.failures}

    def ex_ids(key):
        return {e.get("id") for e in fails[key]["examples"]}

    assert ids["dup"] in ex_ids(("annotations", "expect_column_values_to_be_unique", "id"))
    assert ids["missing"] in ex_ids(("annotations", "expect_column_values_to_be_in_set", "image_exists"))
    assert ids["oob"] in ex_ids(("annotations", "expect_column_values_to_be_between", "x_overflow"))
    assert ids["zero"] in ex_ids(("annotations", "expect_column_values_to_be_between", "w"))
    assert ids["zero"] in ex_ids(("annotations", "expect_column_values_to_be_between", "area"))
    assert ids["unknown"] in ex_ids(("annotations", "expect_column_values_to_be_in_set", "category_id"))
    assert {ids["truncated"], ids["garbage"]} <= ex_ids(("images", "expect_column_values_to_be_in_set", "readable"))
    assert ids["wrong_size"] in ex_ids(("images", "expect_column_pair_values_to_be_equal", "width,actual_width"))
    assert ("class_counts", "expect_column_values_to_be_in_set", "category_id") in fails  # 77 counted too

    with pytest.raises(DataValidationError) as err:
        report.raise_for_failure()
    msg = str(err.value)
    for needle in ["expect_column_values_to_be_unique column 'id'",
                   "expect_column_values_to_be_in_set column 'image_exists'",
                   "expect_column_values_to_be_between column 'x_overflow'",
                   "expect_column_values_to_be_between column 'w'",
                   "expect_column_values_to_be_in_set column 'category_id'",
                   "expect_column_values_to_be_in_set column 'readable'",
                   "expect_column_pair_values_to_be_equal column 'width,actual_width'",
                   f"id={ids['oob']}", "x_overflow=26.0", "category_id=77", "Fix these rows"]:
        assert needle in msg, f"{needle!r} not in:\n{msg}"
    assert "failed" in (tmp_path / "rep" / "summary.txt").read_text()


def test_label_map_and_bounds_are_parameters(good):
    # A label map without "square" (2) makes square boxes unknown; a tight size bound fails images.
    report = validate_dataset(good, label_map={"1": "circle"}, bounds={"max_image_side": 32})
    keys = {(f["table"], f["expectation"], f["column"]) for f in report.failures}
    assert ("annotations", "expect_column_values_to_be_in_set", "category_id") in keys
    assert ("images", "expect_column_values_to_be_between", "width") in keys
    # A declared class without boxes is fine (full COCO exports declare every class), unless the
    # purpose needs it: training that class fails the per-class count (tests/unit/test_quality_purpose.py).
    ds = CocoDataset.load(good)
    ds.categories.append({"id": 99, "name": "empty"})
    ds.save()
    try:
        assert validate_dataset(good).success
        report = validate_dataset(good, purpose="training", label_map=ds.label_map())
        assert [(f["table"], f["column"], f["examples"]) for f in report.failures] == [
            ("class_counts", "count", [{"count": 0, "category_id": 99}])]
    finally:
        ds.categories.pop()
        ds.save()


def test_schema_break_is_reported(tmp_path):
    root = tmp_path / "schema"
    generate_synthetic(root, SyntheticSpec(num_images=2, image_size=(32, 32), seed=1))
    d = json.loads((root / "annotations.json").read_text())
    d["annotations"][0]["category_id"] = "dog"  # a string where an int belongs
    (root / "annotations.json").write_text(json.dumps(d))
    report = validate_dataset(root)
    keys = {(f["expectation"], f["column"]) for f in report.failures}
    assert ("expect_column_values_to_be_in_type_list", "category_id") in keys
