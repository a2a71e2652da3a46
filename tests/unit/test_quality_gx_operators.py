"""The GX Airflow provider's GXValidateDataFrameOperator runs our suites (no Airflow server needed)."""

from __future__ import annotations

import json

import pytest

from detectops.data import CocoDataset, SyntheticSpec, generate_synthetic
from detectops.quality.gx_operators import make_dataframe_loader, make_expectations, result_format_for, summarize_gx_result

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform


class _TI:
    """Stands in for the TaskInstance: the operator only calls ``xcom_push``."""

    def __init__(self):
        self.xcom: dict = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "ds"
    generate_synthetic(root, SyntheticSpec(num_images=4, image_size=(48, 48), seed=3))
    return root


def _annotations_operator(dataset):
    """A new operator per check: the provider reads its DataFrame in ``__init__``."""
    from great_expectations_provider.operators.validate_dataframe import GXValidateDataFrameOperator

    return GXValidateDataFrameOperator(
        task_id="validate_annotations",
        configure_dataframe=make_dataframe_loader(dataset, "annotations"),
        configure_expectations=make_expectations("annotations", dataset_dir=dataset),
        result_format=result_format_for("annotations"),
    )


def test_provider_operator_pass_and_fail(dataset):
    from great_expectations_provider.common.errors import GXValidationFailed

    op = _annotations_operator(dataset)
    ti = _TI()
    op.execute({"ti": ti})
    assert ti.xcom["return_value"]["success"] is True
    assert "all expectations passed" in summarize_gx_result(ti.xcom["return_value"], "annotations")

    ds = CocoDataset.load(dataset)
    bad_id = ds.annotations[0]["id"]
    ds.annotations[0]["bbox"] = [40.0, 0.0, 30.0, 5.0]
    ds.save()
    op = _annotations_operator(dataset)
    ti = _TI()
    with pytest.raises(GXValidationFailed, match="expect_column_values_to_be_between"):
        op.execute({"ti": ti})
    result = json.loads(json.dumps(ti.xcom["return_value"], default=str))  # what XCom stores
    assert result["success"] is False
    msg = summarize_gx_result(result, "annotations")
    assert f"expect_column_values_to_be_between column 'x_overflow': 1 bad row(s); e.g. x_overflow=22.0, id={bad_id}" in msg


def test_dag_task_runs_the_provider_operator_and_names_failures(dataset, tmp_path, monkeypatch):
    """``validate_table_with_gx`` (what the DAGs' validate_data task runs) passes good data,
    writes the GX result as a report, and fails bad data with the expectation and example rows."""
    from detectops.errors import DataValidationError
    from detectops.orchestration import validate_table_with_gx

    monkeypatch.setenv("DETECTOPS_WORK", str(tmp_path / "work"))
    ref = CocoDataset.load(dataset).ref().to_dict()
    out = validate_table_with_gx(ref, "images", {"run_id": "manual__1"})
    assert out["success"] is True
    assert json.loads(open(out["report"]).read())["success"] is True

    ds = CocoDataset.load(dataset)
    ds.annotations[0]["category_id"] = 999
    ds.save()
    ref = CocoDataset.load(dataset).ref().to_dict()
    with pytest.raises(DataValidationError, match="category_id") as err:
        validate_table_with_gx(ref, "annotations", {"run_id": "manual__2"})
    assert "999" in str(err.value) and "Full report" in str(err.value)
