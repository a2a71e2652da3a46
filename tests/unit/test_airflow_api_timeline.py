"""run_timeline: where a DAG run's time went, from the REST API's task instances."""

from __future__ import annotations

import pytest

from detectops.airflow_api import run_timeline


def _ti(task_id, scheduled, start, end, state="success"):
    day = "2026-11-26T10:00:"
    return {"task_id": task_id, "state": state, "try_number": 1, "scheduled_when": day + scheduled + "Z",
            "start_date": day + start + "+00:00", "end_date": day + end + "+00:00"}


def test_task_seconds_scheduler_wait_and_total_from_landing():
    tis = [_ti("train", "10", "12", "40"), _ti("collect", "00", "03", "08"),
           {"task_id": "skipped_one", "state": "skipped", "start_date": None, "end_date": None}]
    t = run_timeline(tis, since="2026-11-26T09:59:58+00:00")
    assert [x["task_id"] for x in t["tasks"]] == ["collect", "train"]  # in start order; unstarted left out
    assert [x["seconds"] for x in t["tasks"]] == [5.0, 28.0]
    assert [x["wait_s"] for x in t["tasks"]] == [3.0, 2.0]
    assert t["total_s"] == pytest.approx(42.0) and t["inside_tasks_s"] == 33.0
    assert t["scheduler_wait_s"] == 5.0 and t["scheduler_wait_per_task_s"] == 2.5


def test_without_a_start_time_the_run_counts_from_its_first_scheduled_task():
    assert run_timeline([_ti("a", "05", "06", "10")])["total_s"] == 5.0
    assert run_timeline([])["tasks"] == []
