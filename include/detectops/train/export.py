"""Export a trained detector to the ONE detector contract, plus what a later warm start needs.

    <out_dir>/saved_model.pb, variables/       serving_default: input_tensor uint8 [1,H,W,3] (any H, W)
                                                -> detection_boxes/classes/scores, num_detections
    <out_dir>/assets/label_map.json             the label map, where every DetectOps model keeps it
    <out_dir>/assets/detectops/weights.weights.h5   the Keras weights (warm start loads these)
    <out_dir>/assets/detectops/trained.json         label map + TrainConfig + format version

The resize to the network's input size happens inside the signature, so callers send any
image, as with every other model of the repository.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detectops.errors import DetectOpsError
from detectops.fsutil import atomic_write_text, staged_dir
from detectops.models.contract import INPUT, SIGNATURE, verify_contract
from detectops.models.labels import write_label_map
from detectops.train.config import TrainConfig

TRAINED_DIR = Path("assets") / "detectops"
WEIGHTS_FILE = "weights.weights.h5"
RECORD_FILE = "trained.json"
#: Bumped when the weights of an older export can no longer be loaded into today's model.
FORMAT_VERSION = 1


class WarmStartError(DetectOpsError):
    """A model cannot seed this training run (not trained by DetectOps, other label map, other architecture)."""


@dataclass(frozen=True)
class TrainedModel:
    """What an export of this trainer records about itself."""

    path: Path
    label_map: dict[int, str]
    config: TrainConfig
    format_version: int

    @property
    def weights_path(self) -> Path:
        return self.path / TRAINED_DIR / WEIGHTS_FILE


def _serving_module(model: Any, label_map: dict[int, str], config: TrainConfig) -> Any:
    import tensorflow as tf

    from detectops.train.model import decode, resize_images

    class_ids = [float(c) for c in sorted(label_map)]
    num_classes, size, max_detections = len(class_ids), config.input_size, config.max_detections

    class DetectorModule(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.class_ids = tf.constant(class_ids, tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name=INPUT)])
        def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
            out = self.model(resize_images(input_tensor, size), training=False)
            found = decode(out, num_classes, max_detections)
            scores = found["scores"]
            return {
                "detection_boxes": found["boxes"],
                "detection_classes": tf.gather(self.class_ids, found["class_index"]),
                "detection_scores": scores,
                "num_detections": tf.cast(tf.fill([tf.shape(scores)[0]], tf.shape(scores)[1]), tf.float32),
            }

    return DetectorModule()


def export_detector(model: Any, label_map: dict[int, str], out_dir: str | Path, config: TrainConfig) -> Path:
    """Write ``model`` as a contract SavedModel at ``out_dir`` (atomically: complete or absent); return it.

    Checked with :func:`detectops.models.contract.verify_contract` before it is published.
    """
    import tensorflow as tf

    out_dir = Path(out_dir)
    with staged_dir(out_dir, replace=True) as tmp:
        module = _serving_module(model, label_map, config)
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: module.serve})
        write_label_map(tmp, label_map)
        (tmp / TRAINED_DIR).mkdir(parents=True, exist_ok=True)
        model.save_weights(str(tmp / TRAINED_DIR / WEIGHTS_FILE))
        record = {"format_version": FORMAT_VERSION, "label_map": {str(k): v for k, v in sorted(label_map.items())},
                  "config": config.to_dict()}
        atomic_write_text(tmp / TRAINED_DIR / RECORD_FILE, json.dumps(record, indent=1) + "\n")
        verify_contract(tmp)
    return out_dir


def read_trained_model(path: str | Path) -> TrainedModel:
    """What the export at ``path`` records; ``WarmStartError`` if it was not made by this trainer."""
    path = Path(path)
    record_path = path / TRAINED_DIR / RECORD_FILE
    if not record_path.is_file() or not (path / TRAINED_DIR / WEIGHTS_FILE).is_file():
        raise WarmStartError(
            f"{path} was not exported by detectops.train (no {TRAINED_DIR / RECORD_FILE} and {WEIGHTS_FILE}), so it "
            "cannot seed a training run. Train from scratch (leave out --warm-start), or warm-start from a model "
            "this pipeline trained."
        )
    record = json.loads(record_path.read_text())
    return TrainedModel(
        path=path,
        label_map={int(k): str(v) for k, v in record["label_map"].items()},
        config=TrainConfig.from_dict(record["config"]),
        format_version=int(record.get("format_version", 0)),
    )


def check_warm_start(trained: TrainedModel, label_map: dict[int, str], config: TrainConfig) -> None:
    """Raise ``WarmStartError`` unless ``trained``'s weights fit a model for ``label_map`` and ``config``."""
    if trained.format_version != FORMAT_VERSION:
        raise WarmStartError(
            f"{trained.path} has export format {trained.format_version}, this trainer writes {FORMAT_VERSION}; "
            "train from scratch once (leave out --warm-start)."
        )
    if dict(sorted(trained.label_map.items())) != dict(sorted(label_map.items())):
        raise WarmStartError(
            f"Cannot warm-start from {trained.path}: it was trained for the label map {trained.label_map}, "
            f"this run trains {label_map}. A different label map means a different model: train it from scratch "
            "under its own registered model name."
        )
    if trained.config.architecture() != config.architecture():
        raise WarmStartError(
            f"Cannot warm-start from {trained.path}: its architecture {trained.config.architecture()} differs from "
            f"this run's {config.architecture()}. Use the same widths/extra_blocks/head_width, or train from scratch."
        )
