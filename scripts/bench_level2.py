#!/usr/bin/env python3
"""Level 2, measured: release a good commit and a bad one, and print where the time goes.

    scripts/bench_level2.py                 # a good commit (promoted), then a slow one (rolled back)
    scripts/bench_level2.py --only good     # or --only bad

For each commit (made in a bare clone of this checkout's HEAD, tests/support/scratch_repo.py)
it triggers ``detectops_level2_cicd`` exactly as CI does (scripts/ci/trigger_level2.py), sends
photos through the production Service's NodePort on 127.0.0.1 at ``--rate`` per second for the
whole run, and prints:

- the run's time from trigger to the last task, split by task (staging is the level-1 run);
- the canary's time from its start to the decision (``start_canary`` start -> ``analyse`` end);
- the failed client requests during the promotion (``promote``) or the rollback (``roll_back``),
  and over the whole run (target: 0).

It needs the running stack of scripts/demo.sh with a model serving in production (level 1 put a
champion there) and reads its addresses as scripts/level1_demo.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support.scratch_repo

DAG_ID = "detectops_level2_cicd"


def _api():
    from detectops.airflow_api import AirflowApi

    home = Path(os.environ.get("AIRFLOW_HOME", REPO / ".state" / "airflow"))
    password = os.environ.get("DETECTOPS_AIRFLOW_PASSWORD") or json.loads((home / "passwords.json").read_text())["admin"]
    return AirflowApi(os.environ.get("AIRFLOW_URL", "http://127.0.0.1:8080"), "admin", password)


def _at(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def _trigger(api, sha: str, ref: str, repo: Path) -> str:
    env = {**os.environ, "DETECTOPS_AIRFLOW_URL": api.base_url, "DETECTOPS_AIRFLOW_USERNAME": api.username,
           "DETECTOPS_AIRFLOW_PASSWORD": api.password}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "ci" / "trigger_level2.py"), "--sha", sha,
                           "--ref", ref, "--repo", str(repo)], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)["dag_run_id"]


def _wait(api, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.dag_run(DAG_ID, run_id)
        if run["state"] in ("success", "failed"):
            return run
        time.sleep(5)
    raise SystemExit(f"{DAG_ID} run {run_id} not done after {timeout:.0f} s")


def release(api, kube, repo, kind: str, *, namespace: str, service: str, rate: float, timeout: float) -> dict:
    from detectops.deploy.loadgen import LoadGenerator, detect_request, nodeport_url
    from tests.support.scratch_repo import GOOD_EDIT, SLOW_EDIT

    edit, message = (GOOD_EDIT, "bench: a harmless change") if kind == "good" else (SLOW_EDIT, "bench: 0.4 s per request")
    sha = repo.commit(f"bench-{kind}", message, edit)
    photo = (REPO / "include" / "detectops" / "deploy" / "data" / "astronaut.jpg").read_bytes()
    traffic = LoadGenerator(nodeport_url(kube, namespace, service), **detect_request(photo), rate_per_s=rate,
                            concurrency=1, max_requests=100_000, max_seconds=timeout)
    with traffic:
        triggered = time.time()
        run_id = _trigger(api, sha, f"refs/heads/bench-{kind}", repo.bare)
        print(f"{kind} commit {sha[:12]}: run {run_id}", flush=True)
        run = _wait(api, run_id, timeout)
    tis = {t["task_id"]: t for t in api.task_instances(DAG_ID, run_id)}
    span = {k: (_at(t.get("start_date")), _at(t.get("end_date"))) for k, t in tis.items()}
    ended = max(e for _, e in span.values() if e)
    switch = "promote" if tis.get("promote", {}).get("state") == "success" else "roll_back"
    s0, s1 = span.get(switch, (None, None))
    during = traffic.samples_between(s0, s1) if s0 and s1 else []
    c0, c1 = span.get("start_canary", (None, None))[0], span.get("analyse", (None, None))[1]
    total = traffic.result()
    out = {
        "kind": kind, "sha": sha, "run_id": run_id, "state": run["state"],
        "trigger_to_last_task_s": round(ended - triggered, 1),
        "by_task_s": {k: round(e - s, 1) for k, (s, e) in sorted(span.items(), key=lambda kv: kv[1][0] or 0)
                      if s and e},
        "canary_start_to_decision_s": round(c1 - c0, 1) if c0 and c1 else None,
        "switch": switch, "switch_s": round(s1 - s0, 1) if s0 and s1 else None,
        "requests_during_switch": len(during), "failed_during_switch": sum(not x.ok for x in during),
        "requests": total.sent, "failed": total.failed, "answered_by": total.answered_by,
        "note": run.get("note") or "",
    }
    print(json.dumps({k: v for k, v in out.items() if k != "note"}, indent=1))
    print(out["note"], flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("good", "bad"))
    ap.add_argument("--rate", type=float, default=2.0, help="client requests per second through the NodePort")
    ap.add_argument("--namespace", default=None, help="production namespace (default: the DAG's Param)")
    ap.add_argument("--deployment", default=None, help="production Deployment/Service (default: the DAG's Param)")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args()

    from detectops.cicd.params import level2_params
    from detectops.deploy.kube import connect
    from tests.support.scratch_repo import ScratchRepo

    class _Param:
        def __init__(self, value, **schema):
            self.value, self.schema = value, schema

    defaults = {k: p.value for k, p in level2_params(_Param).items()}
    namespace, service = args.namespace or defaults["namespace"], args.deployment or defaults["deployment"]
    api, kube = _api(), connect(os.environ.get("KUBECONFIG"))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-level2-") as tmp:
        repo = ScratchRepo(Path(tmp))
        for kind in ([args.only] if args.only else ["good", "bad"]):
            results.append(release(api, kube, repo, kind, namespace=namespace, service=service, rate=args.rate,
                                   timeout=args.timeout))
    print("\n| commit | outcome | trigger to last task | tests | staging | canary start to decision | switch | "
          "failed during switch | failed in all |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        t = r["by_task_s"]
        print(f"| {r['kind']} | {r['state']} | {r['trigger_to_last_task_s']} s | {t.get('tests')} s | "
              f"{t.get('staging')} s | {r['canary_start_to_decision_s']} s | {r['switch']} {r['switch_s']} s | "
              f"{r['failed_during_switch']} of {r['requests_during_switch']} | {r['failed']} of {r['requests']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
