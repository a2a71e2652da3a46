"""Content hash that versions a dataset.

The hash covers the *meaning* of the annotations (canonical JSON: keys sorted, records
sorted by id, no whitespace) and the exact bytes of every file under ``images/``, taken in
sorted relative-path order — so re-indenting the JSON or copying the folder to another
filesystem (different listing order, mtimes) keeps the hash, while changing one pixel,
one box or adding a stray image changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from detectops.data.coco import ANNOTATIONS_FILE, IMAGES_DIR, load_annotations

_CHUNK = 1 << 20
_HASH_VERSION = b"detectops-dataset-hash-v1\n"


def canonical_annotations(d: dict[str, Any]) -> bytes:
    """Canonical JSON bytes of a COCO dict (records sorted by id where they have one)."""
    doc = dict(d)
    for key in ("images", "annotations", "categories", "licenses"):
        items = doc.get(key)
        if isinstance(items, list) and all(isinstance(x, dict) and "id" in x for x in items):
            doc[key] = sorted(items, key=lambda x: (str(type(x["id"])), x["id"]))
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _image_files(images_dir: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(images_dir):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            out.append((p.relative_to(images_dir).as_posix(), p))
    out.sort(key=lambda t: t[0])
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def dataset_hash(root: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a dataset directory's annotations and image bytes."""
    root = Path(root)
    h = hashlib.sha256(_HASH_VERSION)
    ann = canonical_annotations(load_annotations(root))
    h.update(b"annotations\0%d\0" % len(ann))
    h.update(ann)
    for rel, path in _image_files(root / IMAGES_DIR):
        name = rel.encode()
        # Each entry is framed (name, length, digest) so that no two layouts collide.
        h.update(b"file\0%d\0" % len(name) + name + b"\0" + bytes.fromhex(file_sha256(path)))
    return h.hexdigest()


__all__ = ["dataset_hash", "canonical_annotations", "file_sha256", "ANNOTATIONS_FILE"]
