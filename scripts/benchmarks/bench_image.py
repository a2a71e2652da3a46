"""Benchmark the DetectOps image: size, cold build, warm rebuild, code-only rebuild, push.

    . .state/infra/env.sh && .venv/bin/python scripts/benchmarks/bench_image.py [--model-dir DIR] [--skip-cold]

- cold: ``nocache=True`` (every layer rebuilt; the wheelhouse on the host is reused — its one-time
  download is timed separately when it is missing); ``--no-wheelhouse``: pip inside the cold
  build downloads from the index instead
- warm: same inputs again (every layer cached)
- code-only: after changing one file in the detectops package (a copy of include/, the checkout
  is not touched), only the last layers rebuild
Prints one JSON object with the numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "include"), str(REPO)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=None, help="SavedModel to bake in (default: the tiny test detector)")
    parser.add_argument("--skip-cold", action="store_true", help="skip the no-cache build (minutes)")
    parser.add_argument("--no-wheelhouse", action="store_true",
                        help="cold build with pip downloading from the index inside the build (for comparison)")
    parser.add_argument("--tag", default="detectops/detector:bench")
    args = parser.parse_args()

    from detectops import settings
    from detectops.build import build_image, docker_client, ensure_wheelhouse, push_image

    model_dir = Path(args.model_dir) if args.model_dir else None
    if model_dir is None:
        from tests.integration.test_image import tiny_model_dir

        model_dir = tiny_model_dir()
    client = docker_client()
    quiet = lambda _line: None  # noqa: E731
    out: dict[str, object] = {"model_dir": str(model_dir), "wheelhouse_used_for_cold": not args.no_wheelhouse}

    t = time.perf_counter()
    wh = ensure_wheelhouse(log=quiet)
    out["wheelhouse_s"] = round(time.perf_counter() - t, 1)
    out["wheelhouse_mb"] = round(sum(p.stat().st_size for p in wh.iterdir()) / 1e6)

    def timed_build(include_dir: Path | None = None, nocache: bool = False) -> float:
        t0 = time.perf_counter()
        build_image(model_dir, [args.tag], nocache=nocache, include_dir=include_dir, log=quiet, client=client,
                    build_args={"GIT_COMMIT": "bench"}, use_wheelhouse=not (nocache and args.no_wheelhouse))
        return round(time.perf_counter() - t0, 1)

    if not args.skip_cold:
        out["cold_build_s"] = timed_build(nocache=True)
    out["warm_build_s"] = timed_build()

    with tempfile.TemporaryDirectory() as tmp:
        include = Path(tmp) / "include"
        shutil.copytree(settings.INCLUDE_DIR, include, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        shutil.copy2(settings.REPO_DIR / "pyproject.toml", Path(tmp) / "pyproject.toml")
        (include / "detectops" / "_bench_marker.py").write_text(f"STAMP = {time.time()!r}\n")
        out["code_only_rebuild_s"] = timed_build(include_dir=include)

    info = client.api.inspect_image(args.tag)
    out["image_size_gb"] = round(info["Size"] / 1e9, 3)
    history = client.api.history(args.tag)
    out["largest_layers_mb"] = sorted((round(h["Size"] / 1e6) for h in history), reverse=True)[:3]

    import os

    registry = os.environ.get("DETECTOPS_REGISTRY")
    if registry:
        ref = f"{registry}/detectops/detector:bench"
        client.api.tag(args.tag, f"{registry}/detectops/detector", "bench")
        t = time.perf_counter()
        push_image(ref, log=quiet, client=client)
        out["push_s"] = round(time.perf_counter() - t, 1)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
