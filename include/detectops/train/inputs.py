"""Training inputs: COCO splits -> in-memory arrays + CenterNet targets -> a deterministic tf.data pipeline.

A dataset version given to the trainer is a directory with ``train/`` and ``val/`` (and usually
``test/``), each a COCO dataset of :mod:`detectops.data.coco` (``annotations.json`` + ``images/``).

Every image is decoded and resized ONCE (with the resize the exported model uses), and its
targets are encoded once, in NumPy. Each epoch then only gathers, flips and colour-jitters
batches inside tf.data, which keeps the input pipeline's cost per step tiny next to the
model's (see scripts/benchmarks/bench_train.py). All randomness of an epoch (order, flips,
jitter) comes from ``numpy.random.default_rng([seed, epoch])``: an epoch's batches depend only
on the seed and the epoch number, so a run resumed at epoch *e* sees exactly the batches an
uninterrupted run sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectops.data.coco import ANNOTATIONS_FILE, CocoDataset
from detectops.errors import DataValidationError
from detectops.train.config import OUTPUT_STRIDE, TrainConfig

TRAIN_SPLIT, VAL_SPLIT, TEST_SPLIT = "train", "val", "test"
_RESIZE_BATCH = 32


class TrainingDataError(DataValidationError):
    """The dataset given to the trainer cannot be trained on (layout, classes, no boxes)."""


@dataclass
class Split:
    """One split in memory. ``images`` uint8 [N,S,S,3] already resized; targets as in ``losses``."""

    dataset: CocoDataset
    image_ids: np.ndarray  # int64 [N], COCO image ids in file order
    original_sizes: np.ndarray  # int32 [N, 2] = (width, height) of the image files
    images: np.ndarray
    heatmap: np.ndarray  # float32 [N,G,G,C]
    size: np.ndarray  # float32 [N,G,G,2] (w, h) in cells, at centres
    offset: np.ndarray  # float32 [N,G,G,2] (x, y) in [0, 1), at centres
    mask: np.ndarray  # float32 [N,G,G,1]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def split_dir(dataset_dir: str | Path, split: str) -> Path:
    """``<dataset_dir>/<split>``, checked, with an error that says which layout is expected."""
    path = Path(dataset_dir) / split
    if not (path / ANNOTATIONS_FILE).is_file():
        raise TrainingDataError(
            f"{path} is missing or has no {ANNOTATIONS_FILE}. The trainer reads a dataset version: a directory "
            f"with {TRAIN_SPLIT}/ and {VAL_SPLIT}/ sub-datasets in COCO format (each {ANNOTATIONS_FILE} + images/), "
            "as produced by the dataset versioning step."
        )
    return path


def class_index_map(label_map: dict[int, str]) -> dict[int, int]:
    """``{category id: heatmap channel}``: channels follow the sorted label-map ids."""
    return {cid: i for i, cid in enumerate(sorted(label_map))}


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: the largest centre shift that keeps IoU >= ``min_overlap`` (in cells)."""
    a1, b1, c1 = 1, height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def encode_targets(boxes: np.ndarray, classes: np.ndarray, grid: int, num_classes: int) -> tuple[np.ndarray, ...]:
    """Targets of one image from normalised boxes [M,4] ``[xmin, ymin, xmax, ymax]`` and class channels [M].

    Returns ``heatmap`` [G,G,C], ``size`` [G,G,2], ``offset`` [G,G,2], ``mask`` [G,G,1]. Two objects
    whose centres share a cell keep the last one's size and offset (rare at stride 4).
    """
    heatmap = np.zeros((grid, grid, num_classes), np.float32)
    size = np.zeros((grid, grid, 2), np.float32)
    offset = np.zeros((grid, grid, 2), np.float32)
    mask = np.zeros((grid, grid, 1), np.float32)
    ys, xs = np.arange(grid, dtype=np.float32)[:, None], np.arange(grid, dtype=np.float32)[None, :]
    for (x0, y0, x1, y1), c in zip(boxes * grid, classes):
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            continue
        cx, cy = min((x0 + x1) / 2, grid - 1e-3), min((y0 + y1) / 2, grid - 1e-3)
        ix, iy = int(cx), int(cy)
        sigma = (2 * max(0, int(gaussian_radius(h, w))) + 1) / 6
        g = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma * sigma))
        np.maximum(heatmap[..., c], g, out=heatmap[..., c])
        size[iy, ix] = (w, h)
        offset[iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return heatmap, size, offset, mask


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_split(root: str | Path, label_map: dict[int, str], config: TrainConfig, *, max_images: int = 0) -> Split:
    """Decode, resize and encode one COCO split; refuses categories outside ``label_map``.

    ``max_images``: at most this many, a sample seeded by ``config.seed`` over the whole split (in
    the split's order), not its first images: a dataset version lists older batches first.
    """
    import tensorflow as tf

    from detectops.train.model import resize_images

    dataset = CocoDataset.load(root)
    channels = class_index_map(label_map)
    names = {int(c["id"]): c.get("name") for c in dataset.categories}
    unknown = sorted({int(a["category_id"]) for a in dataset.annotations} - set(channels))
    if unknown:
        raise TrainingDataError(
            f"{root} has boxes of categories {[(c, names.get(c)) for c in unknown]} that are not in the model's "
            f"label map {label_map}. A new class means a new model: train it under a new registered model name."
        )
    renamed = {c: (names[c], label_map[c]) for c in channels if c in names and names[c] != label_map[c]}
    if renamed:
        raise TrainingDataError(f"{root}: category names differ from the label map (id: (dataset, label map)): {renamed}.")

    images_meta = dataset.images
    if max_images and len(images_meta) > max_images:
        keep = np.sort(np.random.default_rng([config.seed, len(images_meta)]).choice(len(images_meta), max_images, replace=False))
        images_meta = [images_meta[i] for i in keep]
    by_image = dataset.annotations_by_image()
    size, grid, n = config.input_size, config.grid_size, len(images_meta)
    out_images = np.zeros((n, size, size, 3), np.uint8)
    targets = [np.zeros((n, grid, grid, k), np.float32) for k in (len(channels), 2, 2, 1)]
    original = np.zeros((n, 2), np.int32)
    pending: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}  # images waiting to be resized, by shape

    def flush(shape: tuple[int, ...]) -> None:
        # One resize call per group of equally sized images: per-image eager calls dominated loading.
        group = pending.pop(shape)
        resized = resize_images(np.stack([pixels for _, pixels in group]), size)
        out_images[[i for i, _ in group]] = tf.clip_by_value(tf.round(resized), 0, 255).numpy().astype(np.uint8)

    for i, meta in enumerate(images_meta):
        pixels = _read_rgb(dataset.image_path(meta))
        h, w = pixels.shape[:2]
        original[i] = (w, h)
        pending.setdefault(pixels.shape, []).append((i, pixels))
        if len(pending[pixels.shape]) == _RESIZE_BATCH:
            flush(pixels.shape)
        anns = [a for a in by_image.get(int(meta["id"]), []) if not a.get("iscrowd")]
        boxes = np.array([[a["bbox"][0] / w, a["bbox"][1] / h, (a["bbox"][0] + a["bbox"][2]) / w,
                           (a["bbox"][1] + a["bbox"][3]) / h] for a in anns], np.float32).reshape(-1, 4)
        classes = np.array([channels[int(a["category_id"])] for a in anns], np.int64)
        for target, value in zip(targets, encode_targets(np.clip(boxes, 0, 1), classes, grid, len(channels))):
            target[i] = value
    for shape in list(pending):
        flush(shape)
    return Split(dataset, np.array([int(m["id"]) for m in images_meta], np.int64), original, out_images, *targets)


# ----------------------------------------------------------------------------- per-epoch batches
@dataclass(frozen=True)
class EpochPlan:
    """What an epoch does, drawn from ``rng([seed, epoch])``: arrays of shape [steps, batch]."""

    index: np.ndarray  # int32 image indices
    flip: np.ndarray  # bool
    gain: np.ndarray  # float32 contrast multiplier
    bias: np.ndarray  # float32 brightness shift (0..255 units)

    @property
    def steps(self) -> int:
        return int(self.index.shape[0])


def steps_per_epoch(num_images: int, config: TrainConfig) -> int:
    steps = max(1, num_images // config.batch_size)
    return min(steps, config.steps_per_epoch) if config.steps_per_epoch else steps


def epoch_plan(num_images: int, config: TrainConfig, epoch: int) -> EpochPlan:
    """The batches of ``epoch`` (1-based): a permutation (repeated if the split is smaller than a batch), flips, jitter."""
    if num_images < 1:
        raise TrainingDataError("The train split has no images; land a batch with labelled images first.")
    rng = np.random.default_rng([config.seed, epoch])
    steps, batch = steps_per_epoch(num_images, config), config.batch_size
    order = np.resize(rng.permutation(num_images), steps * batch).astype(np.int32).reshape(steps, batch)
    flip = rng.random((steps, batch)) < config.flip_probability
    jitter = config.color_jitter
    gain = rng.uniform(1 - jitter, 1 + jitter, (steps, batch)).astype(np.float32)
    bias = rng.uniform(-jitter, jitter, (steps, batch)).astype(np.float32) * 255 * 0.5
    return EpochPlan(order, flip, gain, bias)


def mirrored(split: Split) -> tuple[np.ndarray, ...]:
    """``(images, heatmap, size, offset, mask)`` of every image flipped horizontally.

    A horizontal flip of the dense targets is exact: the centre cell ``i`` of ``x`` becomes
    ``G-1-i`` for ``G-x``, so the maps are mirrored and the x offset becomes ``1 - offset``
    (where there is an object).
    """
    offset = split.offset[:, :, ::-1].copy()
    offset[..., 0] = (1.0 - offset[..., 0]) * split.mask[:, :, ::-1, 0]
    return (split.images[:, :, ::-1], split.heatmap[:, :, ::-1], split.size[:, :, ::-1], offset,
            split.mask[:, :, ::-1])


class BatchSource:
    """Makes training batches from a :class:`Split` held in TensorFlow variables (copied in once).

    Both orientations of every image and its targets are held (twice the memory: about 150 kB
    per image at 192 px), so a flip is a choice of row in the one gather a batch needs, not
    work per step: the input pipeline shares 2 cores with the training step and every
    millisecond it spends is taken from the step (``bench_train.py`` measures it).

    Variables, not constants: a tf.data function captures a variable by handle, whereas an
    eager constant is copied into every epoch's dataset graph (hundreds of MB each time).
    """

    def __init__(self, split: Split):
        import tensorflow as tf

        self.num_images = len(split)
        both = [np.concatenate([a, m]) for a, m in zip(
            (split.images, split.heatmap, split.size, split.offset, split.mask), mirrored(split))]
        self.images, self.heatmap, self.size, self.offset, self.mask = (tf.Variable(a, trainable=False) for a in both)

    def batch(self, index: Any, flip: Any, gain: Any, bias: Any) -> tuple[Any, ...]:
        """``(images float32, heatmap, size, offset, mask)`` of one batch, augmented."""
        import tensorflow as tf

        index = tf.convert_to_tensor(index, tf.int32)
        rows = tf.where(tf.convert_to_tensor(flip, tf.bool), index + self.num_images, index)  # flipped copies follow
        images = tf.gather(self.images, rows)
        heatmap, size = tf.gather(self.heatmap, rows), tf.gather(self.size, rows)
        offset, mask = tf.gather(self.offset, rows), tf.gather(self.mask, rows)
        # Contrast around mid-grey, then brightness, as ONE multiply-add per pixel:
        # (x - 127.5) * gain + 127.5 + bias = x * gain + (127.5 * (1 - gain) + bias).
        gain = tf.reshape(tf.cast(gain, tf.float32), [-1, 1, 1, 1])
        shift = 127.5 * (1.0 - gain) + tf.reshape(tf.cast(bias, tf.float32), [-1, 1, 1, 1])
        images = tf.clip_by_value(tf.cast(images, tf.float32) * gain + shift, 0.0, 255.0)
        return images, heatmap, size, offset, mask

    def dataset(self, plan: EpochPlan) -> Any:
        """The epoch as a tf.data pipeline: batches built in the background (prefetched), in plan order."""
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((plan.index, plan.flip, plan.gain, plan.bias))
        options = tf.data.Options()
        options.deterministic = True
        return ds.map(self.batch, num_parallel_calls=1, deterministic=True).prefetch(2).with_options(options)
