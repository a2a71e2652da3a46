"""``DatasetGXValidateOperator``: the GX provider's DataFrame operator, loading at run time.

``GXValidateDataFrameOperator`` calls ``configure_dataframe()`` in ``__init__`` — at DAG
parse time, before any run exists. This subclass keeps the provider's ``execute`` (its
ephemeral context, XCom push and ``GXValidationFailed``) but builds the table when the task
runs, from a templated ``dataset_dir`` (so ``{{ params.dataset_dir }}`` or an upstream XCom
works). Importing this module imports Airflow and the provider (which imports GX): import
it inside DAG files only.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from great_expectations_provider.operators.validate_dataframe import GXValidateDataFrameOperator

from detectops.quality.gx_operators import make_dataframe_loader, make_expectations, result_format_for


class DatasetGXValidateOperator(GXValidateDataFrameOperator):
    """Validate one table (``images``/``annotations``/``class_counts``) of a COCO dataset dir."""

    template_fields: Sequence[str] = ("dataset_dir",)

    def __init__(self, *, dataset_dir: str, table: str, label_map: Mapping[Any, str] | None = None,
                 bounds: Mapping[str, Any] | None = None, deep: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("result_format", None)
        super().__init__(configure_dataframe=lambda: None,  # replaced in execute()
                         configure_expectations=make_expectations(table, label_map, bounds), **kwargs)
        self.dataset_dir = dataset_dir
        self.table = table
        self.label_map = dict(label_map) if label_map is not None else None
        self.bounds = dict(bounds) if bounds is not None else None
        self.deep = deep

    def execute(self, context: Any) -> None:
        self.dataframe = make_dataframe_loader(self.dataset_dir, self.table, self.deep)()
        self.configure_expectations = make_expectations(
            self.table, self.label_map, self.bounds, dataset_dir=self.dataset_dir)
        if self.result_format is None:
            self.result_format = result_format_for(self.table)  # type: ignore[assignment]
        return super().execute(context)
