"""The `detectops` command: JSON on stdout for a good input, exit 2 and a useful message for a bad one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detectops.data import CocoDataset, real_eval_set

DETECTOPS = [sys.executable, "-m", "detectops.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DETECTOPS, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.platform
def test_validate_prints_the_report_of_a_good_dataset():
    out = run("validate", "real-eval")
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["success"] is True


@pytest.mark.platform
def test_validate_names_the_broken_expectation_and_exits_2(tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(real_eval_set(), broken)
    ds = CocoDataset.load(broken)
    ds.annotations[0]["category_id"] = 999
    ds.save()
    out = run("validate", str(broken))
    assert out.returncode == 2
    assert "category_id" in out.stderr and "999" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_dataset_and_model_say_what_to_do(tmp_path: Path):
    out = run("validate", str(tmp_path / "nope"))
    assert out.returncode == 2 and "does not exist" in out.stderr and "real-eval" in out.stderr
    out = run("fetch-model", str(tmp_path / "no-model"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
