"""Deterministic synthetic detection data: coloured shapes on varied backgrounds.

Each shape stands for one category (``circle`` = 1, ``square`` = 2, ...). Knobs cover the
things that move a detector's metrics and a drift check: image count and size, class mix,
object size, objects per image, brightness, noise, background kind. Same spec and seed ->
the same bytes -> the same :func:`~detectops.data.hashing.dataset_hash`.

Images are drawn with NumPy (backgrounds, noise) and PIL (shapes); no per-pixel Python.
Each image has its own RNG seeded by ``(seed, index)``, so image *i* does not depend on
how many images come before or after it.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detectops.data.coco import ANNOTATIONS_FILE, IMAGES_DIR, CocoDataset, DatasetRef
from detectops.errors import DetectOpsError
from detectops.fsutil import staged_dir

#: The shapes, in category-id order (id = position + 1).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "diamond")
#: ``{category_id: name}`` of synthetic data.
SYNTHETIC_LABEL_MAP: dict[int, str] = {i + 1: s for i, s in enumerate(SHAPES)}
BACKGROUNDS: tuple[str, ...] = ("gradient", "noise", "texture")
_PLACEMENT_TRIES = 20


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Sizes are ``(width, height)``; ranges are inclusive ``(min, max)``."""

    num_images: int = 32
    image_size: tuple[int, int] = (320, 240)
    #: Relative weight per shape name; shapes left out (or weight 0) are not generated.
    class_weights: dict[str, float] = field(default_factory=lambda: {s: 1.0 for s in SHAPES})
    #: Object side as a fraction of the image's shorter side.
    object_size: tuple[float, float] = (0.12, 0.4)
    objects_per_image: tuple[int, int] = (1, 4)
    #: Multiplies every pixel (1.0 = unchanged); < 1 darker, > 1 brighter.
    brightness: float = 1.0
    #: Standard deviation of additive Gaussian pixel noise, as a fraction of 255.
    noise: float = 0.02
    backgrounds: tuple[str, ...] = BACKGROUNDS
    #: Largest IoU allowed between two objects of one image.
    max_overlap: float = 0.2
    image_format: Literal["jpeg", "png"] = "jpeg"
    jpeg_quality: int = 90
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.num_images < 0:
            problems.append("num_images must be >= 0")
        w, h = self.image_size
        if w < 16 or h < 16:
            problems.append("image_size must be at least (16, 16)")
        unknown = set(self.class_weights) - set(SHAPES)
        if unknown:
            problems.append(f"unknown shapes {sorted(unknown)}; choose from {list(SHAPES)}")
        if not any(v > 0 for v in self.class_weights.values()) or any(v < 0 for v in self.class_weights.values()):
            problems.append("class_weights need at least one positive weight and no negative ones")
        lo, hi = self.object_size
        if not 0 < lo <= hi <= 1:
            problems.append("object_size must satisfy 0 < min <= max <= 1")
        if not 0 <= self.objects_per_image[0] <= self.objects_per_image[1]:
            problems.append("objects_per_image must satisfy 0 <= min <= max")
        if self.brightness <= 0 or self.noise < 0:
            problems.append("brightness must be > 0 and noise >= 0")
        bad_bg = set(self.backgrounds) - set(BACKGROUNDS)
        if bad_bg or not self.backgrounds:
            problems.append(f"backgrounds must be a non-empty subset of {list(BACKGROUNDS)}")
        if self.image_format not in ("jpeg", "png"):
            problems.append("image_format must be 'jpeg' or 'png'")
        if problems:
            raise DetectOpsError("Invalid SyntheticSpec: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["object_size"] = list(self.object_size)
        d["objects_per_image"] = list(self.objects_per_image)
        d["backgrounds"] = list(self.backgrounds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SyntheticSpec":
        d = dict(d)
        for k in ("image_size", "object_size", "objects_per_image", "backgrounds"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def label_map(self) -> dict[int, str]:
        """Categories this spec generates: ``{id: shape}`` for shapes with positive weight."""
        return {i: s for i, s in SYNTHETIC_LABEL_MAP.items() if self.class_weights.get(s, 0) > 0}


# ----------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, kind: str, w: int, h: int) -> np.ndarray:
    """An ``[h, w, 3]`` float32 background in 0..255."""
    from PIL import Image

    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    proj = xs * math.cos(theta) + ys * math.sin(theta)
    if kind == "gradient":
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    elif kind == "texture":  # stripes / waves of random period
        period = rng.uniform(6, max(8.0, min(w, h) / 3))
        t = 0.5 + 0.5 * np.sin(2 * math.pi * proj / period)
        if rng.random() < 0.5:  # a cross-hatch now and then
            proj2 = -xs * math.sin(theta) + ys * math.cos(theta)
            t = 0.5 * t + 0.25 + 0.25 * np.sin(2 * math.pi * proj2 / period)
    else:  # "noise": smooth blobs = a coarse random grid upsampled bicubically
        gw, gh = int(rng.integers(3, 9)), int(rng.integers(3, 9))
        grid = rng.uniform(0, 255, size=(gh, gw, 3)).astype(np.uint8)
        return np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float32)
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


def _shape_geometry(shape: str, x: int, y: int, w: int, h: int) -> tuple[list[tuple[float, float]] | None, float]:
    """Polygon vertices (None for ellipse-based shapes) and the exact area of the shape."""
    x1, y1 = x + w - 1, y + h - 1
    if shape == "square":
        return [(x, y), (x1, y), (x1, y1), (x, y1)], float(w * h)
    if shape == "triangle":
        return [(x, y1), (x1, y1), ((x + x1) / 2, y)], w * h / 2.0
    if shape == "diamond":
        return [((x + x1) / 2, y), (x1, (y + y1) / 2), ((x + x1) / 2, y1), (x, (y + y1) / 2)], w * h / 2.0
    if shape == "cross":
        tw, th = max(1, round(w / 3)), max(1, round(h / 3))
        cx0, cy0 = x + (w - tw) // 2, y + (h - th) // 2
        pts = [
            (cx0, y), (cx0 + tw - 1, y), (cx0 + tw - 1, cy0), (x1, cy0), (x1, cy0 + th - 1),
            (cx0 + tw - 1, cy0 + th - 1), (cx0 + tw - 1, y1), (cx0, y1), (cx0, cy0 + th - 1),
            (x, cy0 + th - 1), (x, cy0), (cx0, cy0),
        ]
        return pts, float(tw * h + w * th - tw * th)
    if shape == "circle":
        return None, math.pi * w * h / 4
    if shape == "ring":
        return None, math.pi * w * h / 4 * 0.75  # inner ellipse has half the radii
    raise ValueError(shape)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / float(aw * ah + bw * bh - inter)


def _contrasting_colour(rng: np.random.Generator, patch_mean: np.ndarray) -> tuple[int, int, int]:
    """A random colour far (L1 > 180) from the background behind the object."""
    candidates = rng.integers(0, 256, size=(8, 3))
    far = np.abs(candidates - patch_mean).sum(axis=1) > 180
    c = candidates[int(np.argmax(far))] if far.any() else np.where(patch_mean > 127, 20, 235)
    return (int(c[0]), int(c[1]), int(c[2]))


def render_image(spec: SyntheticSpec, index: int) -> tuple[bytes, list[dict[str, Any]]]:
    """Encoded image bytes and its objects (``bbox`` [x, y, w, h], ``area``, ``shape``)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([spec.seed, index])
    w, h = spec.image_size
    bg_kind = spec.backgrounds[int(rng.integers(len(spec.backgrounds)))]
    canvas = _background(rng, bg_kind, w, h)
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)

    names = [s for s in SHAPES if spec.class_weights.get(s, 0) > 0]
    probs = np.array([spec.class_weights[s] for s in names], dtype=np.float64)
    probs /= probs.sum()
    n_obj = int(rng.integers(spec.objects_per_image[0], spec.objects_per_image[1] + 1))
    short = min(w, h)
    objects: list[dict[str, Any]] = []
    boxes: list[tuple[int, int, int, int]] = []
    # All random numbers of this image drawn up front (per-call RNG overhead dominates otherwise).
    shape_idx = rng.choice(len(names), size=n_obj, p=probs)
    tries = rng.random((n_obj, _PLACEMENT_TRIES, 4))
    lo, hi = spec.object_size
    for k in range(n_obj):
        shape = names[int(shape_idx[k])]
        for u_side, u_aspect, u_x, u_y in tries[k]:
            side = (lo + (hi - lo) * u_side) * short
            aspect = 0.75 + (1.33 - 0.75) * u_aspect
            bw = min(max(round(side * math.sqrt(aspect)), 6), w)
            bh = min(max(round(side / math.sqrt(aspect)), 6), h)
            bx = int(u_x * (w - bw + 1))
            by = int(u_y * (h - bh + 1))
            box = (bx, by, bw, bh)
            if all(_iou(box, o) <= spec.max_overlap for o in boxes):
                break
        else:
            continue  # no room left in this image
        colour = _contrasting_colour(rng, canvas[by:by + bh, bx:bx + bw].reshape(-1, 3).mean(0))
        pts, area = _shape_geometry(shape, bx, by, bw, bh)
        if pts is not None:
            draw.polygon(pts, fill=colour)
        else:
            draw.ellipse([bx, by, bx + bw - 1, by + bh - 1], fill=colour)
            if shape == "ring":  # punch the hole with the background behind it
                ix, iy = bx + bw // 4, by + bh // 4
                hole = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
                mask = Image.new("L", (w, h), 0)
                ImageDraw.Draw(mask).ellipse([ix, iy, ix + bw // 2 - 1, iy + bh // 2 - 1], fill=255)
                img.paste(hole, (0, 0), mask)
        boxes.append(box)
        objects.append({"shape": shape, "bbox": [float(bx), float(by), float(bw), float(bh)], "area": round(area, 2)})

    arr = np.asarray(img, dtype=np.float32) * spec.brightness
    if spec.noise > 0:
        arr += rng.normal(0.0, spec.noise * 255.0, size=arr.shape).astype(np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    if spec.image_format == "png":
        out.save(buf, format="PNG", optimize=False)
    else:
        out.save(buf, format="JPEG", quality=spec.jpeg_quality)
    return buf.getvalue(), objects


# ----------------------------------------------------------------------------- dataset
def _existing_matches(out_dir: Path, spec: SyntheticSpec) -> bool:
    try:
        info = json.loads((out_dir / ANNOTATIONS_FILE).read_text()).get("info", {})
    except (OSError, ValueError):
        return False
    return info.get("synthetic_spec") == spec.to_dict()


def generate_synthetic(out_dir: str | os.PathLike[str], spec: SyntheticSpec | None = None,
                       name: str | None = None, reuse: bool = True) -> DatasetRef:
    """Write a COCO dataset for ``spec`` to ``out_dir`` and return its :class:`DatasetRef`.

    Idempotent: if ``out_dir`` already holds this exact spec it is reused (``reuse=True``);
    otherwise the dataset is built in a sibling temp folder and swapped in by rename, so a
    crash never leaves a half-written dataset at ``out_dir``.
    """
    spec = spec or SyntheticSpec()
    out_dir = Path(out_dir)
    if reuse and _existing_matches(out_dir, spec):
        return CocoDataset.load(out_dir).ref(name)

    with staged_dir(out_dir, replace=True) as tmp:  # a different spec replaces the old dataset whole
        images_dir = tmp / IMAGES_DIR
        images_dir.mkdir()
        ext = "png" if spec.image_format == "png" else "jpg"
        label_ids = {s: i for i, s in SYNTHETIC_LABEL_MAP.items()}
        images, annotations = [], []
        ann_id = 1
        w, h = spec.image_size
        for i in range(spec.num_images):
            data, objects = render_image(spec, i)
            file_name = f"{i:06d}.{ext}"
            (images_dir / file_name).write_bytes(data)
            images.append({"id": i + 1, "file_name": file_name, "width": w, "height": h})
            for o in objects:
                annotations.append({
                    "id": ann_id, "image_id": i + 1, "category_id": label_ids[o["shape"]],
                    "bbox": o["bbox"], "area": o["area"], "iscrowd": 0,
                })
                ann_id += 1
        ds = CocoDataset(
            root=tmp,
            images=images,
            annotations=annotations,
            categories=[{"id": i, "name": s, "supercategory": "shape"} for i, s in spec.label_map().items()],
            info={"description": "DetectOps synthetic shapes", "synthetic_spec": spec.to_dict()},
        )
        ds.save()
    return CocoDataset.load(out_dir).ref(name or out_dir.name)
