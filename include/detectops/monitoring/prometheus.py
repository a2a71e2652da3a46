"""A small client for Prometheus' HTTP API: instant queries and range queries.

    from detectops.monitoring.prometheus import PrometheusClient
    prom = PrometheusClient()                       # DETECTOPS_PROMETHEUS_URL, else 127.0.0.1:9090
    for s in prom.query('sum by (model) (rate(detectops_http_requests_total[5m]))'):
        print(s["metric"]["model"], s["value"][1])
    prom.query_range("process_resident_memory_bytes", start=t0, end=t1, step=15)

Failures are sorted the way the rest of DetectOps sorts them (``detectops.errors``):
- Prometheus unreachable, timing out, or answering 5xx (503 while it starts, 500 on an internal
  error, a proxy's 502): ``ServiceUnavailableError`` — transient, a retry may succeed;
- a bad query (400 ``bad_data``) or one Prometheus cannot execute (422 ``execution``, e.g.
  ``many-to-many matching not allowed``): ``ValueError`` with Prometheus' own message and the
  query — retrying it fails the same way;
- anything else that is not the API's JSON (a wrong URL's 404, an HTML page): ``DetectOpsError``.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import requests

from detectops.errors import DetectOpsError, ServiceUnavailableError

DEFAULT_URL = "http://127.0.0.1:9090"

Timestamp = float | datetime | str


def default_url() -> str:
    """``DETECTOPS_PROMETHEUS_URL`` (exported by ``scripts/infra/up.sh``'s env.sh), else 127.0.0.1:9090."""
    return (os.environ.get("DETECTOPS_PROMETHEUS_URL") or DEFAULT_URL).rstrip("/")


def _timestamp(value: Timestamp) -> str:
    if isinstance(value, datetime):
        return f"{value.timestamp():.3f}"
    return str(value)  # Unix seconds or RFC 3339, as the API takes them


class PrometheusClient:
    """``query`` and ``query_range`` against one Prometheus; returns the ``data.result`` list."""

    def __init__(self, url: str | None = None, *, timeout_s: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def query(self, promql: str, *, time: Timestamp | None = None) -> list[dict[str, Any]]:
        """An instant query: ``[{"metric": {...}, "value": [ts, "1.5"]}, ...]`` for a vector."""
        params = {"query": promql}
        if time is not None:
            params["time"] = _timestamp(time)
        return self._call("/api/v1/query", params, promql)["result"]

    def query_range(self, promql: str, *, start: Timestamp, end: Timestamp,
                    step: float | str) -> list[dict[str, Any]]:
        """A range query: ``[{"metric": {...}, "values": [[ts, "1.5"], ...]}, ...]``."""
        params = {"query": promql, "start": _timestamp(start), "end": _timestamp(end), "step": str(step)}
        return self._call("/api/v1/query_range", params, promql)["result"]

    def _call(self, path: str, params: dict[str, str], promql: str) -> dict[str, Any]:
        url = self.url + path
        try:
            # POST (form-encoded) rather than GET: long queries do not hit URL length limits.
            resp = self.session.post(url, data=params, timeout=self.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServiceUnavailableError(
                f"Prometheus at {self.url} is not reachable ({type(exc).__name__}). Is it running? "
                "Start it with scripts/infra/prometheus.sh start (or scripts/infra/up.sh).") from exc
        body = _json_or_none(resp)
        error = body.get("error") if isinstance(body, dict) else None
        if resp.status_code >= 500:
            raise ServiceUnavailableError(
                f"Prometheus at {self.url} answered HTTP {resp.status_code} to {path}"
                f"{': ' + error if error else ''}; it may be starting or overloaded, try again.")
        if resp.status_code in (400, 422):
            kind = body.get("errorType", "bad_data") if isinstance(body, dict) else "bad_data"
            raise ValueError(f"Prometheus refused the query ({kind}): {error or resp.text[:300]}\n"
                             f"  query: {promql}")
        if resp.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
            raise DetectOpsError(
                f"{url} did not answer as Prometheus' HTTP API does (HTTP {resp.status_code}: "
                f"{resp.text[:200]!r}). Check the URL (DETECTOPS_PROMETHEUS_URL={self.url}).")
        return body["data"]


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
