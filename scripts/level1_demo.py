#!/usr/bin/env python3
"""Level 1, live: generate a labelled batch, land it, and follow the run it starts to a served champion.

    scripts/level1_demo.py                      # a first batch: trains the first champion from scratch
    scripts/level1_demo.py --shifted --seed 2   # a darker, noisier batch of smaller objects: a warm retrain

It does what a company's labelling tool would: the batch goes into MLflow's artifact store and
the batch-landed Asset event is emitted through Airflow's REST API (``detectops land``). The
run that starts is the one the Asset event triggers, not a manual one. The script prints the
outcome, the run's note and where the time went, task by task, with the scheduler's share
(the landing-to-serving benchmark of docs/benchmarks.md). It needs the running stack of
scripts/demo.sh (Airflow, MLflow, the cluster) and reads its addresses from the environment
that scripts/services/airflow-env.sh sets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

DAG_ID = "detectops_level1_training"
FINAL = {"success", "failed"}


def _api():
    from detectops.airflow_api import AirflowApi

    home = Path(os.environ.get("AIRFLOW_HOME", ".state/airflow"))
    password = os.environ.get("DETECTOPS_AIRFLOW_PASSWORD") or json.loads((home / "passwords.json").read_text())["admin"]
    return AirflowApi(os.environ.get("AIRFLOW_URL", "http://127.0.0.1:8080"), "admin", password)


def _generate(out: Path, images: int, seed: int, shifted: bool) -> Path:
    from detectops.data.synthetic import SyntheticSpec, generate_synthetic

    knobs = dict(brightness=0.55, noise=0.08, object_size=(0.08, 0.25)) if shifted else {}
    generate_synthetic(out, SyntheticSpec(num_images=images, seed=seed, **knobs))
    return out


def _wait_idle(api, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while any(r["state"] in ("queued", "running") for r in api.dag_runs(DAG_ID)):
        if time.monotonic() > deadline:
            raise SystemExit(f"{DAG_ID} still has an active run after {timeout:.0f} s")
        print("waiting for the active level-1 run to finish first", flush=True)
        time.sleep(10)


def _wait_for_run(api, before: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in api.dag_runs(DAG_ID):
            if run["dag_run_id"] not in before and run["run_type"] == "asset_triggered":
                return run
        time.sleep(2)
    raise SystemExit(f"no asset-triggered run of {DAG_ID} within {timeout:.0f} s: is the DAG unpaused and the "
                     "triggerer running? (scripts/services/airflow.sh status)")


def main() -> int:
    from detectops.airflow_api import run_timeline
    from detectops.continuous.params import DEFAULT_MODEL
    from detectops.data.landing import land

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1500, help="images in the batch (the demo training config's size)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shifted", action="store_true", help="darker, noisier, smaller objects: a new domain")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=None, help="write the outcome and timings here as JSON")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    home = Path(os.environ.get("DETECTOPS_HOME", ".state"))
    name = f"demo-{'shifted' if args.shifted else 'batch'}-seed{args.seed}-{args.images}"
    batch = _generate(home / "demo-batches" / name, args.images, args.seed, args.shifted)
    api = _api()
    if api.call("GET", f"dags/{DAG_ID}")["is_paused"]:
        api.call("PATCH", f"dags/{DAG_ID}", json={"is_paused": False})
        time.sleep(15)  # unpausing runs the latest cron tick at once (catchup=False): let it start ...
    _wait_idle(api)  # ... and finish, so that it cannot collect the batch meant for the Asset-triggered run
    before = {r["dag_run_id"] for r in api.dag_runs(DAG_ID, limit=100)}

    landed_at = datetime.now(timezone.utc)
    event = land(batch, args.model, tracking_uri=os.environ["MLFLOW_TRACKING_URI"], api=api)
    print(f"landed {batch} ({args.images} images) as {event.get('location', '')}: Asset event emitted", flush=True)
    run = _wait_for_run(api, before, timeout=300)
    run_id = run["dag_run_id"]
    print(f"the Asset event started {run_id}", flush=True)

    last = None
    deadline = time.monotonic() + args.timeout
    while True:
        run = api.dag_run(DAG_ID, run_id)
        states = {t["task_id"]: t["state"] for t in api.task_instances(DAG_ID, run_id)}
        running = sorted(k for k, v in states.items() if v in ("running", "up_for_retry", "queued"))
        if running != last:
            elapsed = (datetime.now(timezone.utc) - landed_at).total_seconds()
            print(f"[{elapsed:5.0f} s] {run['state']}: {', '.join(running) or '-'}", flush=True)
            last = running
        if run["state"] in FINAL or time.monotonic() > deadline:
            break
        time.sleep(5)

    timeline = run_timeline(api.task_instances(DAG_ID, run_id), since=landed_at.isoformat())
    promoted = next((t for t in timeline["tasks"] if t["task_id"].endswith(".promote") and t["state"] == "success"), None)
    print(f"\n{run_id}: {run['state']}\nnote: {run.get('note') or '-'}\n")
    print(f"{'task':42s} {'seconds':>8s} {'scheduler wait':>15s}")
    for t in timeline["tasks"]:
        wait = "" if t["wait_s"] is None else f"{t['wait_s']:.1f}"
        print(f"{t['task_id']:42s} {t['seconds']:8.1f} {wait:>15s}")
    print(f"\nlanding -> last task {timeline['total_s']:.0f} s; inside tasks {timeline['inside_tasks_s']:.0f} s; "
          f"scheduler wait {timeline['scheduler_wait_s']:.0f} s ({timeline['scheduler_wait_per_task_s']} s per task)")
    if promoted:
        print("the new champion serves: promoted after its smoke test")
    if args.out:
        args.out.write_text(json.dumps({"run_id": run_id, "state": run["state"], "note": run.get("note"),
                                        "landed_at": landed_at.isoformat(), **timeline}, indent=1))
    return 0 if run["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
