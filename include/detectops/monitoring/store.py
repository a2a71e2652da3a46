"""The prediction store: an append-only table of prediction records in MLflow's artifact store.

One MLflow run per registered model (experiment ``detectops-predictions``, tags
``detectops.kind=predictions`` and ``detectops.model``) holds Parquet files partitioned by the
hour of each record's time::

    predictions/hour=2026-11-26T15/part-<hash of the part's record keys>.parquet

Appending never rewrites a file: it reads the keys already stored in each hour it touches and
writes only the new records, as a part named by their keys. So a retried or overlapping
collection stores nothing twice, and writing the same part again is a no-op. Writers of one
model take a Kubernetes Lease (:func:`store_lock`) so that two of them never decide "new" from
the same stale listing.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from detectops.monitoring.collect import parse_time, record_key

PREDICTIONS_EXPERIMENT = "detectops-predictions"
ROOT = "predictions"
TAG_KIND, TAG_MODEL = "detectops.kind", "detectops.model"


def hour_of(value: str | datetime) -> str:
    at = parse_time(value) if isinstance(value, str) else value
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H")


def hours_between(start: datetime, end: datetime) -> list[str]:
    """The hour partitions that ``[start, end)`` touches."""
    hour = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < end:
        out.append(hour.strftime("%Y-%m-%dT%H"))
        hour += timedelta(hours=1)
    return out


class PredictionStore:
    def __init__(self, model_name: str, *, tracking_uri: str | None) -> None:
        from detectops.evaluate.mlflow_log import connect

        self.model_name = model_name
        self.tracking_uri = tracking_uri
        self.client = connect(tracking_uri)
        self._run: str | None = None

    # -- the run that holds the files ----------------------------------------------------------
    def run_id(self, *, create: bool = True) -> str | None:
        if self._run:
            return self._run
        from detectops.evaluate.mlflow_log import get_or_create_experiment

        experiment_id = get_or_create_experiment(self.client, PREDICTIONS_EXPERIMENT)
        query = f"tags.`{TAG_KIND}` = 'predictions' and tags.`{TAG_MODEL}` = '{self.model_name}'"
        # The oldest run wins: should two writers ever both create one, both then use the same.
        found = self.client.search_runs([experiment_id], query, order_by=["attributes.start_time ASC"], max_results=1)
        if found:
            self._run = found[0].info.run_id
        elif create:
            run = self.client.create_run(experiment_id, run_name=f"predictions-{self.model_name}",
                                         tags={TAG_KIND: "predictions", TAG_MODEL: self.model_name})
            self._run = run.info.run_id
        return self._run

    def _parts(self, hour: str) -> list[str]:
        run_id = self.run_id(create=False)
        if not run_id:
            return []
        return sorted(f.path for f in self.client.list_artifacts(run_id, f"{ROOT}/hour={hour}")
                      if f.path.endswith(".parquet"))

    def _load(self, paths: Sequence[str], columns: list[str] | None = None) -> Any:
        import pandas as pd

        if not paths:
            return pd.DataFrame()
        with tempfile.TemporaryDirectory() as tmp:
            frames = [pd.read_parquet(self.client.download_artifacts(self.run_id(), p, tmp), columns=columns)
                      for p in paths]
        return pd.concat(frames, ignore_index=True)

    # -- write ---------------------------------------------------------------------------------
    def append(self, records: Sequence[dict[str, Any]]) -> int:
        """Store the records not stored yet (by ``request_id:instance``); returns how many were new."""
        import pandas as pd

        by_hour: dict[str, dict[str, dict[str, Any]]] = {}
        for r in records:
            by_hour.setdefault(hour_of(r["time"]), {})[record_key(r)] = r
        new_total = 0
        for hour, keyed in sorted(by_hour.items()):
            stored = self._load(self._parts(hour), columns=["request_id", "instance"])
            known = {f"{a}:{b}" for a, b in zip(stored.get("request_id", []), stored.get("instance", []))}
            new = [keyed[k] for k in sorted(keyed) if k not in known]
            if not new:
                continue
            frame = pd.DataFrame(new)
            frame["instance"] = frame.get("instance", 0)
            frame["instance"] = frame["instance"].fillna(0).astype(int)
            digest = hashlib.sha256("\n".join(sorted(record_key(r) for r in new)).encode()).hexdigest()[:20]
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"part-{digest}.parquet"
                frame.to_parquet(path, index=False)
                self.client.log_artifact(self.run_id(), str(path), artifact_path=f"{ROOT}/hour={hour}")
            new_total += len(new)
        return new_total

    # -- read ----------------------------------------------------------------------------------
    def read(self, start: datetime, end: datetime) -> Any:
        """The records of ``[start, end)`` as a DataFrame (time-ordered, one row per record key)."""
        import pandas as pd

        paths = [p for hour in hours_between(start, end) for p in self._parts(hour)]
        frame = self._load(paths)
        if frame.empty:
            return frame
        times = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
        frame = frame[(times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))]
        frame = frame.drop_duplicates(subset=["request_id", "instance"])
        return frame.sort_values("time", kind="stable").reset_index(drop=True)


@contextlib.contextmanager
def store_lock(kube: Any, model_name: str, holder: str, *, wait_s: float = 120) -> Iterator[None]:
    """Hold the prediction store's Lease of ``model_name`` (a Lease of its own, not the deploy lock)."""
    from detectops.deploy import lock
    from detectops.errors import ServiceUnavailableError

    key = f"{model_name}#predictions"
    deadline = time.monotonic() + wait_s
    while lock.try_acquire(kube, key, holder, lease_s=600).holder != holder:
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(f"the prediction store of {model_name!r} stayed locked for {wait_s:.0f} s")
        time.sleep(2)
    try:
        yield
    finally:
        lock.release(kube, key, holder)
