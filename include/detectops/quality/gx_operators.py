"""Callables for the GX Airflow provider's ``GXValidateDataFrameOperator``.

The operator wants ``configure_dataframe: () -> DataFrame`` and
``configure_expectations: (context) -> Expectation | ExpectationSuite``; these factories
build both from a dataset directory and a table name, so the DAG runs the same suites as
:func:`~detectops.quality.validate.validate_dataset`. The operator pushes GX's
``describe_dict()`` to XCom (also on failure, then raises ``GXValidationFailed``);
:func:`summarize_gx_result` turns that XCom value into a message with example rows.

Nothing heavy is imported here at module level.

Note: the provider's operator calls ``configure_dataframe()`` in its ``__init__``, and its
module imports great_expectations; DAGs therefore build it at task run time
(:func:`detectops.orchestration.validate_table_with_gx`), never at parse time.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from detectops.quality.purpose import Purpose, resolve_purpose
from detectops.quality.suites import Bounds, build_suite
from detectops.quality.validate import INDEX_COLUMN, MAX_EXAMPLES, describe_failure, failed_expectations


def make_dataframe_loader(dataset_dir: str | os.PathLike[str], table: str, deep: bool = False) -> Callable[[], Any]:
    """``() -> pandas.DataFrame`` of one table (``images``, ``annotations``, ``class_counts``)."""

    def load():
        from detectops.quality.tables import dataset_tables

        return dataset_tables(dataset_dir, deep=deep)[table]

    return load


def make_expectations(table: str, label_map: Mapping[Any, str] | None = None,
                      bounds: Bounds | Mapping[str, Any] | None = None,
                      dataset_dir: str | os.PathLike[str] | None = None,
                      purpose: Purpose | str | Mapping[str, Any] | None = None) -> Callable[[Any], Any]:
    """``(gx_context) -> ExpectationSuite`` for ``table``.

    ``label_map`` defaults to the categories of ``dataset_dir`` (read when the operator runs).
    ``purpose`` (a :class:`~detectops.quality.purpose.Purpose`, its dict or name; default
    evaluation) says which classes need boxes.
    """

    def configure(context: Any):
        lm = label_map
        if lm is None and dataset_dir is not None:
            from detectops.data.coco import CocoDataset

            lm = CocoDataset.load(dataset_dir).label_map()
        lm = {int(k): str(v) for k, v in lm.items()} if lm is not None else None
        b = bounds if isinstance(bounds, Bounds) else Bounds.from_dict(bounds)
        suite = build_suite(table, lm, b, resolve_purpose(purpose, lm))
        # Ephemeral contexts may be reused inside one worker process: add or replace.
        try:
            context.suites.delete(suite.name)
        except Exception:  # noqa: BLE001 - "not found" has no stable exception type across GX 1.x
            pass
        return context.suites.add(suite)

    return configure


def result_format_for(table: str) -> dict[str, Any]:
    """The ``result_format`` to pass the operator so failures carry example row ids."""
    return {"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES,
            "unexpected_index_column_names": [INDEX_COLUMN[table]], "return_unexpected_index_query": False}


def summarize_gx_result(result: Mapping[str, Any], table: str = "") -> str:
    """One line per failing expectation (type, column, bad-row count, example rows) from the
    operator's XCom value (``ExpectationSuiteValidationResult.describe_dict()``)."""
    fails = failed_expectations(result)
    if not fails:
        return f"{table or 'table'}: all expectations passed."
    lines = [f"{table or 'table'}: {len(fails)} expectation(s) failed:"]
    for f in fails:
        col = f" column '{f['column']}'" if f.get("column") else ""
        what = describe_failure(f)
        ex = "; ".join(", ".join(f"{k}={v!r}" for k, v in e.items()) for e in f["examples"])
        lines.append(f"  - {f['expectation']}{col}: {what}" + (f"; e.g. {ex}" if ex else ""))
    return "\n".join(lines)
