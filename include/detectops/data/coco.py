"""COCO-format datasets on disk: ``<dir>/annotations.json`` + ``<dir>/images/``.

A dataset travels between tasks by reference (its directory) plus a small
:class:`DatasetRef` record; the record's ``sha256`` is the content hash from
:mod:`detectops.data.hashing`, so a model can name exactly the data it saw.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detectops.errors import DataValidationError
from detectops.fsutil import atomic_write_text

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"


class DatasetFormatError(DataValidationError):
    """A dataset directory is missing files or its annotations file is not valid COCO JSON."""


@dataclass(frozen=True)
class DatasetRef:
    """What crosses XCom for a dataset: where it is and which exact content it holds."""

    path: str
    name: str
    sha256: str
    num_images: int
    num_annotations: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetRef":
        return cls(
            path=str(d["path"]),
            name=str(d["name"]),
            sha256=str(d["sha256"]),
            num_images=int(d["num_images"]),
            num_annotations=int(d["num_annotations"]),
        )


@dataclass
class CocoDataset:
    """A COCO detection dataset held as the plain dicts of its JSON file.

    Plain dicts (not one dataclass per record) because every consumer — pycocotools,
    pandas, GX, the trainer — wants exactly the COCO dicts, and unknown keys survive
    a load/save round trip untouched.
    """

    root: Path
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    licenses: list[dict[str, Any]] = field(default_factory=list)

    # ---------------------------------------------------------------- load/save
    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> "CocoDataset":
        """Read ``<root>/annotations.json``; raises :class:`DatasetFormatError` with the fix."""
        root = Path(root)
        d = load_annotations(root)
        return cls(
            root=root,
            images=list(d.get("images", [])),
            annotations=list(d.get("annotations", [])),
            categories=list(d.get("categories", [])),
            info=dict(d.get("info", {})),
            licenses=list(d.get("licenses", [])),
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The COCO JSON document (what ``annotations.json`` holds)."""
        return {
            "info": self.info,
            "licenses": self.licenses,
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }

    def save(self, root: str | os.PathLike[str] | None = None) -> Path:
        """Write ``annotations.json`` atomically (temp file + rename); images are not touched."""
        root = Path(root) if root is not None else self.root
        (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / ANNOTATIONS_FILE, json.dumps(self.to_json_dict(), indent=1))
        self.root = root
        return root

    # ---------------------------------------------------------------- views
    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_DIR

    def image_path(self, image: dict[str, Any]) -> Path:
        return self.images_dir / image["file_name"]

    def label_map(self) -> dict[int, str]:
        """``{category_id: name}`` from the dataset's own ``categories``."""
        return {int(c["id"]): str(c["name"]) for c in self.categories}

    def annotations_by_image(self) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in self.images}
        for a in self.annotations:
            out.setdefault(int(a["image_id"]), []).append(a)
        return out

    def to_pycocotools(self):  # -> pycocotools.coco.COCO
        """An indexed ``pycocotools.coco.COCO`` ground truth without re-reading the file."""
        from pycocotools.coco import COCO  # imported here: only evaluation needs it

        coco = COCO()
        coco.dataset = json.loads(json.dumps(self.to_json_dict()))  # deep copy; COCO mutates
        coco.createIndex()
        return coco

    def ref(self, name: str | None = None) -> DatasetRef:
        """The :class:`DatasetRef` of this dataset (hashes the files on disk)."""
        from detectops.data.hashing import dataset_hash

        return DatasetRef(
            path=str(self.root.resolve()),
            name=name or self.root.name,
            sha256=dataset_hash(self.root),
            num_images=len(self.images),
            num_annotations=len(self.annotations),
        )


def load_annotations(root: Path) -> dict[str, Any]:
    """Parse ``<root>/annotations.json`` into a dict, with errors that say what to do."""
    path = Path(root) / ANNOTATIONS_FILE
    if not Path(root).is_dir():
        raise DatasetFormatError(
            f"Dataset directory {root} does not exist. Pass the directory that holds "
            f"{ANNOTATIONS_FILE} and {IMAGES_DIR}/ (for example one made by generate_synthetic)."
        )
    if not path.is_file():
        raise DatasetFormatError(
            f"{path} is missing. A DetectOps dataset is a directory with a COCO-format "
            f"{ANNOTATIONS_FILE} and an {IMAGES_DIR}/ folder; put the annotations file there."
        )
    try:
        with path.open("rb") as f:
            d = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(
            f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). "
            "Fix or re-export the annotations file."
        ) from e
    except UnicodeDecodeError as e:
        raise DatasetFormatError(f"{path} is not UTF-8 text ({e}). Re-export it as UTF-8 JSON.") from e
    if not isinstance(d, dict):
        raise DatasetFormatError(
            f"{path} holds a JSON {type(d).__name__}, not a COCO object with "
            "'images', 'annotations' and 'categories'. Re-export it in COCO format."
        )
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(d.get(k), list)]
    if missing:
        raise DatasetFormatError(
            f"{path} lacks the COCO list(s) {missing}. A COCO detection file needs "
            "'images', 'annotations' and 'categories' lists (empty lists are allowed)."
        )
    return d
