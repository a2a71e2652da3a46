"""The GX Airflow provider's GXValidateDataFrameOperator runs our suites (no Airflow server needed)."""

from __future__ import annotations

import json

import pytest

from detectops.data import CocoDataset, SyntheticSpec, generate_synthetic
from detectops.quality.gx_operators import make_dataframe_loader, make_expectations, result_format_for, summarize_gx_result


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


def test_provider_operator_pass_and_fail(dataset):
    from great_expectations_provider.common.errors import GXValidationFailed
    from great_expectations_provider.operators.validate_dataframe import GXValidateDataFrameOperator

    op = GXValidateDataFrameOperator(
        task_id="validate_annotations",
        configure_dataframe=make_dataframe_loader(dataset, "annotations"),
        configure_expectations=make_expectations("annotations", dataset_dir=dataset),
        result_format=result_format_for("annotations"),
    )
    ti = _TI()
    op.execute({"ti": ti})
    assert ti.xcom["return_value"]["success"] is True
    assert "all expectations passed" in summarize_gx_result(ti.xcom["return_value"], "annotations")

    ds = CocoDataset.load(dataset)
    bad_id = ds.annotations[0]["id"]
    ds.annotations[0]["bbox"] = [40.0, 0.0, 30.0, 5.0]
    ds.save()
    op = GXValidateDataFrameOperator(
        task_id="validate_annotations",
        configure_dataframe=make_dataframe_loader(dataset, "annotations"),
        configure_expectations=make_expectations("annotations", dataset_dir=dataset),
        result_format=result_format_for("annotations"),
    )
    ti = _TI()
    with pytest.raises(GXValidationFailed, match="expect_column_values_to_be_between"):
        op.execute({"ti": ti})
    result = json.loads(json.dumps(ti.xcom["return_value"], default=str))  # what XCom stores
    assert result["success"] is False
    msg = summarize_gx_result(result, "annotations")
    assert f"expect_column_values_to_be_between column 'x_overflow': 1 bad row(s); e.g. x_overflow=22.0, id={bad_id}" in msg


def test_deferred_operator_loads_at_run_time(dataset, tmp_path):
    from great_expectations_provider.common.errors import GXValidationFailed

    from detectops.quality.airflow import DatasetGXValidateOperator

    missing = tmp_path / "not-yet"
    op = DatasetGXValidateOperator(task_id="validate_images", dataset_dir=str(missing), table="images")
    assert "dataset_dir" in op.template_fields  # constructing it read nothing
    op.dataset_dir = str(dataset)  # what templating does at run time
    ti = _TI()
    op.execute({"ti": ti})
    assert ti.xcom["return_value"]["success"] is True

    op = DatasetGXValidateOperator(task_id="validate_images", dataset_dir=str(dataset), table="images",
                                   bounds={"max_image_side": 32})
    ti = _TI()
    with pytest.raises(GXValidationFailed):
        op.execute({"ti": ti})
    assert "column 'width'" in summarize_gx_result(ti.xcom["return_value"], "images")
