"""CocoDataset load/save, DatasetRef, and the content hash."""

from __future__ import annotations

import json
import shutil

import pytest

from detectops.data import CocoDataset, DatasetFormatError, DatasetRef, dataset_hash, generate_synthetic, SyntheticSpec
from detectops.errors import DataValidationError


@pytest.fixture()
def small(tmp_path):
    return generate_synthetic(tmp_path / "ds", SyntheticSpec(num_images=4, image_size=(64, 48), seed=7))


def test_load_save_roundtrip_keeps_unknown_keys(small, tmp_path):
    ds = CocoDataset.load(small.path)
    assert len(ds.images) == 4 and len(ds.annotations) == small.num_annotations
    ds.annotations[0]["custom"] = {"keep": True}
    ds.save()
    again = CocoDataset.load(small.path)
    assert again.annotations[0]["custom"] == {"keep": True}
    assert again.label_map() == {c["id"]: c["name"] for c in again.categories}
    assert all(again.image_path(im).is_file() for im in again.images)
    assert not list((again.root).glob(".annotations.json.*")), "temp file left behind"


def test_pycocotools_index(small):
    coco = CocoDataset.load(small.path).to_pycocotools()
    assert len(coco.getImgIds()) == 4
    assert len(coco.getAnnIds()) == small.num_annotations


def test_missing_dir_and_file_and_bad_json(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        CocoDataset.load(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    with pytest.raises(DatasetFormatError, match="annotations.json is missing"):
        CocoDataset.load(tmp_path / "d")
    (tmp_path / "d" / "annotations.json").write_text('{"images": [')
    with pytest.raises(DatasetFormatError, match="not valid JSON .line 1"):
        CocoDataset.load(tmp_path / "d")
    (tmp_path / "d" / "annotations.json").write_text('{"images": []}')
    with pytest.raises(DataValidationError, match=r"lacks the COCO list\(s\) \['annotations', 'categories'\]"):
        CocoDataset.load(tmp_path / "d")


def test_dataset_ref_roundtrip(small):
    d = small.to_dict()
    assert DatasetRef.from_dict(json.loads(json.dumps(d))) == small
    assert len(small.sha256) == 64


def test_hash_ignores_formatting_and_order_but_sees_content(small, tmp_path):
    h0 = dataset_hash(small.path)
    copy = tmp_path / "copy"
    shutil.copytree(small.path, copy)
    assert dataset_hash(copy) == h0

    d = json.loads((copy / "annotations.json").read_text())
    d["annotations"].reverse()  # record order and whitespace do not matter
    (copy / "annotations.json").write_text(json.dumps(d, indent=4))
    assert dataset_hash(copy) == h0

    d["annotations"][0]["bbox"][0] += 1  # one box moves
    (copy / "annotations.json").write_text(json.dumps(d))
    assert dataset_hash(copy) != h0

    shutil.rmtree(copy)
    shutil.copytree(small.path, copy)
    img = sorted((copy / "images").iterdir())[0]
    data = bytearray(img.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of one image
    img.write_bytes(bytes(data))
    assert dataset_hash(copy) != h0

    shutil.rmtree(copy)
    shutil.copytree(small.path, copy)
    (copy / "images" / "extra.jpg").write_bytes(b"x")  # a stray file is content too
    assert dataset_hash(copy) != h0
