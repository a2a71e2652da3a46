"""Level 1's check of each landed batch: accepted, quarantined (schema problems) or rejected (new class).

    verdict = validate_batch(batch_dir, label_map, report_dir=...)
    if verdict.status == "quarantined":
        quarantine(batch_dir, quarantine_dir, verdict.report)   # kept with its report, not trained on
    elif verdict.status == "rejected":
        ...  # verdict.reason says the class is outside the model's label map: a new class needs a new model

The real checks are the project's Great Expectations suites (:mod:`detectops.quality.suites`),
run with the *training* purpose: every class of the model's label map needs boxes (configurable
through ``purpose``). ``engine="provider"`` (the default) runs each table's suite through the GX
Airflow provider's ``GXValidateDataFrameOperator``, as the DAG's tasks do; ``engine="gx"`` runs
the same suites with GX directly (:func:`~detectops.quality.validate.validate_dataset`). A batch
that is not even a COCO dataset is quarantined too, with the parse error as its report. Nothing
raises for bad data: one bad batch must not stop the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from detectops.data.coco import CocoDataset, DatasetFormatError
from detectops.fsutil import TEMP_PATTERNS, atomic_write_text, staged_dir
from detectops.quality.purpose import Purpose, resolve_purpose

ACCEPTED, QUARANTINED, REJECTED = "accepted", "quarantined", "rejected"
REPORT_FILE = "report.json"


@dataclass
class BatchVerdict:
    """What level 1 does with one batch, why, and the validation report behind it."""

    accepted: bool
    status: Literal["accepted", "quarantined", "rejected"]
    reason: str
    report: dict[str, Any] = field(default_factory=dict)
    batch: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BatchVerdict":
        return cls(accepted=bool(d["accepted"]), status=d["status"], reason=str(d["reason"]),
                   report=dict(d.get("report", {})), batch=str(d.get("batch", "")))


def classes_outside(dataset: CocoDataset, label_map: Mapping[int, str]) -> list[str]:
    """Problems of the batch's boxes against the model's classes: unknown ids, or a known id
    whose name in the batch differs (the batch means another class by it)."""
    declared = {}
    for c in dataset.categories:
        try:
            declared[int(c["id"])] = str(c.get("name", ""))
        except (KeyError, TypeError, ValueError):
            continue  # malformed categories are the schema check's business
    used = set()
    for a in dataset.annotations:
        try:
            used.add(int(a["category_id"]))
        except (KeyError, TypeError, ValueError):
            continue
    problems = []
    for cid in sorted(used):
        name = declared.get(cid, "?")
        if cid not in label_map:
            problems.append(f"class {cid} ({name!r}) is not in the model's label map")
        elif cid in declared and declared[cid] != label_map[cid]:
            problems.append(f"class {cid} is {declared[cid]!r} in the batch but {label_map[cid]!r} in the model's label map")
    return problems


def validate_with_provider(batch_dir: str | os.PathLike[str], label_map: Mapping[int, str], *,
                           purpose: Purpose, bounds: Any = None,
                           report_dir: str | os.PathLike[str] | None = None):
    """Each table's suite through the GX provider's ``GXValidateDataFrameOperator``; a ``ValidationReport``.

    The operator runs here, at task run time, for the reason given in
    :func:`detectops.orchestration.validate_table_with_gx`; the tables are built once and handed
    to the three operators.
    """
    from great_expectations_provider.common.errors import GXValidationFailed
    from great_expectations_provider.operators.validate_dataframe import GXValidateDataFrameOperator

    from detectops.quality.gx_operators import make_expectations, result_format_for
    from detectops.quality.suites import TABLES
    from detectops.quality.tables import dataset_tables
    from detectops.quality.validate import ValidationReport, _plain, failed_expectations

    tables = dataset_tables(batch_dir)
    suites, results = [], {}
    for table in TABLES:
        operator = GXValidateDataFrameOperator(
            task_id=f"gx_batch_{table}", configure_dataframe=lambda t=table: tables[t],
            configure_expectations=make_expectations(table, label_map, bounds, purpose=purpose),
            result_format=result_format_for(table))
        captured = _XComCapture()
        try:
            operator.execute({"ti": captured})
        except GXValidationFailed:
            pass  # the result is in XCom either way
        result = _plain(captured.values["return_value"])
        results[table] = result
        suites.append({"table": table, "success": bool(result["success"]), "rows": int(len(tables[table])),
                       "evaluated": int(result.get("statistics", {}).get("evaluated_expectations", 0)),
                       "failed": failed_expectations(result)})
    report = ValidationReport(success=all(s["success"] for s in suites), dataset=str(batch_dir), suites=suites,
                              statistics={"engine": "provider", "purpose": purpose.to_dict()})
    if report_dir is not None:
        out = Path(report_dir)
        report.path = str(out / "gx_results.json")
        atomic_write_text(out / "gx_results.json", json.dumps(results, indent=1, default=str))
        atomic_write_text(out / "summary.txt", report.summary() + "\n")
        atomic_write_text(out / REPORT_FILE, json.dumps(report.to_dict(), indent=1, default=str))
    return report


class _XComCapture:
    """Stands in for the TaskInstance in the operator's context, keeping what it pushes."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.values[key] = value


def validate_batch(batch_dir: str | os.PathLike[str], label_map: Mapping[Any, str], *,
                   purpose: Purpose | str | Mapping[str, Any] | None = None, bounds: Any = None,
                   report_dir: str | os.PathLike[str] | None = None,
                   engine: Literal["provider", "gx"] = "provider") -> BatchVerdict:
    """Judge one batch for training the model whose classes are ``label_map`` (``{id: name}``).

    ``purpose`` defaults to training ``label_map`` (every class needs boxes); ``bounds`` are
    the suites' :class:`~detectops.quality.suites.Bounds`; ``report_dir`` receives the GX
    results. ``engine``: the GX Airflow provider's operator, or GX directly (same suites).
    """
    from detectops.quality.validate import validate_dataset

    batch_dir = Path(batch_dir)
    label_map = {int(k): str(v) for k, v in label_map.items()}
    try:
        dataset = CocoDataset.load(batch_dir)
    except DatasetFormatError as exc:
        return BatchVerdict(False, QUARANTINED, f"Batch {batch_dir.name} is not a readable COCO dataset: {exc}",
                            {"success": False, "dataset": str(batch_dir), "error": str(exc)}, str(batch_dir))
    outside = classes_outside(dataset, label_map)
    if outside:
        known = ", ".join(f"{k}: {v}" for k, v in sorted(label_map.items()))
        reason = (f"Batch {batch_dir.name} is rejected: {'; '.join(outside)} ({{{known}}}). A new class needs a "
                  "new model: level 1 retrains a model on its own classes only. Register a new model with a label "
                  "map that includes the class and land the batch for it, or remove those boxes from the batch.")
        return BatchVerdict(False, REJECTED, reason, {"success": False, "dataset": str(batch_dir),
                                                      "classes_outside_label_map": outside}, str(batch_dir))
    purpose = resolve_purpose(purpose or Purpose.training(label_map), label_map)
    if engine == "provider":
        report = validate_with_provider(batch_dir, label_map, purpose=purpose, bounds=bounds, report_dir=report_dir)
    else:
        report = validate_dataset(batch_dir, label_map=label_map, bounds=bounds, purpose=purpose,
                                  report_dir=report_dir)
    if report.success:
        return BatchVerdict(True, ACCEPTED, report.summary(), report.to_dict(), str(batch_dir))
    return BatchVerdict(False, QUARANTINED, report.summary() + "\nThe batch is quarantined with this report; fix it "
                        "and land it again.", report.to_dict(), str(batch_dir))


def _tree_sha256(root: Path) -> str:
    """Hash of every file's relative path and bytes (works for batches too broken to load)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix().encode()
        h.update(b"%d\0" % len(rel) + rel + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def quarantine(batch: str | os.PathLike[str], quarantine_dir: str | os.PathLike[str],
               report: Mapping[str, Any] | Any) -> Path:
    """Copy ``batch`` to ``<quarantine_dir>/<name>-<hash12>/batch/`` with ``report.json`` beside it.

    Nothing is lost: the batch is copied whole, the same batch quarantined twice lands in the
    same place, and the original is left for the caller to remove. Returns the new directory.
    """
    batch = Path(batch)
    if hasattr(report, "to_dict"):
        report = report.to_dict()
    final = Path(quarantine_dir) / f"{batch.name}-{_tree_sha256(batch)[:12]}"
    final.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(final, replace=True) as tmp:
        shutil.copytree(batch, tmp / "batch", ignore=shutil.ignore_patterns(*TEMP_PATTERNS))
        atomic_write_text(tmp / REPORT_FILE, json.dumps(report, indent=1, default=str))
    return final


__all__ = ["ACCEPTED", "QUARANTINED", "REJECTED", "BatchVerdict", "validate_batch", "validate_with_provider",
           "quarantine", "classes_outside"]
