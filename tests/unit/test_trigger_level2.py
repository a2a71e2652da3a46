"""scripts/ci/trigger_level2.py, the CI workflow's trigger of level 2, against a local HTTP
server that plays Airflow 3's two endpoints (POST /auth/token, /api/v2/dags/...).

The script runs as the workflow runs it: a subprocess with options from the environment. The
live Airflow end to end comes with the level-2 DAG (tests/e2e).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.support.http_stub import send_json

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ci" / "trigger_level2.py"
DAG_ID = "detectops_level2_cicd"
SHA = "0123456789abcdef0123456789abcdef01234567"
CONF = {"commit_sha": SHA, "ref": "refs/heads/main", "repo": "https://example.invalid/org/detectops.git"}


class FakeAirflow:
    """What the server does: known DAGs, failures to play, and every request it received."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.dags = {DAG_ID: {"dag_id": DAG_ID, "is_paused": False}}
        self.runs: dict[str, dict] = {}
        self.fail_next: dict[tuple[str, str], list[int]] = {}  # (method, path) -> statuses to answer first
        self.lose_answer_of_created_run = False  # create the run, then answer 503 (a lost answer)
        self.states = ["queued", "running", "success"]  # what successive GETs of a run answer
        self.token = "tok-1"


def _handler(fake: FakeAirflow):
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body) -> None:
            send_json(self, code, body)

        def _handle(self, method: str) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.loads(raw) if raw else None
            fake.requests.append({"method": method, "path": self.path, "body": body,
                                  "auth": self.headers.get("Authorization"),
                                  "content_type": self.headers.get("Content-Type")})
            queued = fake.fail_next.get((method, self.path))
            if queued:
                return self._reply(queued.pop(0), {"detail": "Service Unavailable"})
            if self.path == "/auth/token" and method == "POST":
                if body != {"username": "ci", "password": "s3cret"}:
                    return self._reply(401, {"detail": "Invalid credentials"})
                return self._reply(201, {"access_token": fake.token})
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                return self._reply(401, {"detail": "Not authenticated"})
            parts = self.path.split("/")  # '', api, v2, dags, <id>, dagRuns, <run>
            if parts[:4] != ["", "api", "v2", "dags"] or len(parts) < 5:
                return self._reply(404, {"detail": "Not Found"})
            dag = fake.dags.get(parts[4])
            if dag is None:
                return self._reply(404, {"detail": f"The Dag with ID: `{parts[4]}` was not found"})
            if len(parts) == 5 and method == "GET":
                return self._reply(200, dag)
            if len(parts) == 5 and method == "PATCH":
                dag.update(body)
                return self._reply(200, dag)
            if len(parts) == 6 and parts[5] == "dagRuns" and method == "POST":
                if set(body) - {"dag_run_id", "logical_date", "conf", "note"} or "logical_date" not in body:
                    return self._reply(422, {"detail": [{"type": "extra_forbidden", "loc": ["body"]}]})
                if body["dag_run_id"] in fake.runs:
                    return self._reply(409, {"detail": f"DAG run {body['dag_run_id']} already exists"})
                run = {"dag_run_id": body["dag_run_id"], "dag_id": parts[4], "state": "queued", "conf": body["conf"],
                       "note": body["note"], "logical_date": None}
                fake.runs[run["dag_run_id"]] = run
                if fake.lose_answer_of_created_run:
                    fake.lose_answer_of_created_run = False
                    return self._reply(503, {"detail": "upstream timed out"})
                return self._reply(200, run)
            if len(parts) == 7 and parts[5] == "dagRuns" and method == "GET":
                run = fake.runs.get(parts[6])
                if run is None:
                    return self._reply(404, {"detail": "DagRun not found"})
                if len(fake.states) > 1:
                    run["state"] = fake.states.pop(0)
                else:
                    run["state"] = fake.states[0]
                return self._reply(200, run)
            return self._reply(405, {"detail": "Method Not Allowed"})

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_PATCH(self):
            self._handle("PATCH")

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture()
def airflow():
    fake = FakeAirflow()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_port}"
    yield fake
    server.shutdown()
    server.server_close()


def run_script(url: str, *args: str, password: str = "s3cret", extra_env: dict | None = None,
               tmp_path: Path | None = None) -> subprocess.CompletedProcess:
    """The script as the workflow's step runs it: secrets and GitHub's variables in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DETECTOPS_", "GITHUB_"))}
    env.update({"DETECTOPS_AIRFLOW_URL": url, "DETECTOPS_AIRFLOW_USERNAME": "ci", "DETECTOPS_AIRFLOW_PASSWORD": password,
                "GITHUB_SHA": SHA, "GITHUB_REF": CONF["ref"], "DETECTOPS_REPO_URL": CONF["repo"]})
    env.update(extra_env or {})
    return subprocess.run([sys.executable, str(SCRIPT), "--backoff", "0.01", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _printed(proc: subprocess.CompletedProcess) -> dict[str, str]:
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def test_triggers_the_run_with_the_commit_and_prints_its_id_and_url(airflow, tmp_path):
    out, summary = tmp_path / "github_output", tmp_path / "summary.md"
    proc = run_script(airflow.url, extra_env={"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == 0, proc.stderr

    (run_id,) = airflow.runs
    assert run_id.startswith(f"ci__{SHA[:12]}__")
    printed = _printed(proc)
    assert printed == {"dag_run_id": run_id, "url": f"{airflow.url}/dags/{DAG_ID}/runs/{run_id}"}
    assert out.read_text() == f"dag_run_id={run_id}\nurl={printed['url']}\n"
    assert printed["url"] in summary.read_text()

    login, get_dag, post = airflow.requests
    assert (login["method"], login["path"], login["auth"]) == ("POST", "/auth/token", None)
    assert login["body"] == {"username": "ci", "password": "s3cret"} and login["content_type"] == "application/json"
    assert (get_dag["method"], get_dag["path"]) == ("GET", f"/api/v2/dags/{DAG_ID}")
    assert (post["method"], post["path"]) == ("POST", f"/api/v2/dags/{DAG_ID}/dagRuns")
    assert get_dag["auth"] == post["auth"] == "Bearer tok-1"
    assert post["content_type"] == "application/json"
    assert post["body"]["logical_date"] is None and post["body"]["dag_run_id"] == run_id
    assert post["body"]["conf"] == CONF
    assert SHA[:12] in post["body"]["note"] and "refs/heads/main" in post["body"]["note"]


def test_options_override_the_environment(airflow):
    other = "f" * 40
    proc = run_script(airflow.url, "--sha", other, "--ref", "refs/heads/release", "--repo", "file:///srv/detectops.git",
                      "--run-id", "ci__by_hand")
    assert proc.returncode == 0, proc.stderr
    assert airflow.runs["ci__by_hand"]["conf"] == {"commit_sha": other, "ref": "refs/heads/release",
                                                   "repo": "file:///srv/detectops.git"}
    proc = run_script(airflow.url, "--sha", other, "--run-id", "ci__approved", "--require-approval")
    assert proc.returncode == 0, proc.stderr
    assert airflow.runs["ci__approved"]["conf"]["require_approval"] is True


def test_transient_503s_are_retried_with_backoff(airflow):
    airflow.fail_next[("POST", "/auth/token")] = [503]
    airflow.fail_next[("POST", f"/api/v2/dags/{DAG_ID}/dagRuns")] = [503, 502]
    proc = run_script(airflow.url)
    assert proc.returncode == 0, proc.stderr
    assert len(airflow.runs) == 1
    posts = [r for r in airflow.requests if r["path"] == f"/api/v2/dags/{DAG_ID}/dagRuns"]
    assert len(posts) == 3 and posts[0]["body"] == posts[2]["body"]  # the same run id each time
    assert "HTTP 503" in proc.stderr and "retry 1/4" in proc.stderr and "retry 2/4" in proc.stderr


def test_a_retried_post_whose_first_answer_was_lost_finds_its_own_run(airflow):
    airflow.lose_answer_of_created_run = True  # created, then 503: the retry meets 409
    proc = run_script(airflow.url)
    assert proc.returncode == 0, proc.stderr
    (run_id,) = airflow.runs
    assert _printed(proc)["dag_run_id"] == run_id and "already existed" in proc.stderr


def test_a_run_id_taken_by_another_commit_is_an_error(airflow):
    airflow.runs["ci__taken"] = {"dag_run_id": "ci__taken", "conf": {"commit_sha": "e" * 40}, "state": "success"}
    proc = run_script(airflow.url, "--run-id", "ci__taken")
    assert proc.returncode == 2 and "already exists for another commit" in proc.stderr


def test_retries_are_bounded_then_it_says_airflow_is_unreachable(airflow):
    airflow.fail_next[("POST", "/auth/token")] = [503] * 10
    proc = run_script(airflow.url, "--attempts", "3")
    assert proc.returncode == 2
    assert sum(r["path"] == "/auth/token" for r in airflow.requests) == 3
    assert "did not answer POST /auth/token after 3 attempts (last: HTTP 503" in proc.stderr


def test_connection_refused_is_retried_then_reported():
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as server:
        port = server.server_port  # closed on exit: nothing listens there any more
    proc = run_script(f"http://127.0.0.1:{port}", "--attempts", "2")
    assert proc.returncode == 2
    assert "retry 1/1" in proc.stderr and "after 2 attempts" in proc.stderr and "refused" in proc.stderr.lower()


def test_an_unknown_dag_fails_at_once_with_a_clear_message(airflow):
    proc = run_script(airflow.url, "--dag-id", "detectops_level2_nope")
    assert proc.returncode == 2
    assert "HTTP 404" in proc.stderr and "detectops_level2_nope" in proc.stderr
    assert "is the DAG file deployed, and has the dag-processor parsed it?" in proc.stderr
    assert "retry" not in proc.stderr and not airflow.runs
    assert [r["path"] for r in airflow.requests] == ["/auth/token", "/api/v2/dags/detectops_level2_nope"]


def test_bad_credentials_fail_at_once(airflow):
    proc = run_script(airflow.url, password="wrong")
    assert proc.returncode == 2 and "retry" not in proc.stderr
    assert "refused the login of 'ci' (HTTP 401): check the username and password" in proc.stderr
    assert len(airflow.requests) == 1


def test_forbidden_and_invalid_answers_fail_at_once(airflow):
    airflow.fail_next[("POST", f"/api/v2/dags/{DAG_ID}/dagRuns")] = [403]
    proc = run_script(airflow.url)
    assert proc.returncode == 2 and "HTTP 403" in proc.stderr and "may not" in proc.stderr and "retry" not in proc.stderr
    airflow.fail_next[("POST", f"/api/v2/dags/{DAG_ID}/dagRuns")] = [422]
    proc = run_script(airflow.url)
    assert proc.returncode == 2 and "HTTP 422" in proc.stderr and not airflow.runs


def test_an_expired_token_is_renewed_once(airflow):
    proc = run_script(airflow.url)
    assert proc.returncode == 0
    airflow.requests.clear()
    airflow.token = "tok-2"  # the server forgets tok-1 only after the script's login: renew then
    airflow.fail_next[("GET", f"/api/v2/dags/{DAG_ID}")] = [401]
    proc = run_script(airflow.url)
    assert proc.returncode == 0, proc.stderr
    assert [r["path"] for r in airflow.requests].count("/auth/token") == 2


def test_inputs_are_checked_before_any_request(airflow):
    proc = run_script(airflow.url, "--sha", "abc123")
    assert proc.returncode == 2 and "full 40-hex commit SHA" in proc.stderr
    proc = run_script(airflow.url, extra_env={"DETECTOPS_AIRFLOW_PASSWORD": "", "DETECTOPS_REPO_URL": ""})
    assert proc.returncode == 2 and "--password ($DETECTOPS_AIRFLOW_PASSWORD)" in proc.stderr and "--repo" in proc.stderr
    assert not airflow.requests


def test_the_repo_defaults_to_githubs_own_variables(airflow):
    proc = run_script(airflow.url, extra_env={"DETECTOPS_REPO_URL": "", "GITHUB_SERVER_URL": "https://github.com",
                                              "GITHUB_REPOSITORY": "org/detectops"})
    assert proc.returncode == 0, proc.stderr
    (run,) = airflow.runs.values()
    assert run["conf"]["repo"] == "https://github.com/org/detectops.git"


def test_wait_follows_the_run_to_success(airflow):
    proc = run_script(airflow.url, "--wait", "--poll", "0.01")
    assert proc.returncode == 0, proc.stderr
    assert _printed(proc)["state"] == "success"
    assert ": queued" in proc.stderr and ": running" in proc.stderr and ": success" in proc.stderr


def test_wait_exits_non_zero_when_the_run_fails(airflow):
    airflow.states = ["running", "failed"]
    proc = run_script(airflow.url, "--wait", "--poll", "0.01")
    assert proc.returncode == 1
    assert _printed(proc)["state"] == "failed" and "failed: see http://127.0.0.1" in proc.stderr


def test_wait_gives_up_after_its_timeout(airflow):
    airflow.states = ["running"]
    proc = run_script(airflow.url, "--wait", "--poll", "0.05", "--timeout", "0.2")
    assert proc.returncode == 1 and _printed(proc)["state"] == "timeout" and "did not finish within" in proc.stderr


def test_a_paused_dag_is_reported_and_unpaused_only_when_asked(airflow):
    airflow.dags[DAG_ID]["is_paused"] = True
    proc = run_script(airflow.url)
    assert proc.returncode == 0 and "is paused" in proc.stderr and airflow.dags[DAG_ID]["is_paused"] is True
    proc = run_script(airflow.url, "--wait", "--run-id", "ci__paused")
    assert proc.returncode == 2 and "--wait would wait for nothing" in proc.stderr

    proc = run_script(airflow.url, "--unpause", "--wait", "--poll", "0.01", "--run-id", "ci__unpaused")
    assert proc.returncode == 0, proc.stderr
    assert airflow.dags[DAG_ID]["is_paused"] is False
    patch = [r for r in airflow.requests if r["method"] == "PATCH"]
    assert [(p["path"], p["body"]) for p in patch] == [(f"/api/v2/dags/{DAG_ID}", {"is_paused": False})]
