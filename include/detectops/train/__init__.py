"""Level 1's trainer: a small CenterNet trained from scratch on a dataset version, exported to the detector contract.

    from detectops.train import TrainConfig, train, LocalCheckpointStore
    result = train("versions/abc123", {1: "circle", 2: "square"}, "out", TrainConfig.demo(),
                   checkpoints=LocalCheckpointStore("out/checkpoints"))

Modules: ``config`` (TrainConfig, presets), ``inputs`` (COCO splits -> targets -> tf.data),
``model`` (Keras network, losses, decoding), ``checkpoints`` (per-epoch stores: local, MLflow),
``export`` (contract SavedModel + warm-start record), ``trainer`` (the run), ``command``
(``detectops train``). Importing this package is cheap: TensorFlow and MLflow load on use.
"""

from __future__ import annotations

from typing import Any

from detectops.train.checkpoints import CheckpointStore, LocalCheckpointStore, MlflowCheckpointStore
from detectops.train.command import configure_parser, run_from_args
from detectops.train.config import TrainConfig, TrainConfigError

__all__ = [
    "CheckpointStore", "LocalCheckpointStore", "MlflowCheckpointStore", "MlflowRun", "TrainConfig", "TrainConfigError",
    "TrainResult", "configure_parser", "export_detector", "run_from_args", "train",
]


def __getattr__(name: str) -> Any:
    # The trainer and exporter import NumPy/TensorFlow helpers: load them only when asked for.
    if name in ("train", "TrainResult", "MlflowRun"):
        from detectops.train import trainer

        return getattr(trainer, name)
    if name == "export_detector":
        from detectops.train.export import export_detector

        return export_detector
    raise AttributeError(f"module 'detectops.train' has no attribute {name!r}")
