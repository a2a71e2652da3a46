"""Label maps: ``{category id: name}``, stored as ``assets/label_map.json`` inside a SavedModel.

COCO models speak the 91-id COCO scheme (80 ids used, with gaps such as 12, 26, 29); models
trained on the 80 classes alone (like CenterNet) emit an index 0-79 that must be mapped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from detectops import settings
from detectops.fsutil import atomic_write_text

LABEL_MAP_ASSET = Path("assets") / "label_map.json"

#: The COCO category id of each of the 80 classes, in the usual contiguous order (index 0-79).
COCO80_TO_COCO91: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90,
)


def coco_label_map_path() -> Path:
    return settings.INCLUDE_DIR / "labelmaps" / "coco.json"


@lru_cache(maxsize=1)
def coco_label_map() -> dict[int, str]:
    """The 80 COCO categories, ``{1: "person", ..., 90: "toothbrush"}``."""
    return read_label_map_file(coco_label_map_path())


def read_label_map_file(path: Path) -> dict[int, str]:
    """Read ``{"1": "person", ...}`` into ``{1: "person", ...}``."""
    raw = json.loads(Path(path).read_text())
    return {int(k): str(v) for k, v in raw.items()}


def read_label_map(saved_model_dir: Path) -> dict[int, str]:
    """The label map a SavedModel carries, or ``{}`` when it carries none."""
    path = Path(saved_model_dir) / LABEL_MAP_ASSET
    return read_label_map_file(path) if path.is_file() else {}


def write_label_map(saved_model_dir: Path, label_map: Mapping[int, str]) -> Path:
    """Write ``assets/label_map.json`` (atomically: a reader never sees half a file)."""
    text = json.dumps({str(k): v for k, v in sorted(label_map.items())}, indent=1) + "\n"
    return atomic_write_text(Path(saved_model_dir) / LABEL_MAP_ASSET, text)


def parse_labels_ts(text: str) -> list[str]:
    """Class names, in index order, from @vladmandic/human's ``src/object/labels.ts``.

    The file lists ``{ class: 1, label: 'person' }, ...`` with contiguous classes 1-80; the
    model's class index ``i`` is ``labels[i]``.
    """
    pairs = re.findall(r"class:\s*(\d+)\s*,\s*label:\s*'([^']*)'", text)
    ordered = sorted((int(c), name) for c, name in pairs)
    if [c for c, _ in ordered] != list(range(1, len(ordered) + 1)):
        raise ValueError("labels.ts: expected contiguous classes 1..N")
    return [name for _, name in ordered]


def coco80_label_map(names: list[str]) -> dict[int, str]:
    """Map 80 contiguous class names onto COCO ids, checking they are the COCO classes.

    The check matters: if a package ever reorders its labels, the index -> id mapping would
    silently mislabel every detection.
    """
    if len(names) != len(COCO80_TO_COCO91):
        raise ValueError(f"expected 80 COCO class names, got {len(names)}")
    mapped = dict(zip(COCO80_TO_COCO91, names))
    reference = coco_label_map()
    wrong = {k: (v, reference.get(k)) for k, v in mapped.items() if reference.get(k) != v}
    if wrong:
        raise ValueError(f"class names do not match COCO's (id: (given, expected)): {wrong}")
    return mapped
