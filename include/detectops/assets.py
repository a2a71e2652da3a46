"""The Assets DetectOps DAGs produce and consume (Airflow 3 data-aware scheduling).

Parse-time light: DAG files import this module. The URIs are the contract between the
producers (a file drop, ``POST /api/v2/assets/events``, ``detectops land``, the monitoring DAG)
and level 1, which listens to both.

- ``batch_landed``: a batch of labelled images landed. Its events' ``extra`` carries
  ``{"model": <registered model name>, "location": <where the batch is>}``; a file drop
  fires it through an ``AssetWatcher`` on the landing area's ready marker (no polling DAG).
- ``drift_detected``: monitoring judged live traffic to have drifted from a model's
  reference; ``extra`` carries ``{"model": ..., ...the drift numbers}``.
- ``unlabelled_batch``: a batch of images to score arrived (``detectops_batch_inference`` listens).
  ``extra``: ``{"location": <a directory under the landing roots, or runs:/<id>/batch>,
  "model": <registered model name>}``, optionally ``"alias"``, ``"version"``, ``"namespace"``,
  ``"min_score"`` (else the DAG's Param defaults).
- ``batch_scored``: a batch was scored. ``extra``: ``{"model", "version", "image", "runs": [{"run_id",
  "input", "input_sha256", "images_scored", "images_failed", "detections"}], "images_scored",
  "images_failed", "detections"}`` (the MLflow runs of ``detectops-batch-inference`` hold the results).
"""

from __future__ import annotations

BATCH_LANDED_URI = "detectops://data/batch-landed"
DRIFT_DETECTED_URI = "detectops://monitoring/drift-detected"
UNLABELLED_BATCH_URI = "detectops://data/unlabelled-batch"
BATCH_SCORED_URI = "detectops://inference/batch-scored"


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


def unlabelled_batch():
    """The "images to score arrived" Asset that ``detectops_batch_inference`` is scheduled on."""
    from airflow.sdk import Asset

    return Asset(name="detectops_unlabelled_batch", uri=UNLABELLED_BATCH_URI, group="detectops")


def batch_scored():
    """The "a batch was scored" Asset ``detectops_batch_inference`` emits for what comes downstream."""
    from airflow.sdk import Asset

    return Asset(name="detectops_batch_scored", uri=BATCH_SCORED_URI, group="detectops")
