#!/usr/bin/env python
"""Training from scratch on 2 cores: speed, AP/AP50 on the synthetic test split, input-pipeline overhead.

    .venv/bin/python scripts/benchmarks/bench_train.py [--images 1500] [--config demo|JSON] [--overhead-steps 30]

1. Generates (once, cached) 1,500 train / 200 val / 300 test synthetic images of 320x240.
2. Trains ``TrainConfig.demo()`` (or ``--config``) with ``detectops.train.train`` and reports the
   wall clock (target: at most 5 minutes), images/s, and the AP/AP50 of the EXPORTED model on
   the test split, evaluated through the detector contract (``Detector`` + pycocotools).
   Target: AP50 >= 0.8 and AP >= 0.5.
3. Input-pipeline overhead: the same training steps fed from batches already in memory vs from
   the real tf.data pipeline, in alternating rounds (target: under 5%).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path


def _data(root: Path, images: int) -> dict[str, Path]:
    from detectops.data.synthetic import SyntheticSpec, generate_synthetic

    sizes = {"train": (images, 0), "val": (200, 1), "test": (300, 2)}
    for split, (n, seed) in sizes.items():
        generate_synthetic(root / split, SyntheticSpec(num_images=n, image_size=(320, 240), seed=seed))
    return {split: root / split for split in sizes}


def _evaluate_export(export_dir: str, test_dir: Path) -> dict[str, float | None]:
    import numpy as np
    from PIL import Image

    from detectops.data.coco import CocoDataset
    from detectops.evaluate.coco_metrics import coco_metrics
    from detectops.models.detector import Detector

    detector = Detector.load(export_dir)
    dataset = CocoDataset.load(test_dir)
    results = []
    for meta in dataset.images:
        with Image.open(dataset.image_path(meta)) as im:
            image = np.asarray(im.convert("RGB"))
        h, w = image.shape[:2]
        found = detector.predict(image)
        for (y0, x0, y1, x1), c, s in zip(found.boxes, found.classes, found.scores):
            results.append({"image_id": int(meta["id"]), "category_id": int(c), "score": float(s),
                            "bbox": [float(x0 * w), float(y0 * h), float((x1 - x0) * w), float((y1 - y0) * h)]})
    return coco_metrics(dataset.to_json_dict(), results).metrics


def _pipeline_overhead(train_dir: Path, label_map: dict[int, str], config, steps: int, rounds: int) -> dict[str, float]:
    """Median seconds per step fed from memory vs from the tf.data pipeline (alternating rounds)."""
    import tensorflow as tf

    from detectops.train.inputs import BatchSource, epoch_plan, load_split
    from detectops.train.model import build_model, losses
    from detectops.train.optim import FlatAdamW

    split = load_split(train_dir, label_map, config)
    model = build_model(config, len(label_map))
    optimizer = FlatAdamW(model.trainable_variables, lambda step: 1e-3)

    @tf.function
    def step(images, heatmap, size, offset, mask):
        with tf.GradientTape() as tape:
            loss = losses(model(images, training=True), heatmap, size, offset, mask, config)["total"]
        optimizer.apply_gradients(tape.gradient(loss, model.trainable_variables))
        return loss

    source = BatchSource(split)
    plan = epoch_plan(len(split), dataclasses.replace(config, steps_per_epoch=steps), 1)
    in_memory = [tuple(tf.identity(t) for t in source.batch(*row)) for row in
                 zip(plan.index, plan.flip, plan.gain, plan.bias)]
    float(step(*in_memory[0]))  # trace
    memory_s, pipeline_s = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for batch in in_memory:
            loss = step(*batch)
        float(loss)
        memory_s.append((time.perf_counter() - started) / len(in_memory))
        started = time.perf_counter()
        for batch in source.dataset(plan):
            loss = step(*batch)
        float(loss)
        pipeline_s.append((time.perf_counter() - started) / plan.steps)
    ratios = [p / m for p, m in zip(pipeline_s, memory_s)]
    return {"memory_s_per_step": statistics.median(memory_s), "pipeline_s_per_step": statistics.median(pipeline_s),
            "overhead_pct": 100 * (statistics.median(ratios) - 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1500, help="train images (320x240)")
    parser.add_argument("--config", default="demo", help="tiny | demo | JSON of TrainConfig fields")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DETECTOPS_BENCH_DIR", "/tmp/detectops-bench-train")))
    parser.add_argument("--overhead-steps", type=int, default=30)
    parser.add_argument("--overhead-rounds", type=int, default=3)
    parser.add_argument("--skip-training", action="store_true", help="only measure the pipeline overhead")
    args = parser.parse_args()

    from detectops.data.synthetic import SYNTHETIC_LABEL_MAP
    from detectops.train.command import parse_config
    from detectops.train.trainer import train

    config = parse_config(args.config)
    started = time.perf_counter()
    splits = _data(args.data_dir / f"data-{args.images}", args.images)
    print(f"data ready in {time.perf_counter() - started:.1f} s: {args.data_dir}")
    label_map = dict(SYNTHETIC_LABEL_MAP)
    report: dict[str, object] = {"config": config.to_dict(), "cpus": os.cpu_count()}

    if not args.skip_training:
        started = time.perf_counter()
        result = train(args.data_dir / f"data-{args.images}", label_map, args.data_dir / "out", config)
        wall = time.perf_counter() - started
        metrics = _evaluate_export(result.export_dir, splits["test"])
        report.update(train_wall_s=round(wall, 1), images_per_second=round(result.images_per_second, 1),
                      val_AP=result.val_AP, val_AP50=result.val_AP50, test_AP=metrics["AP"], test_AP50=metrics["AP50"],
                      test_AP75=metrics["AP75"], final_loss=result.final_loss)
        print(f"trained in {wall:.1f} s wall clock ({result.images_per_second:.1f} images/s); "
              f"test AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f}, AP75 {metrics['AP75']:.3f}")

    overhead = _pipeline_overhead(splits["train"], label_map, config, args.overhead_steps, args.overhead_rounds)
    report.update(overhead)
    print(f"input pipeline: {overhead['pipeline_s_per_step'] * 1000:.0f} ms/step vs "
          f"{overhead['memory_s_per_step'] * 1000:.0f} ms/step from memory: overhead {overhead['overhead_pct']:+.1f}%")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
