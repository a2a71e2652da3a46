"""``TrainConfig``: everything that decides what the trainer produces, as one plain dataclass.

Two presets: :meth:`TrainConfig.tiny` (tests and e2e runs: seconds) and :meth:`TrainConfig.demo`
(the real detector: about 5 minutes on 2 cores). A config travels as JSON (``to_dict`` /
``from_dict``), e.g. on the ``detectops train --config`` command line and as MLflow params.
No TensorFlow here: the CLI and DAG files may import it cheaply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from detectops.errors import DetectOpsError

#: Width of the feature maps at output stride 4 / 8 / 16: the model is ``input_size / 4`` heatmap cells wide.
OUTPUT_STRIDE = 4


class TrainConfigError(DetectOpsError):
    """A training configuration is invalid (unknown key, wrong type or out-of-range value)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run. Same config + same data + same seed = same weights."""

    #: Side of the square network input in pixels (a multiple of 16). Images are resized to it.
    input_size: int = 192
    #: Channels of the backbone stages at strides 2, 4, 8, 16 (the last one also has ``extra_blocks``).
    widths: tuple[int, int, int, int] = (16, 32, 64, 128)
    #: Extra stride-16 depthwise-separable blocks (receptive field for large objects).
    extra_blocks: int = 2
    #: Channels of the upsampling path and the heads.
    head_width: int = 64
    epochs: int = 8
    #: Epochs of a run that starts from the champion's weights (0 = ``epochs``): a warm start
    #: begins near its end point, so a retrain need not pay a from-scratch run's time.
    warm_start_epochs: int = 0
    batch_size: int = 16
    #: Peak learning rate (Adam), reached after ``warmup_steps``, then cosine decay to ``lr * final_lr_fraction``.
    learning_rate: float = 4e-3
    warmup_steps: int = 100
    final_lr_fraction: float = 0.02
    weight_decay: float = 1e-4
    #: Train on at most this many steps per epoch (0 = the whole train split each epoch).
    steps_per_epoch: int = 0
    #: Hold at most this many training images in memory (0 = all). A larger split is sampled
    #: (seeded, uniformly over the whole split, so new batches keep their share): a training
    #: pod's memory stays flat as the dataset grows (each image takes about 0.4 MB with its
    #: targets and its mirror).
    max_train_images: int = 0
    #: Probability of a horizontal flip; relative range of brightness/contrast jitter (0 = off).
    flip_probability: float = 0.5
    color_jitter: float = 0.2
    #: Loss weights (CenterNet's defaults: heatmap 1, size 0.1, offset 1).
    size_loss_weight: float = 0.1
    offset_loss_weight: float = 1.0
    #: Detections the exported model returns per image (top-k heatmap peaks).
    max_detections: int = 100
    #: Evaluate on the val split every epoch (0 = only after the last epoch) on at most this many images (0 = all).
    eval_every: int = 1
    eval_max_images: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.input_size < 32 or self.input_size % 16:
            problems.append(f"input_size must be a multiple of 16 and >= 32 (got {self.input_size})")
        if len(self.widths) != 4 or any(int(w) < 4 for w in self.widths):
            problems.append(f"widths must be 4 channel counts >= 4 (got {list(self.widths)})")
        for name in ("epochs", "batch_size", "head_width", "max_detections"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("extra_blocks", "steps_per_epoch", "max_train_images", "warmup_steps", "eval_every", "eval_max_images",
                     "warm_start_epochs"):
            if int(getattr(self, name)) < 0:
                problems.append(f"{name} must be >= 0")
        if not self.learning_rate > 0:
            problems.append("learning_rate must be > 0")
        if not 0 <= self.flip_probability <= 1 or not 0 <= self.color_jitter < 1:
            problems.append("flip_probability must be in [0, 1] and color_jitter in [0, 1)")
        if not 0 <= self.final_lr_fraction <= 1:
            problems.append("final_lr_fraction must be in [0, 1]")
        if problems:
            raise TrainConfigError("Invalid TrainConfig: " + "; ".join(problems) + ".")

    # ------------------------------------------------------------------ presets
    @classmethod
    def tiny(cls, **overrides: Any) -> "TrainConfig":
        """Seconds on 2 cores: 64 px, a narrow network, 3 epochs of 4 steps. For tests and e2e runs."""
        base = cls(input_size=64, widths=(8, 16, 24, 32), extra_blocks=1, head_width=16, epochs=3, batch_size=8,
                   learning_rate=5e-3, warmup_steps=2, steps_per_epoch=4, max_detections=20, eval_max_images=16)
        return replace(base, **overrides)

    @classmethod
    def demo(cls, **overrides: Any) -> "TrainConfig":
        """The real detector: about 5 minutes on 2 cores, however large the dataset has grown.

        Level 1 retrains on every landed batch, so its dataset only grows. A budget of 8 epochs of
        at most 64 steps (8,192 images seen; a first batch of 1,000 training images fills it) and a
        validation of at most 200 images keep a retrain's time flat: a larger split is sampled, a
        fresh permutation per epoch, not walked whole. At most 2,048 training images are held in
        memory (a seeded sample of a larger split), which keeps the pod under its 4 GiB limit:
        3,546 images were OOM-killed. See scripts/benchmarks/bench_train.py.

        A warm start trains 4 epochs: it reached val AP 0.678 after its first epoch and 0.761
        after eight, and the retrain's whole run must fit in 10 minutes (docs/benchmarks.md).
        """
        return replace(cls(steps_per_epoch=64, eval_max_images=200, max_train_images=2048, warm_start_epochs=4),
                       **overrides)

    @classmethod
    def preset(cls, name: str) -> "TrainConfig":
        presets = {"tiny": cls.tiny, "demo": cls.demo}
        if name not in presets:
            raise TrainConfigError(f"Unknown training preset {name!r}; choose one of {sorted(presets)} or pass JSON.")
        return presets[name]()

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A config from a dict; missing keys keep their defaults, unknown keys are an error.

        ``{"preset": "tiny", "epochs": 5}`` starts from a preset and overrides some fields.
        """
        d = dict(d)
        preset = d.pop("preset", None)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise TrainConfigError(f"Unknown TrainConfig keys {unknown}; known keys: {sorted(known)}.")
        if "widths" in d:
            d["widths"] = tuple(int(w) for w in d["widths"])
        try:
            for name, value in list(d.items()):
                if name != "widths":
                    d[name] = type(getattr(cls(), name))(value)  # "5" -> 5, 1 -> 1.0: JSON is loose
        except (TypeError, ValueError) as exc:
            raise TrainConfigError(f"TrainConfig value of the wrong type: {exc}") from exc
        base = cls.preset(preset) if preset else cls()
        return replace(base, **d)

    def warm_started(self) -> "TrainConfig":
        """The configuration a run that starts from trained weights uses: ``warm_start_epochs``."""
        return replace(self, epochs=self.warm_start_epochs) if self.warm_start_epochs else self

    # ------------------------------------------------------------------ what a warm start must match
    def architecture(self) -> dict[str, Any]:
        """The fields that shape the weights: a warm start needs them equal."""
        return {"widths": list(self.widths), "extra_blocks": self.extra_blocks, "head_width": self.head_width}

    @property
    def grid_size(self) -> int:
        """Heatmap cells per side."""
        return self.input_size // OUTPUT_STRIDE
