"""A model version's reference distribution: the features of the data it was trained and evaluated on.

Monitoring compares live traffic with it, feature by feature. It is one table with a row per
image (``monitoring.features`` columns) and a ``split`` column (``train``, ``test``, ``eval``):
- the image features of each split given;
- the output features of the split the model was evaluated on, from the evaluation's own
  detections (COCO results), thresholded at the serving ``min_score`` so they read like
  the prediction log.

It is stored as Parquet in the MLflow run that evaluated the version (``reference/``), and the
version's tag ``detectops.reference`` points at it. Storing it twice is harmless: the path and
the content are the same.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectops.data.coco import CocoDataset
from detectops.monitoring.features import IMAGE_FEATURES, box_sizes, image_features, output_features

REFERENCE_TAG = "detectops.reference"
REFERENCE_DIR = "reference"
REFERENCE_FILE = "features.parquet"
#: A reference keeps at most this many images per split (a stable sample by file name).
MAX_IMAGES_PER_SPLIT = 2000


def _sample(images: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    if len(images) <= limit:
        return images
    # A stable sample: the same dataset always gives the same reference.
    return sorted(images, key=lambda im: hashlib.sha256(str(im["file_name"]).encode()).hexdigest())[:limit]


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (512, 512))  # JPEG: decode at reduced scale, as the service does for big photos
        return np.asarray(im.convert("RGB"))


def reference_rows(dataset_dir: str | Path, split: str, *, detections: Sequence[Mapping[str, Any]] | None = None,
                   min_score: float = 0.3, max_images: int = MAX_IMAGES_PER_SPLIT) -> list[dict[str, Any]]:
    """One row per image of a COCO dataset: image features, plus output features if ``detections`` is given.

    ``detections``: COCO results (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] in
    pixels, ``score``), for example an evaluation's ``coco_results.json``.
    """
    dataset = CocoDataset.load(dataset_dir)
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for d in detections or ():
        if float(d["score"]) >= min_score:
            by_image.setdefault(int(d["image_id"]), []).append(d)
    rows = []
    for meta in _sample(list(dataset.images), max_images):
        pixels = _read_rgb(dataset.image_path(meta))
        w, h = int(meta.get("width") or pixels.shape[1]), int(meta.get("height") or pixels.shape[0])
        row: dict[str, Any] = {"split": split, **image_features(pixels, w, h)}
        if detections is not None:
            dets = sorted(by_image.get(int(meta["id"]), []), key=lambda d: -float(d["score"]))
            boxes = [[y / h, x / w, (y + bh) / h, (x + bw) / w] for x, y, bw, bh in (d["bbox"] for d in dets)]
            row.update(output_features([d["score"] for d in dets], [d["category_id"] for d in dets],
                                       box_sizes(np.array(boxes, np.float32))))
        rows.append(row)
    return rows


def build_reference(splits: Mapping[str, str | Path], *, evaluated_split: str | None = None,
                    detections: Sequence[Mapping[str, Any]] | None = None, min_score: float = 0.3) -> Any:
    """The reference table (a pandas DataFrame) of ``{split name: COCO dataset dir}``.

    ``evaluated_split`` names the split ``detections`` were made on; its rows get output features.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for split, root in splits.items():
        rows += reference_rows(root, split, detections=detections if split == evaluated_split else None,
                               min_score=min_score)
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError(f"no images in {dict(splits)}: a reference needs the data the model was trained or evaluated on")
    return frame


def summary(frame: Any, min_score: float) -> dict[str, Any]:
    """Per-feature quantiles, for people reading the run (monitoring uses the full table)."""
    out: dict[str, Any] = {"rows": int(len(frame)), "min_score": min_score,
                           "splits": {k: int(v) for k, v in frame["split"].value_counts().items()}}
    for name in (*IMAGE_FEATURES, "num_detections", "mean_score", "mean_box_size"):
        if name in frame:
            col = frame[name].dropna().astype(float)
            if len(col):
                out[name] = {q: round(float(col.quantile(p)), 4) for q, p in
                             (("p5", 0.05), ("p50", 0.5), ("p95", 0.95))}
    return out


def log_reference(frame: Any, run_id: str, *, min_score: float, tracking_uri: str | None) -> str:
    """Store the table in ``run_id``'s artifacts; returns its ``runs:/`` URI."""
    from detectops.registry.models import connect

    client = connect(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_parquet(Path(tmp) / REFERENCE_FILE, index=False)
        (Path(tmp) / "summary.json").write_text(json.dumps(summary(frame, min_score), indent=2))
        client.log_artifacts(run_id, tmp, artifact_path=REFERENCE_DIR)
    return f"runs:/{run_id}/{REFERENCE_DIR}/{REFERENCE_FILE}"


def store_reference(name: str, version: str | int, splits: Mapping[str, str | Path], run_id: str, *,
                    tracking_uri: str | None, evaluated_split: str | None = None,
                    detections: Sequence[Mapping[str, Any]] | None = None, min_score: float = 0.3) -> str:
    """Build, store and link (tag ``detectops.reference``) a model version's reference; returns its URI."""
    from detectops.registry.models import set_version_tag

    frame = build_reference(splits, evaluated_split=evaluated_split, detections=detections, min_score=min_score)
    uri = log_reference(frame, run_id, min_score=min_score, tracking_uri=tracking_uri)
    set_version_tag(name, version, REFERENCE_TAG, uri, tracking_uri=tracking_uri)
    print(f"reference statistics of {name} v{version}: {len(frame)} images ({dict(splits)}) -> {uri}")
    return uri


def load_reference(name: str, version: str | int, *, tracking_uri: str) -> Any:
    """The reference table of a model version (raises ``LookupError`` if it has none)."""
    import mlflow
    import pandas as pd

    from detectops.registry.models import get_version_tags

    uri = get_version_tags(name, version, tracking_uri=tracking_uri).get(REFERENCE_TAG)
    if not uri:
        raise LookupError(f"{name} v{version} has no reference statistics (tag {REFERENCE_TAG}); "
                          "register it through a DetectOps DAG, which stores them")
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(uri, dst_path=tmp, tracking_uri=tracking_uri)
        return pd.read_parquet(local)
