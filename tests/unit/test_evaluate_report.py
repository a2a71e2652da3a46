"""Report files: the staged output directory and the per-class table."""

from __future__ import annotations

import pytest

from detectops.evaluate.coco_metrics import coco_metrics
from detectops.evaluate.report import write_per_class_csv, write_per_class_markdown
from detectops.fsutil import staged_dir

GT = {
    "images": [{"id": 1, "width": 100, "height": 100}],
    "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "traffic light"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50]}],
}


def test_staged_dir_replaces_output_only_when_complete(tmp_path):
    out = tmp_path / "report"
    with staged_dir(out, replace=True) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with staged_dir(out, replace=True) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash half-way")
    assert (out / "a.txt").read_text() == "first"  # the old report survives a failed run
    with staged_dir(out, replace=True) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]  # a rerun replaces, never mixes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temp or old dirs left


def test_per_class_table_marks_classes_without_ground_truth(tmp_path):
    cm = coco_metrics(GT, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.8}])
    csv_text = write_per_class_csv(cm, tmp_path / "t.csv").read_text().splitlines()
    assert csv_text[0] == "category_id,name,num_gt,ap,ap50"
    assert csv_text[1].startswith("1,person,1,1.0") and csv_text[2] == "2,traffic light,0,,"
    md = write_per_class_markdown(cm, tmp_path / "t.md", title="t").read_text()
    assert "| 2 | traffic light | 0 | n/a | n/a |" in md
    assert "| AP | 1.0000 |" in md
