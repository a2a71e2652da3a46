#!/usr/bin/env python3
"""Trigger a DAG through the Airflow 3 REST API, wait for it, and print where to look.

    scripts/run_dag.py detectops_level0_manual --conf '{"deploy": true}'

Uses the same calls a CI workflow would: POST /auth/token, PATCH /api/v2/dags/{id}
(unpause), POST /api/v2/dags/{id}/dagRuns, GET .../dagRuns/{run_id}, and the XComs of
the evaluate/register/build tasks for the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import requests

TERMINAL = {"success", "failed"}


def token(base: str, password_file: Path) -> str:
    password = json.loads(password_file.read_text())["admin"]
    r = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    r.raise_for_status()
    return r.json()["access_token"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dag_id")
    parser.add_argument("--conf", default="{}", help="JSON run configuration (the DAG's Params)")
    parser.add_argument("--url", default=os.environ.get("AIRFLOW_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--passwords", type=Path, default=Path(os.environ.get("AIRFLOW_HOME", ".state/airflow")) / "passwords.json")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()

    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token(args.url, args.passwords)}"
    api = f"{args.url}/api/v2/dags/{args.dag_id}"

    # A new DAG file needs one dag-processor pass before the API knows it.
    deadline = time.time() + 180
    while (r := s.get(api, timeout=30)).status_code == 404 and time.time() < deadline:
        time.sleep(3)
    r.raise_for_status()
    s.patch(api, json={"is_paused": False}, timeout=30).raise_for_status()
    r = s.post(f"{api}/dagRuns", json={"logical_date": None, "conf": json.loads(args.conf)}, timeout=30)
    r.raise_for_status()
    run_id = r.json()["dag_run_id"]
    print(f"triggered {args.dag_id} run {run_id}", file=sys.stderr)

    started, last = time.time(), None
    while True:
        state = s.get(f"{api}/dagRuns/{run_id}", timeout=30).json()["state"]
        tis = s.get(f"{api}/dagRuns/{run_id}/taskInstances", timeout=30).json()["task_instances"]
        progress = ", ".join(f"{t['task_id']}{'[' + str(t['map_index']) + ']' if t['map_index'] >= 0 else ''}={t['state']}" for t in tis)
        if progress != last:
            print(f"[{time.time() - started:5.0f}s] {state}: {progress}", file=sys.stderr)
            last = progress
        if state in TERMINAL or time.time() - started > args.timeout:
            break
        time.sleep(5)

    def xcom(task_id: str):
        r = s.get(f"{api}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value", timeout=30)
        return r.json().get("value") if r.ok else None

    summary = {"dag_id": args.dag_id, "run_id": run_id, "state": state,
               "ui": f"{args.url}/dags/{args.dag_id}/runs/{run_id}"}
    for task_id in ("evaluate", "register", "build_image", "deploy", "smoke_test"):
        value = xcom(task_id)
        if value is not None:
            summary[task_id] = value
    print(json.dumps(summary, indent=2, default=str))
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
