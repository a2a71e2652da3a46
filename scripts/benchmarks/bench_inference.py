#!/usr/bin/env python
"""CPU inference latency of a contract detector (default: the converted CenterNet).

    .venv/bin/python scripts/benchmarks/bench_inference.py [--source centernet] [--repeat 10]

Runs ``Detector.predict`` (the same call the service and the evaluation make, including
decoding the outputs) over real photos from ``skimage.data``, each repeated, after a warm-up,
and prints p50 / p95 / mean latency and images per second. Single-threaded calls, batch 1:
the contract's batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "immunohistochemistry")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="centernet", help="anything fetch_model accepts")
    parser.add_argument("--repeat", type=int, default=10, help="passes over the photos")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args()

    from skimage import data

    from detectops.models import Detector, fetch_model

    ref = fetch_model(args.source)
    started = time.perf_counter()
    detector = Detector.load(ref.path)
    load_s = time.perf_counter() - started

    images = [getattr(data, name)() for name in PHOTOS if hasattr(data, name)]
    images = [img if img.ndim == 3 else img[..., None].repeat(3, -1) for img in images]
    for _ in range(args.warmup):
        detector.predict(images[0])

    latencies_ms = []
    started = time.perf_counter()
    for _ in range(args.repeat):
        for image in images:
            t = time.perf_counter()
            detector.predict(image)
            latencies_ms.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - started

    q = statistics.quantiles(latencies_ms, n=100)
    result = {
        "model": f"{ref.name}@{ref.version}",
        "images": len(latencies_ms),
        "photo_sizes": sorted({f"{i.shape[1]}x{i.shape[0]}" for i in images}),
        "load_s": round(load_s, 2),
        "p50_ms": round(statistics.median(latencies_ms), 1),
        "p95_ms": round(q[94], 1),
        "mean_ms": round(statistics.fmean(latencies_ms), 1),
        "images_per_s": round(len(latencies_ms) / wall, 1),
        "cpu": f"{platform.machine()}, {os.cpu_count()} cores (os.getloadavg {os.getloadavg()[0]:.1f})",
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>13}: {value}")


if __name__ == "__main__":
    main()
