#!/usr/bin/env python3
"""Trigger level 2 (``detectops_level2_cicd``) for a commit through Airflow 3's REST API.

The CI workflow's step on main (.github/workflows/ci.yml) runs exactly this, and so does the
end-to-end test against the live Airflow:

    DETECTOPS_AIRFLOW_URL=http://127.0.0.1:8080 DETECTOPS_AIRFLOW_USERNAME=admin \\
    DETECTOPS_AIRFLOW_PASSWORD=... scripts/ci/trigger_level2.py \\
        --sha "$(git rev-parse HEAD)" --ref refs/heads/main --repo https://github.com/org/detectops.git

1. ``POST {url}/auth/token`` {"username", "password"} -> a JWT (``access_token``);
2. ``GET {url}/api/v2/dags/{dag_id}``: the DAG exists (and is it paused? ``--unpause``);
3. ``POST {url}/api/v2/dags/{dag_id}/dagRuns`` {"dag_run_id", "logical_date": null,
   "conf": {"commit_sha", "ref", "repo"[, "require_approval"]}, "note"};
4. with ``--wait``: ``GET .../dagRuns/{dag_run_id}`` until the run is ``success`` or ``failed``.

Prints ``dag_run_id=...`` and ``url=...`` (the run in the Airflow UI) on stdout, and appends
them to ``$GITHUB_OUTPUT`` / ``$GITHUB_STEP_SUMMARY`` when GitHub Actions sets those.

Transient failures (connection errors, timeouts, HTTP 408/425/429/5xx) are retried a bounded
number of times with exponential backoff. A refusal fails at once with what to fix: 401 (bad
credentials), 403 (no permission), 404 (no such DAG), 400/422 (conf rejected). The run id is
chosen here (``ci__<sha12>__<UTC time>``), so a POST retried after a lost answer finds its own
run (HTTP 409) instead of starting a second one.

Exit codes: 0 triggered (with ``--wait``: the run succeeded); 1 the run failed or ``--wait``
timed out; 2 nothing was triggered or the wait could not go on (bad input, refused, unreachable).

Standard library only, so it runs on any Python >= 3.9 without the project installed (the
project's ``detectops.airflow_api.AirflowApi`` needs ``requests`` and logs in on every call).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

DAG_ID = "detectops_level2_cicd"
TERMINAL = ("success", "failed")
TRANSIENT_STATUS = frozenset({408, 425, 429})  # and every 5xx
REFUSED_HINTS = {
    400: "the DAG rejected the request (its Params?)",
    401: "not authenticated: check the username and password (DETECTOPS_AIRFLOW_USERNAME/PASSWORD)",
    403: "this user may not do that: give it a role that can trigger DAG runs",
    404: "not found: is the DAG file deployed, and has the dag-processor parsed it?",
    422: "the request was rejected as invalid",
}


class TriggerError(Exception):
    """Nothing useful can be done by retrying: the message says what to fix."""


class Unreachable(TriggerError):
    """Airflow did not answer usefully within the bounded retries."""


class Airflow:
    """The few calls level 2's trigger needs, with retries on transient failures."""

    def __init__(self, base_url: str, username: str, password: str, *, attempts: int = 5, backoff: float = 2.0,
                 timeout: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> None:
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self.attempts, self.backoff, self.timeout = max(1, attempts), backoff, timeout
        self.sleep, self.log = sleep, log
        self.token: str | None = None

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> tuple[int, Any]:
        """(status, decoded JSON or text); transient failures retried, other answers returned."""
        url = f"{self.base_url}{path}"
        data = None if body is None else json.dumps(body).encode()
        last = ""
        for attempt in range(1, self.attempts + 1):
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            if auth:
                headers["Authorization"] = f"Bearer {self.token}"
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return resp.status, _decode(resp.read())
            except urllib.error.HTTPError as exc:
                status, payload = exc.code, _decode(exc.read())
                if status < 500 and status not in TRANSIENT_STATUS:
                    return status, payload
                last = f"HTTP {status}: {_detail(payload)}"
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS, timeout
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                self.log(f"{method} {path}: {last}; retry {attempt}/{self.attempts - 1} in {delay:g} s")
                self.sleep(delay)
        raise Unreachable(f"Airflow at {self.base_url} did not answer {method} {path} "
                          f"after {self.attempts} attempts (last: {last})")

    def login(self) -> None:
        status, payload = self.request("POST", "/auth/token",
                                       {"username": self.username, "password": self.password}, auth=False)
        if status in (200, 201) and isinstance(payload, dict) and payload.get("access_token"):
            self.token = payload["access_token"]
            return
        if status in (401, 403):
            raise TriggerError(f"Airflow at {self.base_url} refused the login of {self.username!r} (HTTP {status}): "
                               "check the username and password (DETECTOPS_AIRFLOW_USERNAME/PASSWORD)")
        raise TriggerError(f"POST {self.base_url}/auth/token answered HTTP {status} without a token: {_detail(payload)}"
                           " (is this the Airflow 3 api-server's address?)")

    def api(self, method: str, path: str, body: Any = None, *, ok: tuple[int, ...] = (200, 201)) -> tuple[int, Any]:
        """A call to /api/v2 that logs in first, and once more if the token expired."""
        if self.token is None:
            self.login()
        status, payload = self.request(method, f"/api/v2/{path}", body)
        if status == 401:
            self.login()
            status, payload = self.request(method, f"/api/v2/{path}", body)
        if status not in ok:
            hint = REFUSED_HINTS.get(status, "unexpected answer")
            raise TriggerError(f"Airflow at {self.base_url} refused {method} /api/v2/{path} "
                               f"(HTTP {status}: {_detail(payload)}): {hint}")
        return status, payload


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _detail(payload: Any) -> str:
    if isinstance(payload, dict) and "detail" in payload:
        payload = payload["detail"]
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return text[:500]


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The run in the Airflow 3 UI (the same form as ``airflow.utils.helpers.build_airflow_dagrun_url``)."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe=':+')}"


def new_run_id(sha: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"ci__{sha[:12]}__{now:%Y%m%dT%H%M%SZ}"


def trigger(af: Airflow, dag_id: str, conf: dict[str, str], run_id: str, *, unpause: bool = False,
            note: str | None = None) -> tuple[dict[str, Any], bool]:
    """Create the run (or find it, when a retried POST already had): (the DAG run, still paused?)."""
    _, dag = af.api("GET", f"dags/{quote(dag_id)}")
    if dag.get("is_paused"):
        if unpause:
            af.api("PATCH", f"dags/{quote(dag_id)}", {"is_paused": False})
            af.log(f"{dag_id} was paused: unpaused it (--unpause)")
        else:
            af.log(f"WARNING: {dag_id} is paused: the run stays queued until someone unpauses the DAG "
                   "(or pass --unpause)")
    body = {"dag_run_id": run_id, "logical_date": None, "conf": conf, "note": note}
    status, run = af.api("POST", f"dags/{quote(dag_id)}/dagRuns", body, ok=(200, 201, 409))
    if status == 409:  # a run with this id exists: ours if an earlier attempt's answer was lost
        _, run = af.api("GET", f"dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}")
        if (run.get("conf") or {}).get("commit_sha") != conf["commit_sha"]:
            raise TriggerError(f"a run {run_id!r} of {dag_id} already exists for another commit: pass another --run-id")
        af.log(f"run {run_id} already existed (an earlier attempt created it)")
    return run, bool(dag.get("is_paused")) and not unpause


def wait(af: Airflow, dag_id: str, run_id: str, *, timeout: float, poll: float,
         clock: Callable[[], float] = time.monotonic) -> str:
    """Poll the run until it is terminal; its state, or 'timeout'."""
    deadline, last = clock() + timeout, None
    while True:
        _, run = af.api("GET", f"dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}")
        state = run.get("state")
        if state != last:
            af.log(f"{dag_id} {run_id}: {state}")
            last = state
        if state in TERMINAL:
            return state
        if clock() >= deadline:
            return "timeout"
        af.sleep(poll)


def _github_env(name: str) -> str | None:
    return os.environ.get(name) or None


def default_repo() -> str | None:
    if os.environ.get("DETECTOPS_REPO_URL"):
        return os.environ["DETECTOPS_REPO_URL"]
    server, repo = _github_env("GITHUB_SERVER_URL"), _github_env("GITHUB_REPOSITORY")
    return f"{server}/{repo}.git" if server and repo else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Options default to the environment variables named in their help.")
    p.add_argument("--url", default=env("DETECTOPS_AIRFLOW_URL"), help="Airflow's base URL ($DETECTOPS_AIRFLOW_URL)")
    p.add_argument("--username", default=env("DETECTOPS_AIRFLOW_USERNAME"), help="$DETECTOPS_AIRFLOW_USERNAME")
    p.add_argument("--password", default=env("DETECTOPS_AIRFLOW_PASSWORD"),
                   help="$DETECTOPS_AIRFLOW_PASSWORD (prefer the variable: arguments show in `ps`)")
    p.add_argument("--sha", default=env("GITHUB_SHA"), help="the full commit SHA ($GITHUB_SHA)")
    p.add_argument("--ref", default=env("GITHUB_REF"), help="the git ref, e.g. refs/heads/main ($GITHUB_REF)")
    p.add_argument("--repo", default=default_repo(),
                   help="the repository's git URL ($DETECTOPS_REPO_URL, else $GITHUB_SERVER_URL/$GITHUB_REPOSITORY.git)")
    p.add_argument("--dag-id", default=DAG_ID)
    p.add_argument("--run-id", help="the DAG run id (default ci__<sha12>__<UTC time>)")
    p.add_argument("--require-approval", action="store_true",
                   help="the run waits for a person to approve the promotion (Required Actions / REST API)")
    p.add_argument("--unpause", action="store_true", help="unpause the DAG if it is paused")
    p.add_argument("--wait", action="store_true", help="wait for the run to finish; exit 1 unless it succeeded")
    p.add_argument("--timeout", type=float, default=7200, help="seconds --wait waits (default 7200)")
    p.add_argument("--poll", type=float, default=15, help="seconds between --wait's polls (default 15)")
    p.add_argument("--attempts", type=int, default=5, help="tries of each call on transient failures (default 5)")
    p.add_argument("--backoff", type=float, default=2.0, help="first retry delay in s, doubled each time (default 2)")
    args = p.parse_args(argv)
    missing = [f"--{k} (${v})" for k, v in (("url", "DETECTOPS_AIRFLOW_URL"), ("username", "DETECTOPS_AIRFLOW_USERNAME"),
                                             ("password", "DETECTOPS_AIRFLOW_PASSWORD"), ("sha", "GITHUB_SHA"),
                                             ("ref", "GITHUB_REF"), ("repo", "DETECTOPS_REPO_URL"))
               if not getattr(args, k)]
    if missing:
        p.error(f"missing {', '.join(missing)}; in the CI workflow they come from the repository's secrets "
                "DETECTOPS_AIRFLOW_URL/USERNAME/PASSWORD and GitHub's own variables")
    if not re.fullmatch(r"[0-9a-f]{40}", args.sha):
        p.error(f"--sha must be a full 40-hex commit SHA (the image tag is immutable), got {args.sha!r}")
    if not re.match(r"https?://", args.url):
        p.error(f"--url must be http(s)://host[:port] of Airflow's api-server, got {args.url!r}")
    return args


def _publish(pairs: dict[str, str], run_link: str) -> None:
    for key, value in pairs.items():
        print(f"{key}={value}")
    if _github_env("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            out.writelines(f"{k}={v}\n" for k, v in pairs.items())
    if _github_env("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as out:
            out.write(f"Level 2: [{pairs['dag_run_id']}]({run_link})"
                      + (f" — {pairs['state']}" if "state" in pairs else "") + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    af = Airflow(args.url, args.username, args.password, attempts=args.attempts, backoff=args.backoff)
    conf = {"commit_sha": args.sha, "ref": args.ref, "repo": args.repo}
    if args.require_approval:
        conf["require_approval"] = True
    run_id = args.run_id or new_run_id(args.sha)
    note = f"Triggered by CI: {args.repo} @ {args.sha[:12]} ({args.ref})"
    try:
        run, paused = trigger(af, args.dag_id, conf, run_id, unpause=args.unpause, note=note)
        run_id = run.get("dag_run_id", run_id)
        link = run_url(args.url, args.dag_id, run_id)
        af.log(f"triggered {args.dag_id} for {args.sha} ({args.ref}): {link}")
        if not args.wait:
            _publish({"dag_run_id": run_id, "url": link}, link)
            return 0
        if paused:
            raise TriggerError(f"{args.dag_id} is paused, so --wait would wait for nothing: unpause it or pass --unpause")
        state = wait(af, args.dag_id, run_id, timeout=args.timeout, poll=args.poll)
    except TriggerError as exc:
        print(f"trigger_level2: ERROR: {exc}", file=sys.stderr)
        return 2
    _publish({"dag_run_id": run_id, "url": link, "state": state}, link)
    if state != "success":
        what = f"did not finish within {args.timeout:g} s" if state == "timeout" else "failed"
        print(f"trigger_level2: ERROR: {args.dag_id} run {run_id} {what}: see {link}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
