#!/usr/bin/env python
"""Batch-scoring throughput vs raw in-process inference on the same images (goal: ratio >= 0.95).

    .venv/bin/python scripts/benchmarks/bench_batch.py [--source centernet] [--repeat 6] [--rounds 6]

raw:   ``Detector.predict`` in a loop over the images already decoded in memory (the model alone).
batch: ``detectops.batch.score_images`` over the image files, as ``detectops predict-batch`` runs it:
       the service's ``decode_image`` on the prefetch thread, the model call, the service's
       ``:predict`` and ``/detect`` answers and COCO results per image.
The images are the real evaluation set's photos (``detectops.data.real_eval_set()``), each listed
``--repeat`` times. Raw and batch rounds alternate so that load from other processes hits both
alike: the medians and the median of per-pair ratios are printed. Decoding time per image
(measured alone) shows the worst case if decoding did not overlap inference. Finally one whole
``predict_batch`` (inputs, scoring, output files; no MLflow) is timed.
Run it on a quiet machine: the ratio means nothing while other processes compete for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="centernet", help="anything fetch_model accepts")
    parser.add_argument("--repeat", type=int, default=6, help="times each photo is listed in the batch")
    parser.add_argument("--rounds", type=int, default=6, help="alternating raw/batch rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args()

    from detectops.batch import predict_batch, score_images
    from detectops.data import real_eval_set
    from detectops.models import Detector, fetch_model
    from detectops.serve import ServeSettings
    from detectops.serve.imageio import decode_image

    ref = fetch_model(args.source)
    detector = Detector.load(ref.path)
    settings = ServeSettings.from_env(model_dir=Path(ref.path))
    photos = sorted((real_eval_set() / "images").iterdir())
    files = [(i, f"{i:04d}-{p.name}", p) for i, p in enumerate(photos * args.repeat, start=1)]

    def decode(path: Path):
        return decode_image(path.read_bytes(), max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels,
                            target_size=detector.input_size).pixels

    started = time.perf_counter()
    decoded = [decode(p) for _, _, p in files]
    decode_ms = (time.perf_counter() - started) * 1000 / len(files)
    for image in decoded[:3]:  # warm-up
        detector.predict(image)

    raw_ips, batch_ips = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        for image in decoded:
            detector.predict(image)
        raw_ips.append(len(decoded) / (time.perf_counter() - started))
        scored = score_images(detector, files, settings)
        assert not scored.failures, scored.failures
        batch_ips.append(len(scored.images) / scored.wall_s)

    with tempfile.TemporaryDirectory() as tmp:
        batch_dir = Path(tmp) / "batch"
        batch_dir.mkdir()
        for _, name, path in files:
            (batch_dir / name).write_bytes(path.read_bytes())
        started = time.perf_counter()
        full = predict_batch(batch_dir, ref.path, output_dir=Path(tmp) / "out", settings=settings)
        full_s = time.perf_counter() - started

    raw, batch = statistics.median(raw_ips), statistics.median(batch_ips)
    result = {
        "model": f"{ref.name}@{ref.version}",
        "images_per_round": len(files),
        "raw_images_per_s": round(raw, 2),
        "batch_images_per_s": round(batch, 2),
        "ratio": round(batch / raw, 3),
        "ratio_median_of_pairs": round(statistics.median(b / r for r, b in zip(raw_ips, batch_ips)), 3),
        "goal": ">= 0.95",
        "decode_ms_per_image": round(decode_ms, 2),
        "ratio_if_decode_not_overlapped": round((1000 / raw) / (1000 / raw + decode_ms), 3),
        "rounds_raw": [round(x, 2) for x in raw_ips],
        "rounds_batch": [round(x, 2) for x in batch_ips],
        "predict_batch_s": round(full_s, 2),
        "predict_batch_images_per_s": round(full["images_scored"] / full_s, 2),
        "predict_batch_detections": full["detections"],
        "cpu": f"{platform.machine()}, {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})",
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
