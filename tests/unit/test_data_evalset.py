"""The committed real evaluation set: loads, ids consistent, boxes inside real image sizes."""

from __future__ import annotations

import pytest
from PIL import Image

from detectops.data import CocoDataset, dataset_hash, real_eval_set

COCO_NAMES = {1: "person", 2: "bicycle", 4: "motorcycle", 8: "truck", 16: "bird", 17: "cat", 18: "dog",
              19: "horse", 24: "zebra", 25: "giraffe", 38: "kite", 47: "cup", 50: "spoon"}


def test_real_eval_set_is_consistent():
    root = real_eval_set()
    ds = CocoDataset.load(root)
    assert len(ds.images) >= 6 and len(ds.annotations) >= len(ds.images)
    assert len({im["id"] for im in ds.images}) == len(ds.images)
    assert len({a["id"] for a in ds.annotations}) == len(ds.annotations)
    assert {c["id"]: c["name"] for c in ds.categories}.items() <= COCO_NAMES.items()  # COCO ids
    sizes = {}
    for im in ds.images:
        with Image.open(ds.image_path(im)) as f:
            assert f.format == "JPEG"
            f.load()  # decodes: no truncated file
            assert f.size == (im["width"], im["height"]), im["file_name"]
        sizes[im["id"]] = f.size
    used = set()
    for a in ds.annotations:
        w, h = sizes[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        assert x >= 0 and y >= 0 and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h, a
        assert a["category_id"] in ds.label_map()
        used.add(a["image_id"])
    assert used == set(sizes), "every image has at least one object"
    assert (root / "LICENSES.md").is_file()
    assert len(dataset_hash(root)) == 64


@pytest.mark.platform
def test_real_eval_set_passes_gx_validation():
    from detectops.quality import validate_dataset

    report = validate_dataset(real_eval_set())
    assert report.success, report.summary()
