"""Batch scoring: a directory (or stored batch) of images through a detector, the serving app's way.

    from detectops.batch import predict_batch
    result = predict_batch("runs:/<id>/batch", "models:/detector@champion", tracking_uri=URI, output_dir="out")

Each image is decoded by ``detectops.serve.imageio.decode_image`` with the service's limits
(``ServeSettings``), run through ``detectops.models.Detector.predict`` and turned into the
service's own answers (``serve.processing``): so a batch gives the same detections as
``POST :predict`` and ``/detect`` for the same files. Files are decoded on their own thread
while two model calls run (``evaluate.runner.prefetch`` and ``map_ordered``), the service's
shape. An unreadable image is reported (file name, code, reason) and the rest is scored. Outputs: COCO results, a summary, a contact sheet, logged to MLflow
(experiment ``detectops-batch-inference``) once per model version, input content and threshold.

Modules: ``inputs`` (where the images are, their ids and content hash, publishing),
``scoring`` (the scoring loop), ``report`` (files and MLflow), ``tasks`` (the DAG's tasks).
Importing this package is cheap: TensorFlow and MLflow load inside the functions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BatchScore", "ImageFailure", "ScoredImage", "predict_batch", "score_images"]


def __getattr__(name: str) -> Any:
    # Lazy: the DAG file imports detectops.batch.tasks at parse time, which must not load numpy.
    if name in __all__:
        from detectops.batch import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
