#!/usr/bin/env python3
"""Drift on 100k prediction records (issue goal: under 10 s), and the false-alarm rate of the verdict.

    .venv/bin/python scripts/benchmarks/bench_drift.py [--records 100000] [--windows 40] [--window-size 200]

Records and the reference are drawn feature by feature from fixed distributions shaped like the
shapes detector's (constant image size, brightness around 120, 1-3 detections of 6 classes), so
the timing covers what ``monitoring.drift`` does with real records: three tables (images,
outputs, detections: about 200k rows at 100k images), Evidently's preset per table, and the
HTML reports from a 5,000-row sample. The false-alarm rate is the share of windows drawn from
the reference's own distribution that get a "drift" verdict with the default policy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def records(n: int, seed: int, *, brightness: float = 120.0, box: float = 0.2):
    import pandas as pd

    from detectops.monitoring.features import IMAGE_FEATURES

    rng = np.random.default_rng(seed)
    data = {name: rng.normal(50.0 + 10 * i, 5.0, n) for i, name in enumerate(IMAGE_FEATURES)}
    data.update(width=np.full(n, 320.0), height=np.full(n, 240.0), aspect_ratio=np.full(n, 320 / 240),
                brightness_mean=rng.normal(brightness, 15.0, n))
    counts = rng.integers(1, 4, n)
    classes = np.split(rng.integers(1, 7, counts.sum()), np.cumsum(counts)[:-1])
    scores = np.split(rng.uniform(0.3, 1.0, counts.sum()), np.cumsum(counts)[:-1])
    sizes = np.split(np.clip(rng.normal(box, 0.05, counts.sum()), 0.01, 1), np.cumsum(counts)[:-1])
    frame = pd.DataFrame(data)
    frame["num_detections"] = counts.astype(float)
    frame["classes"], frame["scores"], frame["box_sizes"] = classes, scores, sizes
    frame["mean_score"] = [s.mean() for s in scores]
    frame["mean_box_size"] = [s.mean() for s in sizes]
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--reference", type=int, default=2_000)
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--window-size", type=int, default=200)
    args = parser.parse_args()

    from detectops.monitoring.drift import DriftPolicy, compute_drift, render_reports

    reference = records(args.reference, 0)
    current = records(args.records, 1, brightness=112.0)  # a shift of half a standard deviation
    compute_drift(reference, current.iloc[:500])  # import Evidently and warm up (not timed)

    started = time.perf_counter()
    result = compute_drift(reference, current)
    verdict_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        render_reports(reference, current, tmp)
        html_s = time.perf_counter() - started
    print(f"{args.records} records: verdict {result.verdict} ({result.reason}) in {verdict_s:.2f} s; "
          f"HTML reports (5,000-row sample) {html_s:.2f} s; total {verdict_s + html_s:.2f} s")

    policy = DriftPolicy()
    alarms = 0
    for i in range(args.windows):
        window = records(args.window_size, 100 + i)
        alarms += compute_drift(reference, window, policy).verdict == "drift"
    rate = alarms / args.windows
    print(f"false alarms: {alarms} of {args.windows} windows of {args.window_size} records drawn from the "
          f"reference's distribution ({rate:.1%})")
    print(json.dumps({"records": args.records, "verdict_s": round(verdict_s, 2), "html_s": round(html_s, 2),
                      "verdict": result.verdict, "false_alarm_rate": rate, "windows": args.windows,
                      "window_size": args.window_size}))


if __name__ == "__main__":
    main()
