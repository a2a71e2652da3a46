"""A failed DAG run notifies a webhook, through Airflow's notifier mechanism (``BaseNotifier``).

Every DetectOps DAG sets ``on_failure_callback=[RunFailedWebhook()]``. The webhook's address is
the ``detectops_alert_webhook`` connection (an HTTP connection: host, port, schema and the path
in ``extra.path``), the same kind of receiver Alertmanager posts to. No connection: the
notifier says so in the log and does nothing (a missing receiver never fails a run twice).

The payload is small, readable JSON::

    {"kind": "dag_run_failed", "dag_id": "...", "run_id": "...", "state": "failed",
     "failed_tasks": ["train"], "url": "http://127.0.0.1:8080/dags/.../runs/...", "reason": "..."}
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

WEBHOOK_CONN_ID = "detectops_alert_webhook"


def webhook_url(conn_id: str = WEBHOOK_CONN_ID) -> str | None:
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - not configured
        return None
    port = f":{conn.port}" if conn.port else ""
    path = (conn.extra_dejson or {}).get("path", "/")
    return f"{conn.schema or 'http'}://{conn.host}{port}/{path.lstrip('/')}"


def failure_payload(context: dict[str, Any]) -> dict[str, Any]:
    """What a failed run's notification says, from the callback's context."""
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "")
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id", "")
    failed: list[str] = []
    try:
        failed = sorted(ti.task_id for ti in dag_run.get_task_instances(state=["failed", "upstream_failed"]))
    except Exception:  # noqa: BLE001 - the list is a convenience; the run's page has it
        pass
    return {"kind": "dag_run_failed", "dag_id": dag_id, "run_id": run_id, "state": "failed",
            "failed_tasks": failed, "reason": str(context.get("reason") or context.get("exception") or ""),
            "url": f"/dags/{dag_id}/runs/{run_id}"}


class RunFailedWebhook(BaseNotifier):
    """Posts ``failure_payload`` to the ``detectops_alert_webhook`` connection's URL."""

    def __init__(self, conn_id: str = WEBHOOK_CONN_ID, timeout_s: float = 10.0) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.timeout_s = timeout_s

    def notify(self, context: dict[str, Any]) -> None:
        import requests

        url = webhook_url(self.conn_id)
        payload = failure_payload(context)
        if not url:
            log.warning("no %s connection: run %s of %s failed, nobody told", self.conn_id, payload["run_id"],
                        payload["dag_id"])
            return
        try:
            requests.post(url, json=payload, timeout=self.timeout_s).raise_for_status()
            log.info("told %s that %s/%s failed", url, payload["dag_id"], payload["run_id"])
        except requests.RequestException as exc:
            log.error("could not tell %s that %s/%s failed: %s", url, payload["dag_id"], payload["run_id"], exc)
