"""Airflow building blocks shared by the DetectOps DAGs (TaskGroup factories).

Kept apart from the library proper: these modules import Airflow (``airflow.sdk`` and provider
operators) at module level, since DAG files use them at parse time, and nothing heavy.

- ``deploy_group(spec, ...)``: deploy, smoke-test, then promote or reject one model version;
- ``training_pod(...)``: the pod that trains a candidate from a training plan.
"""

from detectops.dagkit.deploy_group import deploy_group
from detectops.dagkit.training_pod import training_pod

__all__ = ["deploy_group", "training_pod"]
