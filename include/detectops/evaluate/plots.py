"""Pictures of an evaluation: precision-recall curves and sample images with boxes.

Matplotlib is used through ``Figure`` directly (Agg canvas), never ``pyplot``: no global
backend state, safe in Airflow workers and threads. Boxes are drawn with PIL (fast).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectops.evaluate.coco_metrics import CocoMetrics

GT_COLOR = (0, 200, 0)
PRED_COLOR = (230, 40, 40)


def pr_curves_png(cm: CocoMetrics, path: str | Path, *, max_classes: int = 20) -> Path:
    """Precision vs recall per class at IoU 0.50 and 0.75 (classes with ground truth only)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recall = cm.recall_thresholds
    panels = [(0.50, "IoU 0.50"), (0.75, "IoU 0.75")]
    fig = Figure(figsize=(11, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    classes = [k for k, name in enumerate(cm.category_names) if cm.num_gt.get(name, 0) > 0]
    classes = sorted(classes, key=lambda k: -cm.num_gt[cm.category_names[k]])[:max_classes]
    for i, (iou, title) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        t = int(np.argmin(np.abs(cm.iou_thresholds - iou)))
        for k in classes:
            precision = np.clip(cm.precision[t, :, k], 0.0, None)  # -1 (undefined) -> 0
            ap = float(precision.mean())
            ax.plot(recall, precision, label=f"{cm.category_names[k]} (AP {ap:.2f})", linewidth=1.5)
        ax.set_title(f"Precision-recall, {title}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if classes:
            ax.legend(fontsize=7, loc="lower left")
        else:
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def _draw_boxes(draw: Any, boxes: Sequence[Sequence[float]], labels: Sequence[str], color: tuple[int, int, int], scale: float) -> None:
    for (x, y, w, h), label in zip(boxes, labels):
        x0, y0, x1, y1 = x * scale, y * scale, (x + w) * scale, (y + h) * scale
        draw.rectangle([x0, y0, x1, y1], outline=color, width=2)
        if label:
            tw = draw.textlength(label) + 4
            draw.rectangle([x0, y0, x0 + tw, y0 + 12], fill=color)
            draw.text((x0 + 2, y0), label, fill=(255, 255, 255))


def samples_grid_png(
    samples: Sequence[tuple[np.ndarray, list[dict[str, Any]], list[dict[str, Any]]]],
    label_map: Mapping[int, str],
    path: str | Path,
    *,
    display_threshold: float = 0.3,
    tile: int = 360,
    columns: int = 3,
) -> Path:
    """A grid of images; ground truth in green, predictions (score >= threshold) in red.

    ``samples``: ``(image uint8 HxWx3, ground-truth annotations, COCO results)`` per image;
    both box lists are pixel ``[x, y, w, h]`` as in COCO.
    """
    from PIL import Image, ImageDraw

    columns = max(1, min(columns, len(samples) or 1))
    rows = max(1, -(-len(samples) // columns))
    grid = Image.new("RGB", (columns * tile, rows * tile + 16), (255, 255, 255))
    header = ImageDraw.Draw(grid)
    header.text((4, 2), f"green: ground truth   red: prediction (score >= {display_threshold:g})", fill=(0, 0, 0))
    for i, (image, gts, preds) in enumerate(samples):
        im = Image.fromarray(image)
        scale = tile / max(im.width, im.height)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        draw = ImageDraw.Draw(im)
        _draw_boxes(draw, [a["bbox"] for a in gts], ["" for _ in gts], GT_COLOR, scale)
        shown = [p for p in preds if p["score"] >= display_threshold]
        _draw_boxes(
            draw,
            [p["bbox"] for p in shown],
            [f"{label_map.get(p['category_id'], p['category_id'])} {p['score']:.2f}" for p in shown],
            PRED_COLOR,
            scale,
        )
        grid.paste(im, ((i % columns) * tile, (i // columns) * tile + 16))
    path = Path(path)
    grid.save(path, format="PNG")
    return path
