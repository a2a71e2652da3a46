"""The append-only prediction store against a real MLflow server: overlapping appends store nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

pytestmark = [pytest.mark.integration]

T0 = datetime(2026, 11, 26, 15, 50, tzinfo=timezone.utc)


def _record(minutes: float, request_id: str, instance: int = 0) -> dict:
    return {"time": (T0 + timedelta(minutes=minutes)).isoformat(), "request_id": request_id, "instance": instance,
            "model_name": "m", "model_version": "1", "num_detections": 2, "brightness_mean": 100.0 + minutes,
            "classes": [1, 2], "scores": [0.9, 0.5], "box_sizes": [0.1, 0.2], "mean_score": 0.7}


def test_appends_are_idempotent_across_hours_and_reads_filter_the_window(mlflow_server):
    from detectops.monitoring.store import PredictionStore

    store = PredictionStore("store-test-model", tracking_uri=mlflow_server)
    first = [_record(m, f"r{m}") for m in (1, 5, 9, 12)]  # 15:51 .. 16:02: two hour partitions
    assert store.append(first) == 4
    parts = {h: store._parts(h) for h in ("2026-11-26T15", "2026-11-26T16")}
    assert [len(p) for p in parts.values()] == [1, 1]  # one part per hour per append
    # An overlapping collection (a retry, the next window) brings two old records and one new.
    assert store.append([_record(9, "r9"), _record(12, "r12"), _record(12, "r12", instance=1)]) == 1
    assert store.append([_record(12, "r12", instance=1)]) == 0
    assert store._parts("2026-11-26T15") == parts["2026-11-26T15"]  # nothing new there: no file
    assert len(store._parts("2026-11-26T16")) == 2

    every = store.read(T0, T0 + timedelta(hours=1))
    assert list(every["request_id"]) == ["r1", "r5", "r9", "r12", "r12"]
    assert list(every["instance"]) == [0, 0, 0, 0, 1]
    assert list(every.iloc[0]["classes"]) == [1, 2]
    window = store.read(T0 + timedelta(minutes=5), T0 + timedelta(minutes=12))
    assert list(window["request_id"]) == ["r5", "r9"]
    # A second store object finds the same run: one home per model.
    assert PredictionStore("store-test-model", tracking_uri=mlflow_server).run_id() == store.run_id()
    assert PredictionStore("other-model", tracking_uri=mlflow_server).read(T0, T0 + timedelta(hours=1)).empty
