"""A live Airflow 3 for a test session: api-server, scheduler, dag-processor and triggerer.

The same settings as ``scripts/services/airflow.sh``: the environment is taken by sourcing
``scripts/services/airflow-env.sh`` itself (so the tests exercise the file users run, not a
copy of it), with an AIRFLOW_HOME in a pytest tmp dir, a free port (never a developer's
8080) and a known admin password. Every component is its own process group, stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.services import ServiceStartError, free_port, stop_process, wait_http

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).parent / "airflow"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
USERNAME = "admin"


@dataclass(frozen=True)
class LiveAirflow:
    """Where the live Airflow answers and how to log in; ``home`` holds its DB and logs."""

    base_url: str
    username: str
    password: str
    home: Path
    #: The environment the components run with (DETECTOPS_LANDING_DIR, DETECTOPS_LEVEL1_DEFAULTS, ...).
    env: dict = field(default_factory=dict, repr=False, compare=False)

    def __iter__(self):  # ``base_url, username, password = live_airflow``
        return iter((self.base_url, self.username, self.password))

    def log_tail(self, component: str, chars: int = 3000) -> str:
        path = self.home / "logs" / f"{component}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else f"(no {path})"


def live_airflow_env(home: Path, port: int, *, connections: dict[str, str] | None = None,
                     extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of ``scripts/services/airflow-env.sh`` for ``home`` and ``port``.

    The shell file creates ``jwt_secret`` (shared by every component, so task tokens verify)
    and ``passwords.json`` (the simple auth manager's passwords) in ``home`` when missing.
    """
    base = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_PORT": str(port),
        "DETECTOPS_VENV": str(Path(sys.executable).parent.parent),
        # 2 cores: keep the LocalExecutor small (the shell file keeps a value already set).
        "AIRFLOW__CORE__PARALLELISM": "2",
    }
    script = f'set -e; . "{REPO}/scripts/lib.sh"; . "{REPO}/scripts/services/airflow-env.sh"; env -0'
    out = subprocess.run(["bash", "-c", script], env=base, capture_output=True, timeout=60, check=False)
    if out.returncode != 0:
        raise ServiceStartError(f"sourcing airflow-env.sh failed: {out.stderr.decode(errors='replace')[-2000:]}")
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    # Tests want the new DAG parsed quickly; everything else stays as users run it.
    env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] = "5"
    for conn_id, uri in (connections or {}).items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
    env.update(extra or {})
    return env


@contextmanager
def run_live_airflow(home: Path, *, connections: dict[str, str] | None = None,
                     extra: dict[str, str] | None = None, timeout: float = 180.0) -> Iterator[LiveAirflow]:
    """Migrate the DB, start the four components, wait for ``/api/v2/monitor/health``; stop them after.

    Raises ``ServiceStartError`` (with the log tail) when Airflow does not become healthy.
    """
    if not AIRFLOW.exists():
        raise ServiceStartError(f"{AIRFLOW} not found: install the project's requirements into this venv")
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    password = "detectops-test-" + os.urandom(6).hex()
    (home / "passwords.json").write_text(json.dumps({USERNAME: password}))
    port = free_port()
    connections = {**(connections or {}),
                   # Tasks reach this Airflow's own REST API (run notes) through a Connection too.
                   "detectops_airflow_api": f"http://{USERNAME}:{password}@127.0.0.1:{port}"}
    env = live_airflow_env(home, port, connections=connections, extra=extra)
    base_url = env["AIRFLOW_URL"]
    live = LiveAirflow(base_url, USERNAME, password, home, env=env)

    migrate = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True,
                             timeout=600, cwd=str(REPO))
    if migrate.returncode != 0:
        raise ServiceStartError(f"airflow db migrate failed:\n{(migrate.stdout + migrate.stderr)[-3000:]}")

    procs: dict[str, subprocess.Popen] = {}
    try:
        for component in COMPONENTS:
            with open(home / "logs" / f"{component}.log", "wb") as log:
                procs[component] = subprocess.Popen(
                    [str(AIRFLOW), component], env=env, cwd=str(REPO), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
        if not wait_http(f"{base_url}/api/v2/monitor/health", timeout, procs["api-server"]):
            raise ServiceStartError(f"the api-server did not answer {base_url}/api/v2/monitor/health "
                                    f"within {timeout:.0f} s; log tail:\n{live.log_tail('api-server')}")
        dead = [c for c, p in procs.items() if p.poll() is not None]
        if dead:
            raise ServiceStartError(f"airflow {dead[0]} exited at start; log tail:\n{live.log_tail(dead[0])}")
        yield live
    finally:
        # Scheduling stops before the API the workers report to goes away; the three schedulers
        # stop side by side (one after another took 44 s at the end of every suite).
        with ThreadPoolExecutor(max_workers=len(procs) or 1) as pool:
            list(pool.map(lambda c: stop_process(procs[c], timeout=30), [c for c in procs if c != "api-server"]))
        if "api-server" in procs:
            stop_process(procs["api-server"], timeout=30)


def infra_connections() -> dict[str, str]:
    """The registry and cluster Connections of the local infrastructure (``.state/infra/env.sh``)."""
    from tests.integration.test_image import infra_env

    infra = infra_env()
    host, _, port = infra["DETECTOPS_REGISTRY"].partition(":")
    return {
        "detectops_registry": json.dumps({
            "conn_type": "generic", "host": host, "port": int(port),
            "extra": {"docker_host": infra["DOCKER_HOST"], "repository": "detectops/detector",
                      "base_image": infra["DETECTOPS_BASE_IMAGE"]}}),
        "kubernetes_default": json.dumps({
            "conn_type": "kubernetes",
            "extra": {"kube_config_path": infra["KUBECONFIG"], "namespace": "detectops",
                      "xcom_sidecar_container_image": infra["DETECTOPS_BASE_IMAGE"]}}),
        # Started by scripts/infra/up.sh (scripts/infra/prometheus.sh).
        "detectops_prometheus": infra.get("DETECTOPS_PROMETHEUS_URL") or "http://127.0.0.1:9090",
    }


#: Level 1 in the test Airflow: a cron every 4 minutes (scenario "the schedule fires"), and
#: defaults that train a small network for a minute instead of the 5-minute demo detector.
LEVEL1_CRON = "*/4 * * * *"
LEVEL1_TEST_DEFAULTS = {
    "model_name": "shapes-e2e",
    "namespace": "detectops-e2e-shapes",
    "deployment": "shapes-e2e",
    # 40 s of training on 2 cores: val AP50 about 0.28 on the first batch (untrained: 0.00).
    "train_config": json.dumps({"preset": "tiny", "input_size": 96, "widths": [16, 24, 48, 64], "head_width": 32,
                                "epochs": 12, "steps_per_epoch": 20, "batch_size": 8, "eval_max_images": 24,
                                "learning_rate": 0.01}),
    # Absolute thresholds a model that learned reaches and an untrained one does not; a "not worse" margin.
    "min_ap": 0.03, "min_ap50": 0.1, "map_margin": -0.05,
    # The evaluation budget at work: candidate and champion on a 28-image stratified sample of the
    # test split once it is larger (35 images after scenario 2's batch).
    "eval_max_images": 28,
    "max_class_ap_drop": 0.3, "max_slice_ap_drop": 0.3, "p95_latency_ms_budget": 1000.0,
}

#: Level 2 in the test Airflow: the level-1 test model, staging trains the same small network for
#: fewer steps (it warm-starts from the champion), and the canary is judged over two windows of at
#: least two scrapes each (``canary_windows``: 30 s at the demo's 15-second scrape, 15 s at CI's 5).
LEVEL2_TEST_DEFAULTS = {
    "model_name": LEVEL1_TEST_DEFAULTS["model_name"],
    "namespace": LEVEL1_TEST_DEFAULTS["namespace"],
    "deployment": LEVEL1_TEST_DEFAULTS["deployment"],
    "staging_namespace": "detectops-e2e-staging",
    "staging_train_config": json.dumps({**json.loads(LEVEL1_TEST_DEFAULTS["train_config"]), "epochs": 5}),
    "staging_map_margin": LEVEL1_TEST_DEFAULTS["map_margin"],
    # The pod runs level 2's own and the gate's unit tests here (about 10 s); the DAG's default runs
    # all of tests/unit in the test image (366 tests, about 85 s: docs/benchmarks.md).
    "test_args": "-q -p no:cacheprovider tests/unit/test_cicd_steps.py tests/unit/test_gate.py",
    # 50 ms of p99 slack: a 2-core machine running the whole stack jitters by tens of ms; the bad
    # commit adds 400 ms.
    "windows": 2, "max_failed_windows": 2, "max_windows": 4, "min_requests": 10,
    "p99_tolerance_s": 0.05,
    "load_rate_per_s": 6.0,
}


def scrape_interval_s() -> float:
    """The running Prometheus' scrape interval (``scripts/infra/prometheus.sh`` writes it down); 15 s if unknown."""
    from tests.integration.test_image import infra_env

    settings = Path(infra_env()["DETECTOPS_INFRA_DIR"]) / "prometheus" / "settings.env"
    found = re.search(r"^DETECTOPS_PROMETHEUS_SCRAPE_INTERVAL=(\d+)s$", settings.read_text() if settings.is_file() else "", re.M)
    return float(found.group(1)) if found else 15.0


def canary_windows(scrape_s: float) -> dict[str, float]:
    """Canary windows that hold at least two scrapes (``increase()`` needs two samples) and at least
    15 s of load, after a warm-up of two scrapes, at least 10 s (the canary's first requests are slow)."""
    return {"window_s": max(15.0, 2 * scrape_s), "warmup_s": max(10.0, 2 * scrape_s)}


@pytest.fixture(scope="session")
def live_airflow(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> Iterator[LiveAirflow]:
    """A live Airflow on a free port whose ``mlflow_default`` is the session's MLflow server, with
    the local registry and cluster as Connections and its own landing area.

    Unpack it as ``base_url, username, password = live_airflow``; ``.home`` has the logs.
    """
    home = tmp_path_factory.mktemp("live_airflow")
    work = tmp_path_factory.mktemp("live_airflow_work")
    landing = tmp_path_factory.mktemp("landing")
    with ExitStack() as stack:
        try:
            live = stack.enter_context(run_live_airflow(
                home, connections={"mlflow_default": mlflow_server, **infra_connections()},
                extra={"DETECTOPS_WORK": str(work), "DETECTOPS_LANDING_DIR": str(landing),
                       "DETECTOPS_LEVEL1_CRON": LEVEL1_CRON,
                       "DETECTOPS_LEVEL1_DEFAULTS": json.dumps(LEVEL1_TEST_DEFAULTS),
                       "DETECTOPS_LEVEL2_DEFAULTS": json.dumps(
                           {**LEVEL2_TEST_DEFAULTS, **canary_windows(scrape_interval_s())})}))
        except ServiceStartError as exc:
            pytest.skip(f"a live Airflow could not start ({exc}). Install the requirements "
                        "(`pip install -r requirements.txt`); `scripts/services/airflow.sh start` starts "
                        "the same services by hand (logs in $AIRFLOW_HOME/logs)")
        yield live
