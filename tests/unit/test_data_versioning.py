"""Dataset versions: stable content-hash splits, idempotent ingestion, immutability, lineage."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from detectops.data import CocoDataset, SyntheticSpec, dataset_hash, generate_synthetic
from detectops.data.versioning import (
    SPLITS, DatasetVersion, ImmutableVersionError, build_version, list_versions, split_of, verify_version,
    version_hash,
)
from detectops.errors import DataValidationError


def _batch(root, seed, n=12, **kw):
    spec = SyntheticSpec(num_images=n, image_size=(32, 32), objects_per_image=(1, 2),
                         object_size=(0.3, 0.5), seed=seed, **kw)
    generate_synthetic(root, spec)
    return root


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    base = tmp_path_factory.mktemp("batches")
    return [_batch(base / f"b{i}", seed=100 + i) for i in range(3)]


def _image_sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _split_by_image(version: DatasetVersion) -> dict[str, str]:
    """``{image content hash: split}`` read from the split directories themselves."""
    out = {}
    for s in SPLITS:
        ds = CocoDataset.load(version.split_dir(s))
        for im in ds.images:
            out[_image_sha(ds.image_path(im))] = s
    return out


def test_split_of_is_a_fixed_function_of_the_content():
    assert split_of("0" * 64) == "train"          # u = 0
    assert split_of("c" + "f" * 63) == "val"       # u = 0.8125
    assert split_of("f" * 64) == "test"            # u ~ 1
    fractions = [split_of(hashlib.sha256(str(i).encode()).hexdigest()) for i in range(4000)]
    assert abs(fractions.count("train") / 4000 - 0.8) < 0.03
    assert abs(fractions.count("test") / 4000 - 0.1) < 0.02


def test_first_version_layout_manifest_and_batch_ids(batches, tmp_path):
    v = build_version(None, [batches[0]], tmp_path / "versions")
    assert v.parent is None and not v.unchanged
    assert v.path == str((tmp_path / "versions" / v.sha256).resolve())
    assert v.batches == [dataset_hash(batches[0])]
    assert v.counts["total"]["images"] == 12
    assert v.counts["total"]["annotations"] == len(CocoDataset.load(batches[0]).annotations)
    for s in SPLITS:  # each split is a COCO dataset dir whose images say which batch they came from
        ds = CocoDataset.load(v.split_dir(s))
        assert {im["batch"] for im in ds.images} <= {v.batches[0]}
        assert all(ds.image_path(im).is_file() for im in ds.images)
    manifest = v.manifest()
    assert {im["split"] for im in manifest["images"]} <= set(SPLITS)
    assert all(im["split"] == split_of(im["sha256"]) for im in manifest["images"])
    assert v.image_batches("test") == {im["file_name"]: v.batches[0]
                                       for im in manifest["images"] if im["split"] == "test"}
    assert version_hash(v.path) == v.sha256
    assert DatasetVersion.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_splits_are_stable_across_versions_and_test_is_the_union(batches, tmp_path):
    root = tmp_path / "versions"
    v1 = build_version(None, [batches[0]], root)
    v2 = build_version(v1.path, [batches[1]], root)
    assert v2.parent == v1.sha256 and v2.batches == [dataset_hash(batches[0]), dataset_hash(batches[1])]
    s1, s2 = _split_by_image(v1), _split_by_image(v2)
    assert all(s2[sha] == split for sha, split in s1.items())  # nothing moved
    # The same batch versioned alone puts its images in the same splits as inside v2.
    alone = _split_by_image(build_version(None, [batches[1]], tmp_path / "other"))
    assert all(s2[sha] == split for sha, split in alone.items())
    test_union = {sha for sha, s in {**s1, **alone}.items() if s == "test"}
    assert {sha for sha, s in s2.items() if s == "test"} == test_union
    assert v2.counts["total"]["images"] == 24
    assert [v.sha256 for v in list_versions(root)] == [v1.sha256, v2.sha256]


def test_ingestion_is_idempotent_by_content_hash(batches, tmp_path):
    root = tmp_path / "versions"
    v1 = build_version(None, [batches[0]], root)
    # The same batch again (also as a copy elsewhere, also twice in one call): nothing new.
    copy = tmp_path / "copy_of_b0"
    shutil.copytree(batches[0], copy)
    again = build_version(v1.path, [copy, batches[0]], root)
    assert again.unchanged and again.sha256 == v1.sha256 and again.path == v1.path
    # Twice in one call plus a new batch: each batch once.
    v2 = build_version(v1.path, [batches[1], batches[1], copy], root)
    assert v2.batches == [dataset_hash(batches[0]), dataset_hash(batches[1])]
    # A batch whose images are all known already (re-exported with other ids) adds nothing.
    ds = CocoDataset.load(batches[1])
    re_export = tmp_path / "re_export"
    shutil.copytree(batches[1], re_export)
    ds.info["note"] = "re-exported"
    ds.save(re_export)
    assert build_version(v2.path, [re_export], root).unchanged


def test_versions_are_immutable(batches, tmp_path):
    root = tmp_path / "versions"
    v1 = build_version(None, [batches[0]], root)
    stamp = (root / v1.sha256 / "manifest.json").stat().st_mtime_ns
    assert build_version(None, [batches[0]], root) == v1  # the same version twice: a no-op
    assert (root / v1.sha256 / "manifest.json").stat().st_mtime_ns == stamp

    # Writing into an existing version is detected: it is never used or overwritten.
    ds = CocoDataset.load(v1.split_dir("train"))
    ds.annotations[0]["bbox"] = [0.0, 0.0, 1.0, 1.0]
    ds.save()
    with pytest.raises(ImmutableVersionError, match="immutable"):
        verify_version(v1.path)
    with pytest.raises(ImmutableVersionError):
        build_version(None, [batches[0]], root)
    with pytest.raises(ImmutableVersionError):
        build_version(v1.path, [batches[1]], root)


def test_parent_keeps_its_data_and_errors_are_clear(batches, tmp_path):
    root = tmp_path / "versions"
    v1 = build_version(None, [batches[0]], root)
    v2 = build_version(v1.path, [batches[2]], root)
    assert version_hash(v1.path) == v1.sha256  # building a child left the parent as it was
    assert DatasetVersion.load(v2.path).parent == v1.sha256

    empty = _batch(tmp_path / "empty", seed=1, n=0)
    with pytest.raises(DataValidationError, match="No images"):
        build_version(None, [empty], root)

    renamed = tmp_path / "renamed"
    shutil.copytree(batches[1], renamed)
    ds = CocoDataset.load(renamed)
    ds.categories[0]["name"] = "blob"
    ds.save()
    with pytest.raises(DataValidationError, match="One id must mean one class"):
        build_version(v1.path, [renamed], root)


def test_cli_generate_data_knobs_and_versions(tmp_path, capsys):
    from detectops.cli import main
    from detectops.quality.skew import image_brightness

    def printed():
        return json.loads(capsys.readouterr().out)

    assert main(["generate-data", str(tmp_path / "plain"), "--images", "3", "--seed", "4"]) == 0
    plain = printed()
    # No knob given: exactly the dataset the defaults make (existing outputs unchanged).
    assert plain["sha256"] == generate_synthetic(tmp_path / "ref", SyntheticSpec(num_images=3, seed=4)).sha256
    assert main(["generate-data", str(tmp_path / "dark"), "--images", "3", "--seed", "4", "--brightness", "0.5",
                 "--noise", "0.1", "--object-size", "0.05", "0.1", "--image-size", "64", "48"]) == 0
    assert printed()["num_images"] == 3
    spec = CocoDataset.load(tmp_path / "dark").info["synthetic_spec"]
    assert (spec["brightness"], spec["noise"], spec["object_size"], spec["image_size"]) == (0.5, 0.1, [0.05, 0.1], [64, 48])
    dark, bright = CocoDataset.load(tmp_path / "dark"), CocoDataset.load(tmp_path / "plain")
    assert image_brightness(dark.image_path(dark.images[0])) < 0.7 * image_brightness(bright.image_path(bright.images[0]))

    assert main(["versions", str(tmp_path / "versions"), "--add", str(tmp_path / "plain")]) == 0
    made = printed()
    assert main(["versions", str(tmp_path / "versions")]) == 0
    assert [v["sha256"] for v in printed()] == [made["sha256"]]
