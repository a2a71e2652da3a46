"""Where a batch's images are, their ids, and the content hash that names the batch.

An input is a local directory or a ``runs:/<run id>/batch`` URI of the shared data store
(:mod:`detectops.data.store`). A directory is either a COCO dataset (``annotations.json`` +
``images/``, e.g. a labelled batch) or just image files (any depth; hidden files ignored).

An *unlabelled batch* is stored like a labelled one, as a COCO directory whose
``annotations.json`` lists the images (``id``, ``file_name``) with no annotations and no
categories. So the store's content hash (:func:`detectops.data.hashing.dataset_hash`) names it,
a pod fetches it with :func:`detectops.data.store.fetch_dir` (hash-checked), and image ids are
the same wherever it is scored: a plain directory's files get ids 1..N in sorted order, which
is what :func:`stage_unlabelled` writes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from detectops.data.coco import ANNOTATIONS_FILE, IMAGES_DIR
from detectops.errors import DataValidationError

STORE_PREFIX = "runs:/"


@dataclass(frozen=True)
class BatchInput:
    """A local batch ready to score: ``files`` are ``(image id, file name, path)`` in order."""

    root: Path
    location: str  # what was asked for: a path or a runs:/ URI
    sha256: str
    files: tuple[tuple[int, str, Path], ...]

    def to_dict(self) -> dict[str, object]:
        return {"location": self.location, "path": str(self.root), "sha256": self.sha256, "num_files": len(self.files)}


def is_coco_dir(root: Path) -> bool:
    return (root / ANNOTATIONS_FILE).is_file() and (root / IMAGES_DIR).is_dir()


def _walk_files(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under ``root``, sorted; hidden files and dirs skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith("."):
                out.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(out)


def list_images(root: str | os.PathLike[str]) -> list[tuple[int, str, Path]]:
    """``(image id, file name, path)`` of every file to score under ``root``, in a stable order.

    A COCO directory: the files under ``images/``; ids from ``annotations.json`` where it lists
    the file, the next free ids (sorted order) for files it does not list. A plain directory:
    every file, ids 1..N in sorted order. Every file is returned, images or not: one that does
    not decode is reported per image by the scorer.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataValidationError(f"{root} is not a directory: give a directory of images (or a runs:/ URI "
                                  "of a stored batch).")
    if is_coco_dir(root):
        from detectops.data.coco import load_annotations

        listed = {str(im.get("file_name")): int(im["id"]) for im in load_annotations(root)["images"]
                  if isinstance(im, dict) and "id" in im}
        names = _walk_files(root / IMAGES_DIR)
        next_id = max(listed.values(), default=0) + 1
        out = []
        for name in names:
            if name in listed:
                image_id = listed[name]
            else:
                image_id, next_id = next_id, next_id + 1
            out.append((image_id, name, root / IMAGES_DIR / name))
        return out
    names = [n for n in _walk_files(root) if n != ANNOTATIONS_FILE]
    return [(i, name, root / name) for i, name in enumerate(names, start=1)]


def unlabelled_annotations(names: list[str]) -> dict[str, list]:
    """The ``annotations.json`` of an unlabelled batch of ``names`` (ids 1..N in this order)."""
    return {"images": [{"id": i, "file_name": n} for i, n in enumerate(names, start=1)],
            "annotations": [], "categories": []}


def stage_unlabelled(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, link: bool = False) -> Path:
    """Write the unlabelled-batch layout of the plain image directory ``src`` into the new ``dst``.

    ``link=True`` symlinks the files (enough to hash them); otherwise they are hard-linked,
    or copied across filesystems.
    """
    src, dst = Path(src), Path(dst)
    files = list_images(src)
    if not files:
        raise DataValidationError(f"{src} holds no files to score.")
    (dst / IMAGES_DIR).mkdir(parents=True)
    for _, name, path in files:
        target = dst / IMAGES_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            target.symlink_to(path.resolve())
        else:
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    (dst / ANNOTATIONS_FILE).write_text(json.dumps(unlabelled_annotations([n for _, n, _ in files])))
    return dst


def content_hash(root: str | os.PathLike[str]) -> str:
    """The store's content hash of this batch: of the directory itself if it is COCO, else of its
    unlabelled-batch layout (what :func:`publish` stores)."""
    import tempfile

    from detectops.data.hashing import dataset_hash

    root = Path(root)
    if is_coco_dir(root):
        return dataset_hash(root)
    with tempfile.TemporaryDirectory(prefix="detectops-batch-hash-") as tmp:
        return dataset_hash(stage_unlabelled(root, Path(tmp) / "batch", link=True))


def publish(root: str | os.PathLike[str], *, tracking_uri: str, name: str | None = None) -> dict[str, str]:
    """Store the batch at ``root`` in MLflow's artifact store (once per content); ``{"uri", "sha256"}``."""
    from detectops import settings
    from detectops.data.store import publish_dir
    from detectops.fsutil import scratch_dir

    root = Path(root)
    sha = content_hash(root)
    if is_coco_dir(root):
        uri = publish_dir(root, kind="batch", sha256=sha, tracking_uri=tracking_uri, name=name or root.name)
        return {"uri": uri, "sha256": sha}
    with scratch_dir(settings.work_dir() / "batch-inputs" / sha) as tmp:
        staged = stage_unlabelled(root, tmp / "batch")
        uri = publish_dir(staged, kind="batch", sha256=sha, tracking_uri=tracking_uri, name=name or root.name)
    return {"uri": uri, "sha256": sha}


def resolve(location: str | os.PathLike[str], *, tracking_uri: str | None = None,
            work_dir: str | os.PathLike[str] | None = None) -> BatchInput:
    """A local, hashed, listed batch for ``location`` (a stored batch is fetched and hash-checked)."""
    location = str(location)
    if location.startswith(STORE_PREFIX):
        if not tracking_uri:
            raise DataValidationError(f"{location} is in MLflow's artifact store: give the tracking URI "
                                      "(--tracking-uri or MLFLOW_TRACKING_URI).")
        from detectops import settings
        from detectops.data import store

        info = store.stored_info(location, tracking_uri=tracking_uri)
        root = Path(work_dir or settings.work_dir() / "batch-inputs") / info["sha256"]
        store.fetch_dir(location, root, tracking_uri=tracking_uri)
        sha = info["sha256"]
    else:
        root = Path(location).expanduser()
        if not root.is_dir():
            raise DataValidationError(f"{location} is not a directory of images (nor a runs:/ URI of a stored batch).")
        sha = content_hash(root)
    files = list_images(root)
    if not files:
        raise DataValidationError(f"{location} holds no files to score.")
    return BatchInput(root=root, location=location, sha256=sha, files=tuple(files))
