"""Run DAGs for real with ``airflow dags test`` in an isolated AIRFLOW_HOME.

``airflow dags test`` executes every task in one process against a real metadata DB
(SQLite here), with the same operators, XComs and connections a scheduled run uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")


@dataclass
class DagTestRun:
    """``airflow dags test`` exits non-zero ("DagRun failed") when the run fails."""

    returncode: int
    output: str

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0


def airflow_env(airflow_home: Path, connections: dict[str, str | dict], extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an isolated Airflow: SQLite DB in ``airflow_home``, our dags/ and plugins/."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    for conn_id, value in connections.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    env.update(extra or {})
    return env


def migrate(env: dict[str, str]) -> None:
    out = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"airflow db migrate failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


def dags_test(env: dict[str, str], dag_id: str, conf: dict, timeout: int = 1800) -> DagTestRun:
    out = subprocess.run(
        [AIRFLOW, "dags", "test", dag_id, "--conf", json.dumps(conf)],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=str(REPO),
    )
    return DagTestRun(out.returncode, out.stdout + "\n" + out.stderr)
