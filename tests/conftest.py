"""Suite-wide pytest policy.

Tests that need a real service (Docker, registry, Kubernetes, MLflow, Airflow) skip on a
laptop that lacks it, with a message saying how to start it. In CI (`DETECTOPS_NO_SKIP=1`,
set by `.ci/run`) a skip is a failure: a missing service must never pass silently.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.support.fixtures"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("DETECTOPS_NO_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        names = "\n  ".join(r.nodeid for r in skipped)
        print(f"\nDETECTOPS_NO_SKIP=1 but {len(skipped)} test(s) skipped:\n  {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
