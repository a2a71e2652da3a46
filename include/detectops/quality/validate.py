"""Run every suite on a dataset and turn GX's results into a report a person can act on.

``validate_dataset(dir)`` -> :class:`ValidationReport` (the record that crosses XCom), with
the full GX results JSON and a short summary written to ``report_dir``.
``report.raise_for_failure()`` raises :class:`~detectops.errors.DataValidationError` naming
each failing expectation, its column and example rows (ids and values).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from detectops.data.coco import CocoDataset
from detectops.errors import DataValidationError
from detectops.fsutil import atomic_write_text
from detectops.quality.purpose import Purpose, resolve_purpose
from detectops.quality.suites import TABLES, Bounds, build_suite

#: What GX returns per expectation: counts plus up to this many example rows, keyed by ``id``.
MAX_EXAMPLES = 5
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": MAX_EXAMPLES,
    "return_unexpected_index_query": False,
}
#: Row key for examples per table (GX's ``unexpected_index_column_names``).
INDEX_COLUMN = {"images": "id", "annotations": "id", "class_counts": "category_id"}


def _plain(v: Any) -> Any:
    """NumPy scalars and containers -> JSON-friendly Python."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and callable(v.item):
        try:
            return v.item()
        except (ValueError, TypeError):
            pass
    if isinstance(v, float) and v != v:
        return None
    return v


def failed_expectations(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """From one suite result (GX ``describe_dict()`` / ``to_json_dict()``), the failures:
    ``[{expectation, column, unexpected_count, observed, examples}]``."""
    out = []
    for r in result.get("results", result.get("expectations", [])):
        if r.get("success", True):
            continue
        cfg = r.get("expectation_config", r)
        kwargs = cfg.get("kwargs", {})
        etype = cfg.get("type", cfg.get("expectation_type"))
        column = kwargs.get("column")
        if column is None and "column_A" in kwargs:
            column = f"{kwargs['column_A']},{kwargs['column_B']}"
        res = r.get("result", {}) or {}
        examples = res.get("partial_unexpected_index_list") or [
            {"value": v} for v in res.get("partial_unexpected_list", [])
        ]
        failure: dict[str, Any] = {
            "expectation": etype,
            "column": column,
            "unexpected_count": res.get("unexpected_count"),
            "examples": _plain(examples[:MAX_EXAMPLES]),
        }
        if "observed_value" in res:
            failure["observed"] = _plain(res["observed_value"])
        if res.get("partial_missing_list"):  # a set expectation: values that should be there and are not
            failure["missing"] = _plain(res["partial_missing_list"])
        if r.get("exception_info", {}).get("raised_exception"):
            failure["exception"] = str(r["exception_info"].get("exception_message"))[:300]
        out.append(failure)
    return out


def describe_failure(f: Mapping[str, Any]) -> str:
    """What went wrong in one failure of :func:`failed_expectations`, in a few words."""
    if f.get("unexpected_count") is not None:
        return f"{f['unexpected_count']} bad row(s)"
    if f.get("missing"):
        return f"missing {f['missing']!r}"
    if "observed" in f:
        return f"observed {f.get('observed')!r}"
    return f.get("exception", "failed")


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_dataset`. ``suites``: ``[{table, success, failed: [...]}]``."""

    success: bool
    dataset: str
    suites: list[dict[str, Any]] = field(default_factory=list)
    path: str | None = None
    statistics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "dataset": self.dataset, "suites": self.suites,
                "path": self.path, "statistics": self.statistics}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ValidationReport":
        return cls(success=bool(d["success"]), dataset=str(d["dataset"]), suites=list(d.get("suites", [])),
                   path=d.get("path"), statistics=dict(d.get("statistics", {})))

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [dict(f, table=s["table"]) for s in self.suites for f in s.get("failed", [])]

    def summary(self) -> str:
        """A few lines: verdict, then one line per failing expectation with examples."""
        n_exp = sum(int(s.get("evaluated", 0)) for s in self.suites)
        fails = self.failures
        if self.success:
            head = f"Dataset {self.dataset} passed all {n_exp} data checks."
        else:
            head = f"Dataset {self.dataset} failed {len(fails)} of {n_exp} data checks:"
        lines = [head]
        for f in fails:
            col = f" column '{f['column']}'" if f.get("column") else ""
            what = describe_failure(f)
            ex = "; ".join(", ".join(f"{k}={v!r}" for k, v in e.items()) for e in f.get("examples", []))
            lines.append(f"  - {f['table']}: {f['expectation']}{col}: {what}" + (f"; e.g. {ex}" if ex else ""))
        if self.path:
            lines.append(f"Full Great Expectations results: {self.path}")
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        """Raise :class:`DataValidationError` (with :meth:`summary` and the fix) when checks failed."""
        if not self.success:
            raise DataValidationError(
                self.summary() + "\nFix these rows in the dataset (or adjust the bounds if they are "
                "intended) and run the validation again; the data must not reach training or evaluation."
            )


def _quiet_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def run_suites(tables: Mapping[str, Any], label_map: Mapping[int, str] | None,
               bounds: Bounds, purpose: Purpose | None = None) -> dict[str, Any]:
    """Validate each table against its suite in one ephemeral GX context; ``{table: GX result}``."""
    import great_expectations as gx

    ctx = _quiet_context()
    source = ctx.data_sources.add_pandas(name="detectops_dataset")
    results = {}
    for table in TABLES:
        batch_def = source.add_dataframe_asset(name=table).add_batch_definition_whole_dataframe(table)
        suite = ctx.suites.add(build_suite(table, label_map, bounds, purpose))
        vd = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=f"detectops_{table}", data=batch_def, suite=suite))
        results[table] = vd.run(
            batch_parameters={"dataframe": tables[table]},
            result_format=dict(RESULT_FORMAT, unexpected_index_column_names=[INDEX_COLUMN[table]]),
        )
    return results


def validate_dataset(root: str | os.PathLike[str], label_map: Mapping[Any, str] | None = None,
                     bounds: Bounds | Mapping[str, Any] | None = None,
                     report_dir: str | os.PathLike[str] | None = None, deep: bool = False,
                     purpose: Purpose | str | Mapping[str, Any] | None = None) -> ValidationReport:
    """Check a COCO dataset directory with the GX suites; never raises for bad *rows*.

    ``label_map``: allowed ``{category_id: name}`` (string keys accepted); defaults to the
    dataset's own ``categories``. ``bounds``: :class:`Bounds` or its dict. ``purpose``: what the
    data is for (:class:`~detectops.quality.purpose.Purpose`, its dict, or ``"evaluation"`` /
    ``"training"``; default evaluation): only the classes it needs must have boxes. ``report_dir``:
    where ``gx_results.json``, ``summary.txt`` and ``report.json`` go. ``deep``: decode every
    image fully instead of header + end-marker checks.
    """
    from detectops.quality.tables import dataset_tables

    t0 = time.perf_counter()
    root = Path(root)
    if not isinstance(bounds, Bounds):
        bounds = Bounds.from_dict(bounds)
    dataset = CocoDataset.load(root)
    if label_map is None:
        label_map = dataset.label_map()
    label_map = {int(k): str(v) for k, v in label_map.items()}
    purpose = resolve_purpose(purpose, label_map)
    tables = dataset_tables(dataset, deep=deep)
    t1 = time.perf_counter()
    results = run_suites(tables, label_map, bounds, purpose)
    t2 = time.perf_counter()

    suites = []
    for table, res in results.items():
        d = res.describe_dict()
        suites.append({"table": table, "success": bool(res.success), "rows": int(len(tables[table])),
                       "evaluated": int(res.statistics["evaluated_expectations"]),
                       "failed": failed_expectations(d)})
    report = ValidationReport(
        success=all(s["success"] for s in suites), dataset=str(root), suites=suites,
        statistics={"tables_s": round(t1 - t0, 3), "gx_s": round(t2 - t1, 3),
                    "bounds": purpose.apply(bounds).to_dict(), "label_map_size": len(label_map),
                    "purpose": purpose.to_dict()},
    )
    if report_dir is not None:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.path = str(out / "gx_results.json")
        full = {table: res.to_json_dict() for table, res in results.items()}
        atomic_write_text(out / "gx_results.json", json.dumps(_plain(full), indent=1, default=str))
        atomic_write_text(out / "summary.txt", report.summary() + "\n")
        atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=1, default=str))
    return report
