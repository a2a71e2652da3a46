#!/usr/bin/env python
"""Benchmark the HTTP service against the model's own speed, on the same images, in one run.

1. Raw baseline: the SavedModel in this process (``Detector.predict`` on decoded arrays),
   sequential: latency p50/p99 and throughput. Measured before and after the service runs,
   because other load on a shared machine moves the numbers; ratios use the mean.
2. The service: a real uvicorn server on 127.0.0.1 in a separate process (``detectops.serve.run``),
   HTTP clients in this process sending the same photos as base64 JPEG to the TF-Serving
   ``:predict`` endpoint (and multipart to ``/detect``):
   - single sequential requests, each paired with a raw call on the same image (so both
     see the same background load): p50/p99 (goal: p50 <= 1.15x raw p50);
   - 8 concurrent clients, for a few engine settings (inference workers, micro-batching):
     throughput (goal: >= 0.9x the model's best in-process rate, at its best concurrency of
     1-8 threads).
3. The prediction log's features per image (``monitoring.features``): goal <= 2% of p50.

    .venv/bin/python scripts/benchmarks/bench_serve.py                  # CenterNet (fetch_model("centernet"))
    .venv/bin/python scripts/benchmarks/bench_serve.py --model-dir DIR  # any contract SavedModel

Note the client runs on the same cores as the server: its base64/JSON work is part of what
the service has to absorb here.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "include"))


def load_images(limit: int) -> list[tuple[str, bytes, np.ndarray]]:
    """(name, JPEG bytes, decoded RGB) for real photos: skimage's CC0 set, then darknet's if installed."""
    from PIL import Image
    from skimage import data

    arrays = [(n, getattr(data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    darknet = Path("/usr/share/darknet/data")
    for name in ("dog", "person", "horses", "kite", "giraffe", "eagle"):
        p = darknet / f"{name}.jpg"
        if p.is_file():
            arrays.append((name, np.asarray(Image.open(p).convert("RGB"))))
    out = []
    for name, arr in arrays[:limit]:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        jpeg = buf.getvalue()
        out.append((name, jpeg, np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))))
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def raw_baseline(det, images, n: int, decode: bool = False) -> dict[str, float]:
    """Sequential in-process ``det.predict`` on decoded arrays (or from the JPEG bytes)."""
    from PIL import Image

    for _, _, arr in images[:3]:
        det.predict(arr)
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        _, jpeg, arr = images[i % len(images)]
        s = time.perf_counter()
        det.predict(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")) if decode else arr)
        lat.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "rps": n / wall}


def timed_workers(count: int, work) -> float:
    """Run ``work(k, start)`` in ``count`` threads; each waits on the barrier ``start`` before its
    timed part. Returns the wall time from that common start until the last one finished."""
    start = threading.Barrier(count + 1)
    pool = [threading.Thread(target=work, args=(k, start)) for k in range(count)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return time.perf_counter() - t0


def raw_concurrent(det, images, threads: int, per_thread: int) -> dict[str, float]:
    """``threads`` threads calling ``det.predict`` in this process: the model's own best rate needs
    more than one call in flight (TensorFlow overlaps their ops), so the service is judged
    against the best of these, not against sequential calls."""
    lat: list[float] = []

    def worker(k: int, start: threading.Barrier) -> None:
        start.wait()
        for i in range(per_thread):
            s = time.perf_counter()
            det.predict(images[(k + i) % len(images)][2])
            lat.append(time.perf_counter() - s)

    wall = timed_workers(threads, worker)
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "rps": threads * per_thread / wall}


def feature_cost_ms(images, rounds: int = 20) -> float:
    """Median time of the prediction log's features of one image (what the service adds per image)."""
    from detectops.monitoring.features import box_sizes, image_features, output_features

    boxes = np.array([[0.1, 0.1, 0.5, 0.4], [0.2, 0.3, 0.9, 0.8]], np.float32)
    times = []
    for _ in range(rounds):
        for _, _, arr in images:
            s = time.perf_counter()
            image_features(arr)
            output_features([0.9, 0.5], [1, 2], box_sizes(boxes))
            times.append(time.perf_counter() - s)
    return float(np.median(times)) * 1e3


def paired(url: str, det, images, bodies: list[bytes], n: int) -> tuple[dict[str, float], dict[str, float], float]:
    """Raw call and HTTP request on the same image, alternating, so both see the same background
    load (the machine is shared). Returns (raw, service, median of per-pair latency ratios)."""
    import httpx

    raw, srv = [], []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(3):
            http.post("/v1/models/detector:predict", content=bodies[i % len(bodies)],
                      headers={"content-type": "application/json"})
        for i in range(n):
            k = i % len(images)
            s = time.perf_counter()
            det.predict(images[k][2])
            raw.append(time.perf_counter() - s)
            s = time.perf_counter()
            r = http.post("/v1/models/detector:predict", content=bodies[k], headers={"content-type": "application/json"})
            r.raise_for_status()
            srv.append(time.perf_counter() - s)

    def summary(lat: list[float]) -> dict[str, float]:
        return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "rps": len(lat) / sum(lat)}

    return summary(raw), summary(srv), float(np.median(np.asarray(srv) / np.asarray(raw)))


class Server:
    """``detectops.serve.run`` in a child process; stopped with SIGTERM by its PID."""

    def __init__(self, model_dir: Path, batch: int, wait_ms: float, workers: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=str(REPO / "include"), DETECTOPS_MODEL_DIR=str(model_dir),
                   DETECTOPS_MAX_BATCH_SIZE=str(batch), DETECTOPS_BATCH_WAIT_MS=str(wait_ms),
                   DETECTOPS_INFERENCE_WORKERS=str(workers),
                   DETECTOPS_PREDICTION_LOG=os.environ.get("DETECTOPS_PREDICTION_LOG", ""),
                   TF_CPP_MIN_LOG_LEVEL="2")
        code = ("import sys; from detectops.serve import ServeSettings, run; "
                "run(ServeSettings.from_env(), host='127.0.0.1', port=int(sys.argv[1]), "
                "log_level='warning', access_log=False)")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 180) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server not ready in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def predict_bodies(images) -> list[bytes]:
    return [json.dumps({"instances": [{"b64": base64.b64encode(jpeg).decode()}]}).encode() for _, jpeg, _ in images]


def sequential(url: str, bodies: list[bytes], n: int, path: str = "/v1/models/detector:predict",
               files: list[bytes] | None = None) -> dict[str, float]:
    import httpx

    lat = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(3):  # warm the connection and the server's code paths
            http.post(path, content=bodies[i % len(bodies)], headers={"content-type": "application/json"})
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter()
            if files is None:
                r = http.post(path, content=bodies[i % len(bodies)], headers={"content-type": "application/json"})
            else:
                r = http.post(path, files={"file": ("a.jpg", files[i % len(files)], "image/jpeg")})
            r.raise_for_status()
            lat.append(time.perf_counter() - s)
        wall = time.perf_counter() - t0
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "rps": n / wall}


def concurrent(url: str, bodies: list[bytes], clients: int, per_client: int) -> dict[str, float]:
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(k: int, start: threading.Barrier) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            http.post("/v1/models/detector:predict", content=bodies[k % len(bodies)],
                      headers={"content-type": "application/json"})
            start.wait()
            mine = []
            for i in range(per_client):
                s = time.perf_counter()
                r = http.post("/v1/models/detector:predict", content=bodies[(k + i) % len(bodies)],
                              headers={"content-type": "application/json"})
                mine.append(time.perf_counter() - s)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:100]}")
            with lock:
                lat.extend(mine)

    wall = timed_workers(clients, worker)
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "rps": clients * per_client / wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, help="a contract SavedModel (default: fetch_model('centernet'))")
    ap.add_argument("--images", type=int, default=8, help="how many real photos to cycle through")
    ap.add_argument("-n", "--requests", type=int, default=80, help="sequential requests (and raw calls)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--per-client", type=int, default=20, help="requests per concurrent client")
    ap.add_argument("--batching", default="1:0:2,1:0:1,4:5:2",
                    help="engine settings to try, max_batch_size:max_wait_ms[:inference_workers] (default 2 "
                         "workers), comma-separated; the first is also measured with single requests")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    if args.model_dir is None:
        from detectops.models import fetch_model

        ref = fetch_model("centernet")
        model_dir, model_name = Path(ref.path), f"centernet ({ref.source})"
    else:
        model_dir, model_name = args.model_dir, str(args.model_dir)
    images = load_images(args.images)
    bodies = predict_bodies(images)
    settings = [(*(float(x) for x in s.split(":")[:2]), int(s.split(":")[2]) if s.count(":") == 2 else 2)
                for s in args.batching.split(",")]
    print(f"model: {model_name}\nimages: {', '.join(n for n, _, _ in images)} "
          f"({len(images)} photos, JPEG {min(len(j) for _, j, _ in images) // 1024}-"
          f"{max(len(j) for _, j, _ in images) // 1024} KiB)\ncpus: {os.cpu_count()}, "
          f"load average at start: {os.getloadavg()[0]:.1f}\n", flush=True)

    from detectops.models import Detector

    det = Detector.load(model_dir)
    rows: list[tuple[str, dict[str, float]]] = []
    raw1 = raw_baseline(det, images, args.requests)
    rows.append(("raw SavedModel, in-process, sequential (before)", raw1))
    print("raw (before):", {k: round(v, 1) for k, v in raw1.items()}, flush=True)
    best_raw = max((raw_concurrent(det, images, k, max(4, args.requests // k)) | {"threads": k}
                    for k in (1, 2, 4, 8)), key=lambda r: r["rps"])
    rows.append((f"raw SavedModel, in-process, {best_raw['threads']} threads (best concurrency)", best_raw))
    print("raw, best concurrency:", {k: round(v, 1) for k, v in best_raw.items()}, flush=True)
    rawd = raw_baseline(det, images, args.requests // 2, decode=True)
    rows.append(("raw SavedModel incl. JPEG decode (PIL), sequential", rawd))
    print("raw incl. decode:", {k: round(v, 1) for k, v in rawd.items()}, flush=True)
    pair_ratio = None

    for batch, wait, workers in settings:
        srv = Server(model_dir, int(batch), wait, workers)
        engine = f"batch {int(batch)}, wait {wait:g} ms, {workers} worker{'s' if workers > 1 else ''}"
        try:
            srv.wait_ready()
            if (batch, wait, workers) == settings[0]:
                praw, pseq, pair_ratio = paired(srv.url, det, images, bodies, args.requests)
                rows.append(("paired: raw SavedModel call", praw))
                rows.append((f"paired: service :predict, sequential ({engine})", pseq))
                print("paired raw/service:", {k: round(v, 1) for k, v in praw.items()},
                      {k: round(v, 1) for k, v in pseq.items()}, f"median ratio {pair_ratio:.2f}", flush=True)
                dres = sequential(srv.url, bodies, args.requests // 2, path="/detect",
                                 files=[j for _, j, _ in images])
                rows.append((f"service /detect, sequential ({engine})", dres))
                print("detect:", {k: round(v, 1) for k, v in dres.items()}, flush=True)
            conc = concurrent(srv.url, bodies, args.clients, args.per_client)
            rows.append((f"service :predict, {args.clients} clients ({engine})", conc))
            print("concurrent:", {k: round(v, 1) for k, v in conc.items()}, flush=True)
        finally:
            srv.stop()

    raw2 = raw_baseline(det, images, args.requests)
    rows.append(("raw SavedModel, in-process, sequential (after)", raw2))
    raw_p50 = (raw1["p50_ms"] + raw2["p50_ms"]) / 2
    raw_rps = (raw1["rps"] + raw2["rps"]) / 2
    features_ms = feature_cost_ms(images)

    print(f"\n{'run':<72} {'p50 ms':>8} {'p99 ms':>8} {'img/s':>7} {'p50/raw':>8} {'rps/raw':>8}")
    for name, r in rows:
        print(f"{name:<72} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['rps']:7.2f} "
              f"{r['p50_ms'] / raw_p50:8.2f} {r['rps'] / raw_rps:8.2f}")
    praw = next(r for n, r in rows if n == "paired: raw SavedModel call")
    pseq = next(r for n, r in rows if n.startswith("paired: service"))
    best = max((r for n, r in rows if "clients" in n), key=lambda r: r["rps"])
    ratio = pseq["p50_ms"] / praw["p50_ms"]
    print(f"\ngoal p50 <= 1.15x raw (paired, same load): {ratio:.2f}x "
          f"(median per-request ratio {pair_ratio:.2f}x)  {'met' if ratio <= 1.15 else 'NOT met'}")
    print(f"goal {args.clients}-client throughput >= 0.9x the model's best in-process rate "
          f"({best_raw['rps']:.2f} img/s, {best_raw['threads']} threads): {best['rps'] / best_raw['rps']:.2f}x "
          f"(best setting)  {'met' if best['rps'] >= 0.9 * best_raw['rps'] else 'NOT met'}")
    print(f"goal prediction-log features <= 2% of p50: {features_ms:.2f} ms per image = "
          f"{100 * features_ms / pseq['p50_ms']:.1f}% of the service's p50  "
          f"{'met' if features_ms <= 0.02 * pseq['p50_ms'] else 'NOT met'}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"model": model_name, "rows": dict(rows), "raw_p50_ms": raw_p50,
                                         "raw_rps": raw_rps, "raw_best_rps": best_raw["rps"],
                                         "features_ms": features_ms}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
