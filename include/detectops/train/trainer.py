"""``train``: one training run, from a dataset version to a contract SavedModel.

    result = train(dataset_dir, label_map, out_dir, TrainConfig.demo(),
                   checkpoints=LocalCheckpointStore(out_dir / "checkpoints"))
    result.export_dir  # -> a SavedModel that evaluation, the registry and serving load like any other

Deterministic given ``config.seed`` (seeded initial weights, per-epoch batch plans drawn from
the seed, TensorFlow op determinism), which is also what makes a resumed run end with the
same weights as an uninterrupted one: a checkpoint holds the weights, the optimizer's state
(moments and step counter, hence the learning-rate schedule) and the history so far.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from detectops.train.checkpoints import CheckpointStore
from detectops.train.config import TrainConfig
from detectops.train.inputs import TRAIN_SPLIT, VAL_SPLIT, BatchSource, Split, epoch_plan, load_split, split_dir, steps_per_epoch

EXPORT_SUBDIR = "model"
CHECKPOINT_WEIGHTS = "weights.weights.h5"
CHECKPOINT_OPTIMIZER = "optimizer.npz"
CHECKPOINT_STATE = "state.json"


@dataclass(frozen=True)
class MlflowRun:
    """The MLflow run a training logs into (params, per-epoch metrics, the model as artifact ``model/``)."""

    run_id: str
    tracking_uri: str | None = None


@dataclass
class TrainResult:
    export_dir: str
    epochs: int
    resumed_from_epoch: int  # 0 = started fresh
    final_loss: float
    val_AP: float | None
    val_AP50: float | None
    images_per_second: float
    warm_started_from: str | None = None
    run_id: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- learning rate
def learning_rate_schedule(config: TrainConfig, total_steps: int) -> Any:
    """Linear warm-up to ``learning_rate``, then cosine decay to ``learning_rate * final_lr_fraction``."""
    import keras
    import tensorflow as tf

    peak, floor = config.learning_rate, config.learning_rate * config.final_lr_fraction
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            step = tf.cast(step, tf.float32)
            warm = peak * (step + 1.0) / float(max(warmup, 1))
            progress = tf.clip_by_value((step - warmup) / decay_steps, 0.0, 1.0)
            cosine = floor + 0.5 * (peak - floor) * (1.0 + tf.cos(math.pi * progress))
            return tf.where(step < warmup, warm, cosine)

        def get_config(self) -> dict[str, Any]:
            return {}

    return WarmupCosine()


# ----------------------------------------------------------------------------- checkpoints
def _save_checkpoint(model: Any, optimizer: Any, epoch: int, history: list[dict[str, Any]], config: TrainConfig,
                     store: CheckpointStore, warm_started_from: str | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="detectops-ckpt-") as tmp:
        tmp_path = Path(tmp)
        model.save_weights(str(tmp_path / CHECKPOINT_WEIGHTS))
        np.savez(tmp_path / CHECKPOINT_OPTIMIZER, *[np.asarray(v.numpy()) for v in optimizer.variables])
        # Where the run's first epoch started from: a resumed run still reports its warm start.
        state = {"epoch": epoch, "history": history, "config": config.to_dict(), "warm_started_from": warm_started_from}
        (tmp_path / CHECKPOINT_STATE).write_text(json.dumps(state, indent=1))
        store.save(epoch, tmp_path)


def _restore_checkpoint(model: Any, optimizer: Any, directory: Path,
                        config: TrainConfig) -> tuple[list[dict[str, Any]], str | None]:
    from detectops.train.export import WarmStartError

    state = json.loads((directory / CHECKPOINT_STATE).read_text())
    if TrainConfig.from_dict(state["config"]) != config:
        raise WarmStartError(
            f"The checkpoint in {directory} was written with another TrainConfig; a retry must use the same "
            "config. Start a new run (a new --run-key) to train with a different one."
        )
    model.load_weights(str(directory / CHECKPOINT_WEIGHTS))
    with np.load(directory / CHECKPOINT_OPTIMIZER) as saved:
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    if [v.shape for v in values] != [tuple(v.shape) for v in optimizer.variables]:
        raise WarmStartError(f"The optimizer state in {directory} does not fit this model; start a new run.")
    for variable, value in zip(optimizer.variables, values):
        variable.assign(value)
    return list(state["history"]), state.get("warm_started_from")


# ----------------------------------------------------------------------------- evaluation
def predict_split(model: Any, split: Split, label_map: dict[int, str], config: TrainConfig,
                  batch_size: int = 32) -> list[dict[str, Any]]:
    """COCO results (pixel ``[x, y, w, h]`` boxes of the original images) of every image of ``split``."""
    import tensorflow as tf

    from detectops.train.model import decode

    class_ids = np.array(sorted(label_map), np.int64)
    size = config.input_size
    infer = tf.function(lambda x: decode(model(x, training=False), len(class_ids), config.max_detections),
                        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])  # one trace for every batch
    results = []
    for start in range(0, len(split), batch_size):
        found = infer(tf.cast(split.images[start:start + batch_size], tf.float32))
        boxes, classes, scores = (found[k].numpy() for k in ("boxes", "class_index", "scores"))
        for row in range(boxes.shape[0]):
            i = start + row
            w, h = split.original_sizes[i]
            for (y0, x0, y1, x1), c, s in zip(boxes[row], classes[row], scores[row]):
                results.append({"image_id": int(split.image_ids[i]), "category_id": int(class_ids[c]),
                                "bbox": [float(x0 * w), float(y0 * h), float((x1 - x0) * w), float((y1 - y0) * h)],
                                "score": float(s)})
    return results


def evaluate_split(model: Any, split: Split, label_map: dict[int, str], config: TrainConfig) -> dict[str, float | None]:
    """COCO metrics (pycocotools, the project's evaluation) of ``model`` on the images of ``split``."""
    from detectops.evaluate.coco_metrics import coco_metrics

    gt = split.dataset.to_json_dict()
    kept = {int(i) for i in split.image_ids}
    gt["images"] = [im for im in gt["images"] if int(im["id"]) in kept]
    gt["annotations"] = [a for a in gt["annotations"] if int(a["image_id"]) in kept]
    return coco_metrics(gt, predict_split(model, split, label_map, config)).metrics


# ----------------------------------------------------------------------------- MLflow
class _Tracker:
    """Logs to one MLflow run through the client (no fluent "active run" state); a no-op without a run."""

    def __init__(self, run: MlflowRun | None):
        self.run = run
        self.client = None
        if run is not None:
            from detectops.evaluate.mlflow_log import connect

            self.client = connect(run.tracking_uri)

    def params(self, params: dict[str, Any]) -> None:
        if self.client is None:
            return
        from mlflow.entities import Param

        # A retried pod logs the same params again; MLflow refuses a changed value, so log only new keys.
        logged = self.client.get_run(self.run.run_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in logged]
        if new:
            self.client.log_batch(self.run.run_id, params=new)

    def tags(self, tags: dict[str, Any]) -> None:
        if self.client is not None:
            from mlflow.entities import RunTag

            self.client.log_batch(self.run.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def metrics(self, metrics: dict[str, float | None], step: int) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and math.isfinite(v)]
        self.client.log_batch(self.run.run_id, metrics=rows)

    def artifacts(self, local_dir: Path, artifact_path: str) -> None:
        if self.client is not None:
            self.client.log_artifacts(self.run.run_id, str(local_dir), artifact_path)


def load_warm_start(model: Any, export_dir: str | Path, label_map: dict[int, str], config: TrainConfig) -> None:
    """Load the weights of an export of this trainer into ``model``; ``WarmStartError`` if they do not fit."""
    from detectops.train.export import check_warm_start, read_trained_model

    trained = read_trained_model(export_dir)
    check_warm_start(trained, label_map, config)
    model.load_weights(str(trained.weights_path))


# ----------------------------------------------------------------------------- the run
def _format_epoch(row: dict[str, Any], epochs: int) -> str:
    ap = "n/a" if row.get("val_AP") is None else f"{row['val_AP']:.3f}"
    ap50 = "n/a" if row.get("val_AP50") is None else f"{row['val_AP50']:.3f}"
    return (f"epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f} (heatmap {row['loss_heatmap']:.4f}, "
            f"size {row['loss_size']:.4f}, offset {row['loss_offset']:.4f}), val AP {ap}, val AP50 {ap50}, "
            f"{row['images_per_second']:.1f} images/s, {row['seconds']:.1f} s")


def train(
    dataset_dir: str | Path,
    label_map: dict[int, str],
    out_dir: str | Path,
    config: TrainConfig,
    *,
    checkpoints: CheckpointStore | None = None,
    warm_start_from: str | Path | None = None,
    log: Callable[[str], Any] = print,
    mlflow_run: MlflowRun | None = None,
) -> TrainResult:
    """Train a detector on ``<dataset_dir>/train``, validate on ``<dataset_dir>/val``, export to ``<out_dir>/model``.

    ``checkpoints``: saved after every epoch; if it already holds one (a retried pod), training
    resumes after that epoch and ``warm_start_from`` is ignored (the checkpoint is newer).
    ``warm_start_from``: an export of this trainer with the same label map and architecture; the run
    then trains ``config.warm_start_epochs`` epochs (when set) instead of ``config.epochs``.
    ``mlflow_run``: where params, per-epoch metrics and the exported model (artifact ``model/``) go.
    """
    import keras
    import tensorflow as tf

    from detectops.train.export import export_detector
    from detectops.train.model import build_model, losses
    from detectops.train.optim import FlatAdamW

    label_map = {int(k): str(v) for k, v in label_map.items()}
    out_dir = Path(out_dir)
    if warm_start_from is not None:  # also on a resumed try: it was started with the same arguments
        config = config.warm_started()
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()

    started = time.monotonic()
    train_split = load_split(split_dir(dataset_dir, TRAIN_SPLIT), label_map, config, max_images=config.max_train_images)
    val_split = load_split(split_dir(dataset_dir, VAL_SPLIT), label_map, config, max_images=config.eval_max_images)
    log(f"loaded {len(train_split)} train and {len(val_split)} val images at {config.input_size}px "
        f"in {time.monotonic() - started:.1f} s")
    tracker = _Tracker(mlflow_run)
    tracker.params({**{f"train.{k}": v for k, v in config.to_dict().items()},
                    "label_map": json.dumps({str(k): v for k, v in sorted(label_map.items())}),
                    "num_train_images": len(train_split), "num_val_images": len(val_split)})

    model = build_model(config, len(label_map))
    steps = steps_per_epoch(len(train_split), config)
    optimizer = FlatAdamW(model.trainable_variables, learning_rate_schedule(config, steps * config.epochs),
                          weight_decay=config.weight_decay)

    history: list[dict[str, Any]] = []
    resumed_from = 0
    warm_started_from = None
    latest = checkpoints.latest() if checkpoints is not None else None
    if latest is not None:
        resumed_from, directory = latest
        history, warm_started_from = _restore_checkpoint(model, optimizer, directory, config)
        log(f"resuming after epoch {resumed_from} from the checkpoint in {checkpoints!r}")
    elif warm_start_from is not None:
        load_warm_start(model, warm_start_from, label_map, config)
        warm_started_from = str(warm_start_from)
        log(f"warm start from the weights of {warm_start_from}")
    tracker.tags({"detectops.kind": "training", "detectops.warm_start": warm_started_from or "",
                  "detectops.resumed_from_epoch": resumed_from})
    log(f"model: {model.count_params():,} parameters; {steps} steps of {config.batch_size} per epoch, "
        f"{config.epochs} epochs")

    @tf.function
    def train_step(images, heatmap, size, offset, mask):
        with tf.GradientTape() as tape:
            parts = losses(model(images, training=True), heatmap, size, offset, mask, config)
        gradients = tape.gradient(parts["total"], model.trainable_variables)
        optimizer.apply_gradients(gradients)
        return parts

    source = BatchSource(train_split)
    for epoch in range(resumed_from + 1, config.epochs + 1):
        epoch_start = time.monotonic()
        sums = {"total": 0.0, "heatmap": 0.0, "size": 0.0, "offset": 0.0}
        plan = epoch_plan(len(train_split), config, epoch)
        for batch in source.dataset(plan):
            parts = train_step(*batch)
            for k in sums:
                sums[k] += float(parts[k])
        train_seconds = time.monotonic() - epoch_start
        row: dict[str, Any] = {
            "epoch": epoch,
            "loss": sums["total"] / plan.steps,
            "loss_heatmap": sums["heatmap"] / plan.steps,
            "loss_size": sums["size"] / plan.steps,
            "loss_offset": sums["offset"] / plan.steps,
            "images_per_second": plan.steps * config.batch_size / train_seconds,
            "learning_rate": float(optimizer.learning_rate),
            "val_AP": None,
            "val_AP50": None,
        }
        if epoch == config.epochs or (config.eval_every and epoch % config.eval_every == 0):
            metrics = evaluate_split(model, val_split, label_map, config)
            row["val_AP"], row["val_AP50"] = metrics["AP"], metrics["AP50"]
        row["seconds"] = time.monotonic() - epoch_start
        history.append(row)
        log(_format_epoch(row, config.epochs))
        tracker.metrics({k: v for k, v in row.items() if k not in ("epoch", "seconds")}, step=epoch)
        if checkpoints is not None:
            _save_checkpoint(model, optimizer, epoch, history, config, checkpoints, warm_started_from)

    if not history or history[-1].get("val_AP") is None:  # nothing left to train (a retry after the last epoch)
        metrics = evaluate_split(model, val_split, label_map, config)
        history = history or [{"epoch": config.epochs, "loss": float("nan"), "images_per_second": 0.0}]
        history[-1].update(val_AP=metrics["AP"], val_AP50=metrics["AP50"])
    export_dir = export_detector(model, label_map, out_dir / EXPORT_SUBDIR, config)
    tracker.artifacts(export_dir, EXPORT_SUBDIR)
    log(f"exported the detector to {export_dir} ({time.monotonic() - started:.1f} s in all)")
    trained_rows = [r for r in history if r.get("images_per_second")]
    return TrainResult(
        export_dir=str(export_dir),
        epochs=config.epochs,
        resumed_from_epoch=resumed_from,
        final_loss=float(history[-1]["loss"]),
        val_AP=history[-1]["val_AP"],
        val_AP50=history[-1]["val_AP50"],
        images_per_second=float(np.mean([r["images_per_second"] for r in trained_rows])) if trained_rows else 0.0,
        warm_started_from=warm_started_from,
        run_id=mlflow_run.run_id if mlflow_run else None,
        history=history,
    )
