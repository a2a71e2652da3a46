"""Airflow building blocks shared by the DetectOps DAGs (TaskGroup factories).

Kept apart from the library proper: these modules import Airflow (``airflow.sdk`` and provider
operators) at module level, since DAG files use them at parse time, and nothing heavy.

- ``deploy_group(spec, ...)``: deploy, smoke-test, then promote or reject one model version.
"""

from detectops.dagkit.deploy_group import deploy_group

__all__ = ["deploy_group"]
