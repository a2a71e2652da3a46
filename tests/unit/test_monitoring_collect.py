"""The prediction-log collector: parsing, the time window, de-duplication and malformed lines."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from detectops.monitoring.collect import Collected, parse_time, record_key
from detectops.monitoring.store import hour_of, hours_between

T0 = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)


def _line(seconds: float, request_id: str, instance: int = 0, **extra) -> str:
    at = T0 + timedelta(seconds=seconds)
    record = {"time": at.isoformat(), "request_id": request_id, "instance": instance, "model_name": "m",
              "model_version": "3", "num_detections": 1, **extra}
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # the kubelet's nanoseconds
    return f"{stamp} {json.dumps(record)}"


def test_kubelet_and_app_timestamps_parse_to_the_same_instant():
    assert parse_time("2026-11-26T15:00:01.123456789Z") == datetime(2026, 11, 26, 15, 0, 1, 123456, tzinfo=timezone.utc)
    assert parse_time("2026-11-26T15:00:01+00:00") == datetime(2026, 11, 26, 15, 0, 1, tzinfo=timezone.utc)


def test_the_same_line_read_twice_is_one_record_and_instances_of_one_request_are_two():
    c = Collected()
    lines = [_line(1, "a"), _line(2, "b", 0), _line(2, "b", 1)]
    end = T0 + timedelta(minutes=1)
    c.add_lines(lines, start=T0, end=end, source="pod-1")
    c.add_lines(lines[:1], start=T0, end=end, source="pod-1 (previous)")  # overlap: the previous container
    assert sorted(c.records) == ["a:0", "b:0", "b:1"] and c.duplicates == 1 and c.malformed == 0
    assert [record_key(r) for r in c.sorted_records()] == ["a:0", "b:0", "b:1"]


def test_window_bounds_server_lines_and_malformed_lines():
    c = Collected()
    lines = [
        _line(-1, "before"), _line(0, "first"), _line(59.9, "last"), _line(60, "after"),
        "2026-11-26T15:00:05.000Z INFO:     10.244.0.1:5000 - \"GET /healthz HTTP/1.1\" 200 OK",  # not a record
        '2026-11-26T15:00:06.000Z {"time": "2026-11-26T15:00:06+00:00", "request_id": "cut',   # rotated mid-line
        '2026-11-26T15:00:07.000Z {"time": "2026-11-26T15:00:07+00:00", "request_id": "x"}',   # fields missing
        "garbage-without-timestamp",
        "",
    ]
    c.add_lines(lines, start=T0, end=T0 + timedelta(seconds=60), source="pod-1")
    assert sorted(c.records) == ["first:0", "last:0"]
    assert c.malformed == 3


def test_hour_partitions():
    assert hour_of("2026-11-26T15:59:59.999+00:00") == "2026-11-26T15"
    assert hours_between(T0 + timedelta(minutes=50), T0 + timedelta(minutes=70)) == ["2026-11-26T15", "2026-11-26T16"]
    assert hours_between(T0, T0 + timedelta(hours=1)) == ["2026-11-26T15"]


def test_cooldown_one_alert_per_served_version_until_new_data_lands():
    from detectops.monitoring.steps import should_alert

    assert should_alert(None, None)[0] is True
    alert = {"at": "2026-11-26T15:30:00+00:00"}
    held, why = should_alert(alert, None)
    assert held is False and "cooldown" in why and "land labelled data" in why
    assert should_alert(alert, "2026-11-26T15:29:59.999Z")[0] is False  # landed before the alert
    assert should_alert(alert, "2026-11-26T15:30:01.5Z")[0] is True     # new data since: alert again


def test_window_and_its_key():
    from detectops.monitoring.steps import window, window_key

    start, end = window("2026-11-26T15:15:00+00:00", 15)
    assert start.isoformat() == "2026-11-26T15:00:00+00:00"
    target = {"model_name": "m", "model_version": "2", "namespace": "ns"}
    assert window_key(target, start, end) == window_key(dict(target), start, end)
    assert window_key({**target, "model_version": "3"}, start, end) != window_key(target, start, end)
