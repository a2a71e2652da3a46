"""The Assets DetectOps DAGs produce and consume (Airflow 3 data-aware scheduling).

Parse-time light: DAG files import this module. The URIs are the contract between the
producers (a file drop, ``POST /api/v2/assets/events``, ``detectops land``, the monitoring DAG)
and level 1, which listens to both.

- ``batch_landed``: a batch of labelled images landed. Its events' ``extra`` carries
  ``{"model": <registered model name>, "location": <where the batch is>}``; a file drop
  fires it through an ``AssetWatcher`` on the landing area's ready marker (no polling DAG).
- ``drift_detected``: monitoring judged live traffic to have drifted from a model's
  reference; ``extra`` carries ``{"model": ..., ...the drift numbers}``.
"""

from __future__ import annotations

BATCH_LANDED_URI = "detectops://data/batch-landed"
DRIFT_DETECTED_URI = "detectops://monitoring/drift-detected"


def batch_landed(ready_marker: str | None = None):
    """The "a data batch landed" Asset, watched for file drops at ``ready_marker`` if given."""
    from airflow.sdk import Asset, AssetWatcher

    watchers = []
    if ready_marker:
        from airflow.providers.standard.triggers.file import FileDeleteTrigger

        # Fires once the marker exists, then deletes it: one drop (of one or many batches) = one event.
        watchers.append(AssetWatcher(name="landing_ready_marker",
                                     trigger=FileDeleteTrigger(filepath=ready_marker, poke_interval=5)))
    return Asset(name="detectops_batch_landed", uri=BATCH_LANDED_URI, group="detectops", watchers=watchers)


def drift_detected():
    """The "drift detected" Asset that monitoring emits and level 1 retrains on."""
    from airflow.sdk import Asset

    return Asset(name="detectops_drift_detected", uri=DRIFT_DETECTED_URI, group="detectops")
