"""Evaluation artifacts as files: per-class AP table (CSV, Markdown), COCO results, summary JSON.

Everything of one evaluation is written into a fresh temporary directory that replaces the
output directory only when complete (``detectops.fsutil.staged_dir``), so a crash never leaves a
half report.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from detectops.evaluate.coco_metrics import METRIC_DESCRIPTIONS, CocoMetrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def per_class_rows(cm: CocoMetrics) -> list[dict[str, Any]]:
    """One row per category: id, name, ground-truth count, AP, AP50 (``None``: no ground truth)."""
    return [
        {
            "category_id": cid,
            "name": name,
            "num_gt": cm.num_gt.get(name, 0),
            "ap": cm.per_class_ap.get(name),
            "ap50": cm.per_class_ap50.get(name),
        }
        for cid, name in zip(cm.category_ids, cm.category_names)
    ]


def write_per_class_csv(cm: CocoMetrics, path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["category_id", "name", "num_gt", "ap", "ap50"], lineterminator="\n")
    writer.writeheader()
    for row in per_class_rows(cm):
        writer.writerow({k: ("" if v is None else (round(v, 6) if isinstance(v, float) else v)) for k, v in row.items()})
    path.write_text(buf.getvalue())
    return path


def write_per_class_markdown(cm: CocoMetrics, path: Path, *, title: str = "Evaluation") -> Path:
    """The 12 COCO metrics and the per-class table; classes without ground truth are listed last."""
    lines = [f"# {title}", "", "| metric | value | meaning |", "|---|---|---|"]
    lines += [f"| {k} | {_fmt(v)} | {METRIC_DESCRIPTIONS[k]} |" for k, v in cm.metrics.items()]
    lines += ["", "## AP per class", "", "| id | class | GT boxes | AP | AP50 |", "|---:|---|---:|---:|---:|"]
    rows = sorted(per_class_rows(cm), key=lambda r: (r["ap"] is None, -(r["ap"] or 0.0), r["name"]))
    lines += [f"| {r['category_id']} | {r['name']} | {r['num_gt']} | {_fmt(r['ap'])} | {_fmt(r['ap50'])} |" for r in rows]
    lines += ["", "n/a: no ground-truth box of that class in the dataset (pycocotools reports -1)."]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_json(data: Any, path: Path) -> Path:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path
