"""Suite-wide pytest policy.

Tests that need a real service (Docker, registry, Kubernetes, MLflow, Airflow) skip on a
laptop that lacks it, with a message saying how to start it. In CI (`DETECTOPS_NO_SKIP=1`,
set by `.ci/run`) a skip is a failure: a missing service must never pass silently.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.support.fixtures"]


def _no_skip() -> bool:
    return os.environ.get("DETECTOPS_NO_SKIP") == "1"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if _no_skip() and skipped:
        terminalreporter.section("DETECTOPS_NO_SKIP=1: skipped tests fail this run", red=True)
        for report in skipped:
            terminalreporter.write_line(f"SKIPPED (not allowed here): {report.nodeid}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if _no_skip() and reporter and reporter.stats.get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
