"""A small client of Airflow's REST API (v2) for what tasks and the CLI do to Airflow itself.

Tasks set their run's note and the CLI emits Asset events through the same public API a
person or a CI workflow uses: a JWT from ``POST /auth/token``, then ``Authorization: Bearer``.
The address and login come from the ``detectops_airflow_api`` connection (tasks) or from
options and ``DETECTOPS_AIRFLOW_*`` environment variables (the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from detectops.errors import ServiceUnavailableError

AIRFLOW_API_CONN_ID = "detectops_airflow_api"
#: Longest note Airflow's API accepts (HTTP 422 above it).
NOTE_LIMIT = 1000


@dataclass
class AirflowApi:
    base_url: str
    username: str
    password: str
    timeout: float = 30

    def _session(self):
        import requests

        session = requests.Session()
        try:
            resp = session.post(f"{self.base_url.rstrip('/')}/auth/token",
                                json={"username": self.username, "password": self.password}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ServiceUnavailableError(f"Airflow's API at {self.base_url} did not answer ({exc})") from exc
        if resp.status_code in (401, 403):
            raise PermissionError(f"Airflow at {self.base_url} refused the login of {self.username!r}: check the password")
        resp.raise_for_status()
        session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
        return session

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        session = self._session()
        resp = session.request(method, f"{self.base_url.rstrip('/')}/api/v2/{path.lstrip('/')}",
                               timeout=self.timeout, **kwargs)
        if resp.status_code >= 500:
            raise ServiceUnavailableError(f"Airflow answered {resp.status_code} to {method} {path}: {resp.text[:300]}")
        if resp.status_code >= 400:
            raise ValueError(f"Airflow refused {method} {path} (HTTP {resp.status_code}): {resp.text[:500]}")
        return resp.json() if resp.content else None

    def set_run_note(self, dag_id: str, run_id: str, note: str) -> None:
        """The run's note (Markdown); Airflow keeps at most ``NOTE_LIMIT`` characters, so a longer one is cut."""
        if len(note) > NOTE_LIMIT:
            note = note[: NOTE_LIMIT - 2] + " …"
        self.call("PATCH", f"dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}", json={"note": note})

    def asset_id(self, uri: str) -> int:
        assets = self.call("GET", "assets", params={"uri_pattern": uri}).get("assets", [])
        exact = [a for a in assets if a.get("uri") == uri]
        if not exact:
            raise LookupError(f"Airflow knows no asset {uri!r}: is the DAG that uses it parsed?")
        return int(exact[0]["id"])

    def emit_asset_event(self, uri: str, extra: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", "assets/events", json={"asset_id": self.asset_id(uri), "extra": extra})

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return self.call("GET", path, params={"limit": 1000})["task_instances"]

    def dag_runs(self, dag_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The latest runs first."""
        return self.call("GET", f"dags/{quote(dag_id)}/dagRuns", params={"limit": limit, "order_by": "-run_after"})["dag_runs"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.call("GET", f"dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}")


def from_connection(conn_id: str = AIRFLOW_API_CONN_ID) -> AirflowApi:
    """The API of the ``detectops_airflow_api`` connection (HTTP: host, port, login, password)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    port = f":{conn.port}" if conn.port else ""
    return AirflowApi(f"{conn.schema or 'http'}://{conn.host}{port}", conn.login or "", conn.password or "")


def run_timeline(task_instances: list[dict[str, Any]], *, since: str | None = None) -> dict[str, Any]:
    """Where a DAG run's time went, from its task instances as the REST API returns them.

    Per task: ``seconds`` inside the task (``start_date`` -> ``end_date``) and ``wait_s``, the
    scheduler's overhead (``scheduled_when`` -> ``start_date``: queueing, the executor, the
    task process starting up). ``since``: an ISO time (for example when a batch landed) from
    which ``total_s`` is counted; by default the first task's ``scheduled_when``.
    """
    from datetime import datetime

    def at(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    done = [t for t in task_instances if t.get("start_date") and t.get("end_date")]
    done.sort(key=lambda t: t["start_date"])
    tasks = []
    for t in done:
        start, end, scheduled = at(t["start_date"]), at(t["end_date"]), at(t.get("scheduled_when"))
        tasks.append({"task_id": t["task_id"], "state": t.get("state"), "try_number": t.get("try_number"),
                      "seconds": round((end - start).total_seconds(), 1),
                      "wait_s": round((start - scheduled).total_seconds(), 1) if scheduled else None})
    if not tasks:
        return {"tasks": [], "total_s": 0.0, "inside_tasks_s": 0.0, "scheduler_wait_s": 0.0}
    first = at(since) or min(at(t.get("scheduled_when") or t["start_date"]) for t in done)
    last = max(at(t["end_date"]) for t in done)
    waits = [t["wait_s"] for t in tasks if t["wait_s"] is not None]
    return {"tasks": tasks, "total_s": round((last - first).total_seconds(), 1),
            "inside_tasks_s": round(sum(t["seconds"] for t in tasks), 1),
            "scheduler_wait_s": round(sum(waits), 1),
            "scheduler_wait_per_task_s": round(sum(waits) / len(waits), 2) if waits else None}
