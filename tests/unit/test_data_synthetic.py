"""The synthetic generator: determinism, knobs, valid COCO output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from detectops.data import CocoDataset, SyntheticSpec, generate_synthetic, SYNTHETIC_LABEL_MAP
from detectops.errors import DetectOpsError


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    spec = SyntheticSpec(num_images=5, image_size=(80, 60), seed=11)
    a = generate_synthetic(tmp_path / "a", spec)
    b = generate_synthetic(tmp_path / "b", spec)
    c = generate_synthetic(tmp_path / "c", SyntheticSpec(num_images=5, image_size=(80, 60), seed=12))
    assert a.sha256 == b.sha256
    assert a.sha256 != c.sha256
    for f in (tmp_path / "a" / "images").iterdir():
        assert f.read_bytes() == (tmp_path / "b" / "images" / f.name).read_bytes()


def test_output_is_valid_coco_with_boxes_inside(tmp_path):
    spec = SyntheticSpec(num_images=20, image_size=(100, 70), objects_per_image=(2, 5), seed=1)
    ref = generate_synthetic(tmp_path / "d", spec)
    ds = CocoDataset.load(ref.path)
    assert ref.num_images == 20 and ref.num_annotations == len(ds.annotations) >= 20
    assert ds.label_map() == SYNTHETIC_LABEL_MAP
    ids = {im["id"] for im in ds.images}
    assert len({a["id"] for a in ds.annotations}) == len(ds.annotations)
    for a in ds.annotations:
        x, y, w, h = a["bbox"]
        assert a["image_id"] in ids and a["category_id"] in SYNTHETIC_LABEL_MAP
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 100 and y + h <= 70
        assert 0 < a["area"] <= w * h
    with Image.open(ds.image_path(ds.images[0])) as im:
        assert im.size == (100, 70) and im.format == "JPEG"


def test_knobs_class_mix_brightness_counts(tmp_path):
    only = generate_synthetic(tmp_path / "only", SyntheticSpec(
        num_images=6, image_size=(64, 64), class_weights={"circle": 1.0, "cross": 0.0}, seed=2))
    ds = CocoDataset.load(only.path)
    assert {a["category_id"] for a in ds.annotations} == {1}
    assert ds.label_map() == {1: "circle"}

    fixed = generate_synthetic(tmp_path / "fixed", SyntheticSpec(
        num_images=3, image_size=(128, 128), objects_per_image=(3, 3), object_size=(0.1, 0.2), seed=3))
    assert fixed.num_annotations == 9

    def mean(ref):
        ds = CocoDataset.load(ref.path)
        return np.mean([np.asarray(Image.open(ds.image_path(im))).mean() for im in ds.images])

    dark = generate_synthetic(tmp_path / "dark", SyntheticSpec(num_images=4, image_size=(64, 64), brightness=0.4, seed=4))
    bright = generate_synthetic(tmp_path / "bright", SyntheticSpec(num_images=4, image_size=(64, 64), brightness=1.0, seed=4))
    assert mean(dark) < 0.6 * mean(bright)


def test_reuse_and_replace_are_atomic(tmp_path):
    spec = SyntheticSpec(num_images=2, image_size=(32, 32), seed=5)
    first = generate_synthetic(tmp_path / "d", spec)
    marker = tmp_path / "d" / "images" / "000000.jpg"
    mtime = marker.stat().st_mtime_ns
    assert generate_synthetic(tmp_path / "d", spec) == first
    assert marker.stat().st_mtime_ns == mtime  # reused, not rewritten
    other = generate_synthetic(tmp_path / "d", SyntheticSpec(num_images=3, image_size=(32, 32), seed=5))
    assert other.num_images == 3 and len(list((tmp_path / "d" / "images").iterdir())) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["d"], "temp folders left behind"


def test_invalid_spec_says_what_is_wrong():
    with pytest.raises(DetectOpsError, match="unknown shapes \\['hexagon'\\]"):
        SyntheticSpec(class_weights={"hexagon": 1.0})
    with pytest.raises(DetectOpsError, match="object_size"):
        SyntheticSpec(object_size=(0.5, 0.1))


def test_spec_dict_roundtrip():
    spec = SyntheticSpec(num_images=3, image_size=(50, 40), noise=0.1, seed=9)
    assert SyntheticSpec.from_dict(spec.to_dict()) == spec
