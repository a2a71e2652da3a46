"""Dataset versions: accepted batches merged into immutable versions named by content hash.

A version is its parent version plus new batches::

    <root>/<sha256>/
        train/  val/  test/     each a COCO dataset directory (annotations.json + images/)
        manifest.json           parent, batches, every image's split and batch, counts

- **Stable splits.** Every image goes to train, val or test by a hash of its *bytes*
  (:func:`split_of`), so an image never changes split, whichever batch or version carries it;
  the test split of a version is the union of its batches' test parts.
- **Content-addressed.** Images are stored as ``<sha256[:16]>.<ext>`` (two batches both
  holding ``000001.jpg`` never collide; the same image landed twice is stored once, in the
  batch that brought it first). The version's name is :func:`version_hash` of its content.
- **Immutable.** A version directory is written once, by rename; building the same version
  again is a no-op, and a directory whose content no longer matches its name is an error,
  never overwritten.
- **Unchanged data.** When the batches bring no image the parent lacks, :func:`build_version`
  returns the parent with ``unchanged=True``: nothing to retrain.
- **Per-batch slices.** Every image record carries ``"batch"`` (the batch's content hash), in
  the split's ``annotations.json`` and the manifest; :meth:`DatasetVersion.image_batches`
  gives evaluation the ``{file_name: batch}`` mapping it slices by.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from detectops.data.coco import IMAGES_DIR, CocoDataset
from detectops.data.hashing import canonical_annotations, dataset_hash
from detectops.errors import DataValidationError, DetectOpsError
from detectops.fsutil import atomic_write_text, publish, scratch_dir

SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST_FILE = "manifest.json"
FORMAT = "detectops-dataset-version-v1"
#: Fractions of train and val; the rest is test. Part of the format: changing them would move images.
SPLIT_FRACTIONS: tuple[float, float] = (0.8, 0.1)
_IMAGE_NAME_CHARS = 16


class ImmutableVersionError(DetectOpsError):
    """A dataset version directory does not match its name: versions are never rewritten."""


def split_of(image_bytes_sha256: str, fractions: tuple[float, float] = SPLIT_FRACTIONS) -> str:
    """``train`` / ``val`` / ``test`` from an image's content hash: the same bytes, the same split."""
    u = int(image_bytes_sha256[:15], 16) / float(16 ** 15)  # 60 bits: uniform in [0, 1)
    if u < fractions[0]:
        return "train"
    return "val" if u < fractions[0] + fractions[1] else "test"


@dataclass
class DatasetVersion:
    """One dataset version on disk (what crosses XCom; the data stays in ``path``)."""

    sha256: str
    path: str
    parent: str | None
    #: Content hashes of the version's batches, oldest first (the parent's first).
    batches: list[str] = field(default_factory=list)
    #: ``{split: {"images": n, "annotations": m}}`` plus ``"total"``.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: True when :func:`build_version` found no new image and returned the parent.
    unchanged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetVersion":
        return cls(sha256=str(d["sha256"]), path=str(d["path"]), parent=d.get("parent"),
                   batches=list(d.get("batches", [])), counts=dict(d.get("counts", {})),
                   unchanged=bool(d.get("unchanged", False)))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "DatasetVersion":
        """The version at ``path`` (reads its manifest; see :func:`verify_version` for a full check)."""
        m = read_manifest(path)
        return cls(sha256=m["sha256"], path=str(Path(path).resolve()), parent=m.get("parent"),
                   batches=[b["id"] for b in m["batches"]], counts=m["counts"])

    def split_dir(self, split: str) -> Path:
        if split not in SPLITS:
            raise DetectOpsError(f"Unknown split {split!r}; choose from {list(SPLITS)}.")
        return Path(self.path) / split

    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.path)

    def image_batches(self, split: str = "test") -> dict[str, str]:
        """``{file_name: batch hash}`` of one split (for per-batch evaluation slices)."""
        return {im["file_name"]: im["batch"] for im in self.manifest()["images"] if im["split"] == split}


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path) / MANIFEST_FILE
    try:
        m = json.loads(p.read_text())
    except FileNotFoundError:
        raise DetectOpsError(f"{p} is missing: {path} is not a dataset version "
                             "(a directory made by build_version, with train/ val/ test/ and a manifest).") from None
    except ValueError as exc:
        raise ImmutableVersionError(f"{p} is not valid JSON ({exc}): the version is damaged.") from exc
    if m.get("format") != FORMAT:
        raise DetectOpsError(f"{p} has format {m.get('format')!r}, expected {FORMAT!r}.")
    return m


def _hash_from_parts(manifest: dict[str, Any], split_hashes: dict[str, str]) -> str:
    """The version name: its splits' content hashes, every image's split and batch, its batches.

    The parent and the counts are left out: they follow from the content (two lineages that
    reach the same images, splits and batches name the same data).
    """
    doc = {"format": FORMAT, "splits": split_hashes, "batches": [b["id"] for b in manifest["batches"]],
           "images": [[im["sha256"], im["split"], im["batch"]] for im in manifest["images"]],
           "categories": manifest["categories"]}
    return hashlib.sha256(canonical_annotations(doc)).hexdigest()


def version_hash(path: str | os.PathLike[str]) -> str:
    """Recompute a version directory's content hash from its files (reads every image)."""
    m = read_manifest(path)
    return _hash_from_parts(m, {s: dataset_hash(Path(path) / s) for s in SPLITS})


def verify_version(path: str | os.PathLike[str]) -> "DatasetVersion":
    """Load a version after checking that its content still hashes to its name."""
    path = Path(path)
    m = read_manifest(path)
    actual = version_hash(path)
    if actual != m["sha256"] or path.name != m["sha256"]:
        raise ImmutableVersionError(
            f"Dataset version {path} hashes to {actual} but is named {path.name} (manifest: {m['sha256']}): "
            "its files were changed after it was written. Versions are immutable: build a new version "
            "from the parent and the batches instead, and remove this directory.")
    return DatasetVersion.load(path)


# ----------------------------------------------------------------------------- building
def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link an image of an (immutable) version into the next one; copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _merge_categories(into: dict[int, dict[str, Any]], categories: Iterable[dict[str, Any]], where: str) -> None:
    for c in categories:
        cid = int(c["id"])
        if cid in into and into[cid]["name"] != c["name"]:
            raise DataValidationError(
                f"{where} calls category {cid} {c['name']!r}, but earlier data calls it {into[cid]['name']!r}. "
                "One id must mean one class in every batch: fix the batch's categories and land it again.")
        into.setdefault(cid, {"id": cid, "name": str(c["name"]), "supercategory": c.get("supercategory", "")})


def build_version(parent: str | os.PathLike[str] | None, batches: list[str | os.PathLike[str]],
                  root: str | os.PathLike[str], *,
                  fractions: tuple[float, float] = SPLIT_FRACTIONS) -> DatasetVersion:
    """Merge ``batches`` (COCO dataset dirs, in landing order) onto ``parent`` under ``root``.

    Returns the new :class:`DatasetVersion` at ``<root>/<sha256>``; the parent itself (with
    ``unchanged=True``) when no batch brings an image it lacks. Batches already in the parent
    (by content hash) are skipped, and so are images already seen (by content hash).
    """
    root = Path(root)
    parent_version = verify_version(parent) if parent is not None else None
    parent_manifest = parent_version.manifest() if parent_version else None

    batch_records: list[dict[str, Any]] = list(parent_manifest["batches"]) if parent_manifest else []
    seen_batches = {b["id"] for b in batch_records}
    image_records: list[dict[str, Any]] = [dict(im) for im in parent_manifest["images"]] if parent_manifest else []
    seen_images = {im["sha256"] for im in image_records}
    categories: dict[int, dict[str, Any]] = {}
    if parent_manifest:
        _merge_categories(categories, parent_manifest["categories"], f"parent version {parent}")

    # New images: (record, source path, annotations) in landing order.
    new: list[tuple[dict[str, Any], Path, list[dict[str, Any]]]] = []
    for batch_dir in map(Path, batches):
        batch_id = dataset_hash(batch_dir)
        if batch_id in seen_batches:
            continue  # landed twice: ingested once
        seen_batches.add(batch_id)
        ds = CocoDataset.load(batch_dir)
        _merge_categories(categories, ds.categories, f"batch {batch_dir}")
        by_image = ds.annotations_by_image()
        added = 0
        for im in sorted(ds.images, key=lambda x: int(x["id"])):
            src = ds.image_path(im)
            sha = hashlib.sha256(src.read_bytes()).hexdigest()
            if sha in seen_images:
                continue  # the same picture again: it keeps its first batch and its split
            seen_images.add(sha)
            added += 1
            ext = Path(str(im["file_name"])).suffix.lower()
            record = {"sha256": sha, "file_name": f"{sha[:_IMAGE_NAME_CHARS]}{ext}", "split": split_of(sha, fractions),
                      "batch": batch_id, "source_file_name": str(im["file_name"]),
                      "width": int(im["width"]), "height": int(im["height"])}
            new.append((record, src, by_image.get(int(im["id"]), [])))
        batch_records.append({"id": batch_id, "name": batch_dir.name, "num_images": len(ds.images),
                              "new_images": added})

    if not new:
        if parent_version is None:
            raise DataValidationError(
                "No images to version: the batches are empty (or the list is). Land a batch with images first.")
        return DatasetVersion(**{**parent_version.to_dict(), "unchanged": True})

    root.mkdir(parents=True, exist_ok=True)
    with scratch_dir(root / "version") as tmp:
        manifest = _write_splits(tmp, parent_version, image_records, new, categories)
        manifest.update(format=FORMAT, parent=parent_version.sha256 if parent_version else None,
                        batches=batch_records, split_fractions=list(fractions))
        sha = _hash_from_parts(manifest, {s: dataset_hash(tmp / s) for s in SPLITS})
        manifest["sha256"] = sha
        atomic_write_text(tmp / MANIFEST_FILE, json.dumps(_ordered(manifest), indent=1))
        final = root / sha
        if final.exists():
            verify_version(final)  # the same version built before: a no-op, unless it was tampered with
        else:
            publish(tmp, final, replace=False)
    return DatasetVersion.load(final)


def _write_splits(tmp: Path, parent: DatasetVersion | None, parent_images: list[dict[str, Any]],
                  new: list[tuple[dict[str, Any], Path, list[dict[str, Any]]]],
                  categories: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Write train/val/test under ``tmp``; return the manifest's images, categories and counts."""
    cats = [categories[c] for c in sorted(categories)]
    splits = {s: CocoDataset(root=tmp / s, categories=cats, info={"description": "DetectOps dataset version",
                                                                  "split": s}) for s in SPLITS}
    for s in SPLITS:
        (tmp / s / IMAGES_DIR).mkdir(parents=True)
    image_id = ann_id = 0
    images: list[dict[str, Any]] = []

    def add(record: dict[str, Any], src: Path, annotations: list[dict[str, Any]]) -> None:
        nonlocal image_id, ann_id
        image_id += 1
        ds = splits[record["split"]]
        _link_or_copy(src, ds.images_dir / record["file_name"])
        ds.images.append({"id": image_id, "file_name": record["file_name"], "width": record["width"],
                          "height": record["height"], "batch": record["batch"]})
        for a in annotations:
            ann_id += 1
            ds.annotations.append({**a, "id": ann_id, "image_id": image_id})
        images.append({**record, "image_id": image_id})

    if parent is not None:  # the parent's images keep their order, split, batch and annotations
        parent_splits = {s: CocoDataset.load(parent.split_dir(s)) for s in SPLITS}
        by_name = {s: {im["file_name"]: im for im in ds.images} for s, ds in parent_splits.items()}
        boxes = {s: ds.annotations_by_image() for s, ds in parent_splits.items()}
        for rec in parent_images:
            s = rec["split"]
            pim = by_name[s][rec["file_name"]]
            add(rec, parent_splits[s].image_path(pim), boxes[s].get(int(pim["id"]), []))
    for record, src, annotations in new:
        add(record, src, annotations)

    counts: dict[str, dict[str, int]] = {}
    for s, ds in splits.items():
        ds.save()
        counts[s] = {"images": len(ds.images), "annotations": len(ds.annotations)}
    counts["total"] = {k: sum(counts[s][k] for s in SPLITS) for k in ("images", "annotations")}
    return {"images": images, "categories": cats, "counts": counts}


def _ordered(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ["format", "sha256", "parent", "split_fractions", "counts", "categories", "batches", "images"]
    return {k: manifest[k] for k in keys}


def list_versions(root: str | os.PathLike[str]) -> list[DatasetVersion]:
    """The versions under ``root``, oldest lineage first (parents before children)."""
    root = Path(root)
    found = {}
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST_FILE).is_file():
                found[d.name] = DatasetVersion.load(d)
    ordered: list[DatasetVersion] = []

    def visit(v: DatasetVersion) -> None:
        if v in ordered:
            return
        if v.parent in found:
            visit(found[v.parent])
        ordered.append(v)

    for v in found.values():
        visit(v)
    return ordered


__all__ = ["SPLITS", "MANIFEST_FILE", "SPLIT_FRACTIONS", "DatasetVersion", "ImmutableVersionError", "split_of",
           "build_version", "version_hash", "verify_version", "read_manifest", "list_versions"]
