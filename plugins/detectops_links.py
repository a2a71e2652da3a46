"""Airflow UI plugin: links from the Airflow navigation to the other DetectOps UIs.

Only navigation lives here; the platform's logic is in include/detectops.
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin

MLFLOW_UI = os.environ.get("DETECTOPS_MLFLOW_UI", os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5500"))


class DetectOpsLinks(AirflowPlugin):
    name = "detectops_links"
    external_views = [
        {"name": "MLflow (experiments, models)", "href": MLFLOW_UI, "destination": "nav", "category": "browse"},
    ]
