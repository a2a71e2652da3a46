#!/usr/bin/env python
"""Time ``validate_dataset`` on a synthetic dataset with ~100k annotations (target < 10 s).

Usage: python scripts/benchmarks/bench_gx.py [--images 5000] [--per-image 20] [--out DIR] [--repeat 2]

The dataset is generated once (deterministic, reused on later runs) under
``$DETECTOPS_WORK/bench/gx-<N>``. Import time of great_expectations/pandas is measured and
printed separately and excluded from the validation time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--per-image", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from detectops.data import SyntheticSpec, generate_synthetic
    from detectops.settings import work_dir

    spec = SyntheticSpec(num_images=args.images, image_size=(128, 128),
                         objects_per_image=(args.per_image, args.per_image),
                         object_size=(0.08, 0.16), max_overlap=0.3, seed=100)
    out = args.out or work_dir() / "bench" / f"gx-{args.images}x{args.per_image}"
    t = time.perf_counter()
    ref = generate_synthetic(out, spec)
    print(f"dataset: {ref.num_images} images, {ref.num_annotations} annotations at {ref.path} "
          f"(generate or reuse: {time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    import great_expectations  # noqa: F401
    import pandas  # noqa: F401
    print(f"import great_expectations + pandas: {time.perf_counter() - t:.2f} s (excluded)")

    from detectops.quality import validate_dataset

    for i in range(args.repeat):
        t = time.perf_counter()
        report = validate_dataset(out, report_dir=Path(out).parent / f"{Path(out).name}-report")
        total = time.perf_counter() - t
        n_exp = sum(s["evaluated"] for s in report.suites)
        print(f"run {i + 1}: validate_dataset {total:.2f} s (tables {report.statistics['tables_s']:.2f} s, "
              f"GX {report.statistics['gx_s']:.2f} s, {n_exp} expectations) success={report.success}")
    return 0 if report.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
