"""The evaluation budget: a stratified, seeded sample of a test split (``detectops.data.sampling``)."""

from __future__ import annotations

import json

import pytest

from detectops.data.coco import CocoDataset
from detectops.data.sampling import quotas, sample_split


def _split(root, per_batch: dict[str, int]):
    """A COCO split whose images belong to batches; two boxes per image; tiny image files."""
    images, annotations, strata = [], [], {}
    (root / "images").mkdir(parents=True)
    for batch, n in per_batch.items():
        for i in range(n):
            image_id = len(images) + 1
            name = f"{batch}-{i:04d}.jpg"
            (root / "images" / name).write_bytes(f"pixels of {name}".encode())
            images.append({"id": image_id, "file_name": name, "width": 64, "height": 48})
            annotations += [{"id": 2 * image_id + k, "image_id": image_id, "category_id": 1, "bbox": [1, 1, 8, 8],
                             "area": 64, "iscrowd": 0} for k in range(2)]
            strata[name] = batch
    CocoDataset(root=root, images=images, annotations=annotations,
                categories=[{"id": 1, "name": "circle"}]).save(root)
    return strata


@pytest.mark.parametrize("sizes,budget", [
    ({"a": 600, "b": 300}, 400), ({"a": 5, "b": 3, "c": 1}, 4), ({"a": 10, "b": 10, "c": 10}, 2),
    ({"a": 97, "b": 2, "c": 1}, 10), ({"a": 3}, 10),
])
def test_quotas_keep_each_strata_share_and_the_budget(sizes, budget):
    q = quotas(sizes, budget)
    total = sum(sizes.values())
    assert sum(q.values()) == min(budget, total)
    assert all(0 <= q[s] <= sizes[s] for s in sizes)
    if budget >= len(sizes):  # every stratum is seen
        assert all(q[s] >= 1 for s in sizes)
    for s in sizes:  # within one image of its proportional share (plus the one every stratum gets)
        assert abs(q[s] - sizes[s] * min(budget, total) / total) <= 2


def test_a_large_split_is_sampled_by_batch_and_the_sample_is_a_split(tmp_path):
    strata = _split(tmp_path / "test", {"first": 600, "shifted": 300})
    out = sample_split(tmp_path / "test", 90, tmp_path / "sample", strata=strata)
    assert out == tmp_path / "sample"
    sample = CocoDataset.load(out)
    names = [im["file_name"] for im in sample.images]
    assert len(names) == 90 == len(set(names))
    assert sum(n.startswith("first-") for n in names) == 60 and sum(n.startswith("shifted-") for n in names) == 30
    ids = {im["id"] for im in sample.images}
    assert {a["image_id"] for a in sample.annotations} == ids and len(sample.annotations) == 2 * 90
    for im in sample.images:  # each file is the split's own image
        assert sample.image_path(im).read_bytes() == f"pixels of {im['file_name']}".encode()
    assert sample.info["sample_of"] == 900


def test_the_same_budget_and_seed_give_the_same_sample_and_a_retry_keeps_it(tmp_path):
    strata = _split(tmp_path / "test", {"a": 50, "b": 50})
    first = json.loads((sample_split(tmp_path / "test", 20, tmp_path / "s1", strata=strata) / "annotations.json").read_text())
    again = sample_split(tmp_path / "test", 20, tmp_path / "s1", strata=strata)
    assert json.loads((again / "annotations.json").read_text()) == first
    other = CocoDataset.load(sample_split(tmp_path / "test", 20, tmp_path / "s2", strata=strata, seed=1))
    assert [im["id"] for im in other.images] != [im["id"] for im in first["images"]]


def test_a_split_within_the_budget_or_no_budget_is_used_as_it_is(tmp_path):
    strata = _split(tmp_path / "test", {"a": 10})
    assert sample_split(tmp_path / "test", 10, tmp_path / "s", strata=strata) == tmp_path / "test"
    assert sample_split(tmp_path / "test", 0, tmp_path / "s", strata=strata) == tmp_path / "test"
    assert not (tmp_path / "s").exists()


def test_images_no_batch_names_form_a_stratum_of_their_own(tmp_path):
    strata = _split(tmp_path / "test", {"a": 40, "b": 40})
    known = {k: v for k, v in strata.items() if v == "a"}
    sample = CocoDataset.load(sample_split(tmp_path / "test", 10, tmp_path / "s", strata=known))
    assert sum(im["file_name"].startswith("b-") for im in sample.images) == 5
