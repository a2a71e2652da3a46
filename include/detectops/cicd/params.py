"""The Params form of the level-2 DAG (parse-time light: no heavy imports)."""

from __future__ import annotations

import os
from typing import Any

from detectops.continuous.params import DEFAULT_MODEL, with_env_defaults

#: JSON object of Param defaults to override when the DAG file is parsed (a test Airflow's
#: shorter canary windows and tiny staging training, for instance).
DEFAULTS_ENV = "DETECTOPS_LEVEL2_DEFAULTS"
#: The canary analysis' knobs (``detectops.monitoring.canary_analysis.CanaryThresholds``) offered as Params.
THRESHOLD_PARAMS = ("min_success_rate", "max_p99_ratio", "p99_tolerance_s", "max_restarts", "min_requests",
                    "max_failed_windows", "windows", "max_windows", "window_s", "warmup_s")


def level2_params(Param: Any) -> dict[str, Any]:
    """``Param`` is ``airflow.sdk.Param`` (passed in so this module imports nothing from Airflow)."""
    return with_env_defaults(_params(Param), Param, DEFAULTS_ENV)


def thresholds_of(params: dict[str, Any]) -> dict[str, Any]:
    return {name: params[name] for name in THRESHOLD_PARAMS}


def _params(Param: Any) -> dict[str, Any]:
    return {
        "commit_sha": Param("", type="string", title="Commit (full 40-hex SHA)",
                            description="The commit to test, build, stage and release. CI passes it."),
        "repo": Param(os.environ.get("DETECTOPS_REPO_URL", ""), type="string", title="Git repository URL",
                      description="Where the commit is fetched from (https, ssh, file:// or a path)."),
        "ref": Param("", type="string", title="Ref the commit was pushed to (for the record)"),
        "require_approval": Param(False, type="boolean", title="A person approves the promotion",
                                  description="The canary passed: wait for Approve/Reject under Browse > Required Actions (or the REST API)."),
        "model_name": Param(DEFAULT_MODEL, type="string", title="Registered model whose service is released"),
        "namespace": Param("detectops-shapes", type="string", title="Production namespace"),
        "deployment": Param("shapes-detector", type="string", title="Production Deployment (stable track) and Service"),
        "staging_namespace": Param("detectops-staging", type="string", title="Staging namespace"),
        "staging_train_config": Param("demo", type="string", title="Training configuration of the staging run"),
        # A staging retrain on the same data may score a hair below the champion by chance;
        # the gate asks "not worse", within this tolerance.
        "staging_map_margin": Param(-0.02, type="number", minimum=-1, maximum=0,
                                    title="Staging gate: candidate AP >= champion AP + margin (<= 0)"),
        "test_args": Param("-q -p no:cacheprovider tests/unit", type="string",
                           title="pytest arguments of the test pod (the test image's suite)"),
        "canary_replicas": Param(1, type="integer", minimum=1, maximum=4, title="Canary replicas (traffic share = replica share)"),
        "load_rate_per_s": Param(6.0, type="number", minimum=0.5, maximum=50, title="Analysis load: requests per second"),
        "load_concurrency": Param(2, type="integer", minimum=1, maximum=16, title="Analysis load: client connections"),
        "min_success_rate": Param(0.99, type="number", minimum=0, maximum=1, title="Canary: minimum success rate per window"),
        "max_p99_ratio": Param(1.2, type="number", minimum=0.1, title="Canary: p99 at most this x stable's p99"),
        "p99_tolerance_s": Param(0.0, type="number", minimum=0, title="Canary: p99 slack (s) added to the ratio's bound"),
        "max_restarts": Param(0, type="integer", minimum=0, title="Canary: restarts allowed"),
        "min_requests": Param(20, type="integer", minimum=1, title="Canary: minimum requests per track per window"),
        "max_failed_windows": Param(2, type="integer", minimum=1, title="Canary: failed windows that roll back"),
        "windows": Param(3, type="integer", minimum=1, title="Canary: passing windows that promote"),
        "max_windows": Param(8, type="integer", minimum=1, title="Canary: windows before an inconclusive rollback"),
        "window_s": Param(30, type="number", minimum=5, title="Canary: window length (s)",
                          description="At least twice Prometheus' scrape interval (15 s): increase() and rate() need two scrapes in a window."),
        # A new pod's first requests are slow (TensorFlow traces and allocates on first use): a
        # measured first window after 15 s had p99 209 ms against stable's 44 ms, the next ones 44-48 ms.
        "warmup_s": Param(30, type="number", minimum=0, title="Canary: warm-up not judged (s)"),
    }
