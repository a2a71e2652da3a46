"""Level 1's check of each landed batch: accepted, quarantined (schema problems) or rejected (new class).

    verdict = validate_batch(batch_dir, label_map, report_dir=...)
    if verdict.status == "quarantined":
        quarantine(batch_dir, quarantine_dir, verdict.report)   # kept with its report, not trained on
    elif verdict.status == "rejected":
        ...  # verdict.reason says the class is outside the model's label map: a new class needs a new model

The real checks are the project's Great Expectations suites (:mod:`detectops.quality.suites`),
run with the *training* purpose: every class of the model's label map needs boxes (configurable
through ``purpose``). A batch that is not even a COCO dataset is quarantined too, with the
parse error as its report. Nothing raises for bad data: one bad batch must not stop the others.
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


def validate_batch(batch_dir: str | os.PathLike[str], label_map: Mapping[Any, str], *,
                   purpose: Purpose | str | Mapping[str, Any] | None = None, bounds: Any = None,
                   report_dir: str | os.PathLike[str] | None = None) -> BatchVerdict:
    """Judge one batch for training the model whose classes are ``label_map`` (``{id: name}``).

    ``purpose`` defaults to training ``label_map`` (every class needs boxes); ``bounds`` and
    ``report_dir`` are passed to :func:`~detectops.quality.validate.validate_dataset`.
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
    report = validate_dataset(batch_dir, label_map=label_map, bounds=bounds, purpose=purpose, report_dir=report_dir)
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


__all__ = ["ACCEPTED", "QUARANTINED", "REJECTED", "BatchVerdict", "validate_batch", "quarantine", "classes_outside"]
