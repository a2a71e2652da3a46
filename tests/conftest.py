"""Suite-wide pytest policy.

Tests that need a real service (Docker, registry, Kubernetes, MLflow, Airflow) skip on a
laptop that lacks it, with a message saying how to start it. In CI (`DETECTOPS_NO_SKIP=1`,
set by `.ci/run`) a skip is a failure: a missing service must never pass silently.
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

# Session fixtures (MLflow, the live Airflow) are registered here, once. A session fixture
# imported into test modules instead is a new fixture in each of them: one Airflow per module.
pytest_plugins = ["tests.support.fixtures", "tests.support.live_airflow"]

#: Set in the test image (include/docker/Dockerfile, target ``test``): level 2 runs a commit's unit
#: tests there, in the pipeline image's runtime, without Airflow, Great Expectations or the test
#: clients of the full environment. Modules that need those are left out there (they run in CI).
IN_TEST_IMAGE = os.environ.get("DETECTOPS_TEST_IMAGE") == "1"
_left_out: dict[str, str] = {}


def _missing_import(path: Path) -> str | None:
    """The first module-level import of ``path`` this environment cannot import, with why."""
    for node in ast.parse(path.read_text()).body:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as exc:  # ImportError, or a library refusing to load without its extra
                return f"{name}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


#: Fixtures that start or reach a live service: their tests are left out in the test image, with
#: the tests marked ``platform`` (they need the development environment) or ``integration``.
SERVICE_FIXTURES = frozenset({"mlflow_server", "live_airflow"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not IN_TEST_IMAGE:
        return
    keep, services = [], []
    for item in items:
        needs = SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        marked = item.get_closest_marker("integration") or item.get_closest_marker("platform")
        (services if needs or marked else keep).append(item)
    if services:
        config.hook.pytest_deselected(items=services)
        modules = sorted({i.module.__name__.rsplit(".", 1)[-1] for i in services})
        _left_out[f"{len(services)} test(s) marked platform or needing a live service"] = ", ".join(modules)
        items[:] = keep


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not IN_TEST_IMAGE or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    why = _missing_import(collection_path)
    if why:
        _left_out[collection_path.name] = why
        return True
    return None


def _no_skip() -> bool:
    return os.environ.get("DETECTOPS_NO_SKIP") == "1"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _left_out:
        terminalreporter.section(f"test image: {len(_left_out)} module(s) left out (they need the full environment)")
        for name, why in sorted(_left_out.items()):
            terminalreporter.write_line(f"{name}: {why[:160]}")
    skipped = terminalreporter.stats.get("skipped", [])
    if _no_skip() and skipped:
        terminalreporter.section("DETECTOPS_NO_SKIP=1: skipped tests fail this run", red=True)
        for report in skipped:
            terminalreporter.write_line(f"SKIPPED (not allowed here): {report.nodeid}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if _no_skip() and reporter and reporter.stats.get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
