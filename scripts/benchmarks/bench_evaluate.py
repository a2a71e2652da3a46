#!/usr/bin/env python
"""Evaluation throughput vs raw inference on the same images (goal: ratio >= 0.9).

    .venv/bin/python scripts/benchmarks/bench_evaluate.py [--source centernet] [--repeat 3] [--rounds 3]

raw:      ``Detector.predict`` in a loop over images already decoded in memory.
evaluate: ``detectops.evaluate.runner.run_detector`` over the image files, as ``evaluate_model``
          runs it: decoding on the prefetch thread, model call, conversion to COCO results.
Both run on the real evaluation set (``detectops.data.real_eval_set()``), each pass repeated
``--repeat`` times; raw and evaluate rounds alternate so that load from other processes hits
both alike: the medians and the median of per-pair ratios are printed. Decoding time per
image (measured alone) shows the worst case if decoding did not overlap inference. Finally one full ``evaluate_model`` (metrics, plots,
report) is timed and its AP printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="centernet", help="anything fetch_model accepts")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the images per round")
    parser.add_argument("--rounds", type=int, default=8, help="alternating raw/evaluate rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args()

    from detectops.data import CocoDataset, real_eval_set
    from detectops.evaluate import evaluate_model
    from detectops.evaluate.runner import load_image, run_detector
    from detectops.models import Detector, fetch_model

    ref = fetch_model(args.source)
    detector = Detector.load(ref.path)
    dataset = CocoDataset.load(real_eval_set())
    files = [(int(im["id"]), dataset.image_path(im)) for im in dataset.images] * args.repeat
    started = time.perf_counter()
    decoded = [load_image(path) for _, path in files]
    decode_ms = (time.perf_counter() - started) * 1000 / len(files)
    for image in decoded[:3]:  # warm-up
        detector.predict(image)

    raw_ips, eval_ips = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        for image in decoded:
            detector.predict(image)
        raw_ips.append(len(decoded) / (time.perf_counter() - started))
        run = run_detector(detector, files, warmup=False)
        eval_ips.append(run.num_images / run.wall_s)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        full = evaluate_model(ref, dataset.root, output_dir=os.path.join(tmp, "report"))
        full_s = time.perf_counter() - started

    raw, ev = statistics.median(raw_ips), statistics.median(eval_ips)
    pair_ratio = statistics.median(e / r for r, e in zip(raw_ips, eval_ips))
    result = {
        "model": f"{ref.name}@{ref.version}",
        "images_per_round": len(files),
        "raw_images_per_s": round(raw, 2),
        "eval_images_per_s": round(ev, 2),
        "ratio": round(ev / raw, 3),
        "ratio_median_of_pairs": round(pair_ratio, 3),
        "goal": ">= 0.9",
        "decode_ms_per_image": round(decode_ms, 2),
        "ratio_if_decode_not_overlapped": round((1000 / raw) / (1000 / raw + decode_ms), 3),
        "rounds_raw": [round(x, 2) for x in raw_ips],
        "rounds_eval": [round(x, 2) for x in eval_ips],
        "evaluate_model_s": round(full_s, 2),
        "evaluate_model_AP": full.metrics["AP"],
        "evaluate_model_AP50": full.metrics["AP50"],
        "latency_p50_ms": full.latency["p50_ms"],
        "latency_p95_ms": full.latency["p95_ms"],
        "cpu": f"{platform.machine()}, {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})",
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
