"""Collect prediction-log records from the serving pods through the Kubernetes API, as a log shipper would.

The serving app writes one JSON line per image to stdout (``serve.predlog``); the kubelet keeps
those lines with its own timestamp. For a window ``[start, end)`` the collector reads, for every
pod of the model's Deployment (every track), the current container's log and, when the
container restarted, the previous container's log too (``previous=true``), from ``start``
(``sinceSeconds``, rounded up, then filtered exactly by the kubelet timestamp). Records are
keyed by ``(request_id, instance)``: a line read twice (overlapping windows, both containers,
a retried task) is one record.

Lines that are not JSON objects (the server's own access log) are not records. A line that is
JSON but misses the record's fields, or is cut (log rotation, a full disk), is counted as
``malformed`` and skipped: one bad line never stops a collection.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

#: Fields every prediction record has (``serve.processing._record``).
REQUIRED = ("time", "request_id", "model_name", "model_version", "num_detections")
CONTAINER = "detector"


def record_key(record: dict[str, Any]) -> str:
    """One image of one request: a request to ``:predict`` may carry several images (``instance``)."""
    return f"{record['request_id']}:{record.get('instance', 0)}"


def parse_time(value: str) -> datetime:
    """RFC 3339 with nanoseconds (the kubelet's) or microseconds (the app's) -> aware datetime."""
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # datetime takes at most 6 fractional digits
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass
class Collected:
    """Records of a window, de-duplicated, plus what was skipped and where the lines came from."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    malformed: int = 0
    duplicates: int = 0
    sources: list[str] = field(default_factory=list)

    def add_lines(self, lines: Iterable[str], *, start: datetime, end: datetime, source: str,
                  timestamps: bool = True) -> None:
        """Parse a log; ``timestamps``: each line starts with the kubelet's RFC 3339 time and a space."""
        self.sources.append(source)
        for raw in lines:
            line = raw.strip()
            if not line:
                continue
            logged_at = None
            if timestamps:
                stamp, _, line = line.partition(" ")
                try:
                    logged_at = parse_time(stamp)
                except ValueError:
                    self.malformed += 1
                    continue
            if not line.startswith("{"):
                continue  # not a prediction record (the server's own log lines)
            try:
                record = json.loads(line)
                at = parse_time(record["time"]) if isinstance(record, dict) and "time" in record else None
            except (ValueError, TypeError):
                self.malformed += 1
                continue
            if at is None or any(k not in record for k in REQUIRED):
                self.malformed += 1
                continue
            if not start <= (logged_at or at) < end:
                continue
            key = record_key(record)
            if key in self.records:
                self.duplicates += 1
                continue
            self.records[key] = record

    def sorted_records(self) -> list[dict[str, Any]]:
        return sorted(self.records.values(), key=lambda r: (r["time"], record_key(r)))


def _since_seconds(start: datetime, now: datetime) -> int:
    return max(1, math.ceil((now - start).total_seconds()) + 1)


def collect_from_cluster(core: Any, namespace: str, deployment: str, *, start: datetime, end: datetime,
                         now: datetime | None = None) -> Collected:
    """Records of ``[start, end)`` from every pod of ``deployment`` (label ``app.kubernetes.io/name``).

    ``core``: a ``kubernetes.client.CoreV1Api``. Pods of every track carry the label, so a canary's
    records are collected with the stable ones (each record names its model version).
    """
    from kubernetes.client.exceptions import ApiException

    now = now or datetime.now(timezone.utc)
    since = _since_seconds(start, now)
    out = Collected()
    pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={deployment}").items
    for pod in pods:
        statuses = {s.name: s for s in (pod.status.container_statuses or [])}
        restarted = (statuses.get(CONTAINER) and statuses[CONTAINER].restart_count) or 0
        for previous in ((False, True) if restarted else (False,)):
            try:
                # _preload_content=False: the client otherwise "deserializes" a plain-text log into the
                # repr of its bytes ("b'...\\n...'"): one unusable line.
                response = core.read_namespaced_pod_log(pod.metadata.name, namespace, container=CONTAINER,
                                                        previous=previous, since_seconds=since, timestamps=True,
                                                        _preload_content=False)
                text = response.data.decode("utf-8", errors="replace")
            except ApiException as exc:
                if exc.status in (400, 404):  # not started yet, or no previous container kept
                    continue
                raise
            out.add_lines(text.splitlines(), start=start, end=end,
                          source=f"{pod.metadata.name}{' (previous)' if previous else ''}")
    return out


#: How far back the deploy path reads a pod's log before replacing it: everything the kubelet
#: still has (records stored already are skipped by the store).
SHIP_LOOKBACK = timedelta(hours=24)


def ship_before_removal(kube: Any, spec: dict[str, Any], *, tracking_uri: str, holder: str) -> dict[str, Any]:
    """Store the records of the Deployment's current pods before a rollout or removal replaces them.

    ``spec``: a ``DeploySpec`` dict (namespace, deployment, model name). A first deploy has no pods.
    """
    from detectops.monitoring.store import PredictionStore, store_lock

    now = datetime.now(timezone.utc)
    collected = collect_from_cluster(kube.core, spec["namespace"], spec["deployment"], start=now - SHIP_LOOKBACK,
                                     end=now + timedelta(seconds=1), now=now)
    new = 0
    if collected.records:
        with store_lock(kube, spec["model_name"], holder):
            new = PredictionStore(spec["model_name"], tracking_uri=tracking_uri).append(collected.sorted_records())
    print(f"shipped the prediction log of {len(collected.sources)} container(s) of {spec['namespace']}/"
          f"{spec['deployment']}: {len(collected.records)} records, {new} new to the store")
    return {"records": len(collected.records), "new": new, "malformed": collected.malformed,
            "sources": collected.sources}
