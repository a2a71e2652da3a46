"""Settings of the HTTP service, read from the environment (``DETECTOPS_*``).

One dataclass so that the CLI (``detectops serve``), the container and the tests configure
the service the same way. Every field has a default that is safe for a laptop; the container
sets ``DETECTOPS_MODEL_DIR`` and listens on 0.0.0.0:8080.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from detectops.errors import DetectOpsError

#: Environment variable for each field (the field name upper-cased, prefixed).
ENV_PREFIX = "DETECTOPS_"
_ENV_NAMES = {
    "model_dir": "DETECTOPS_MODEL_DIR",
    "model_name": "DETECTOPS_MODEL_NAME",
    "model_version": "DETECTOPS_MODEL_VERSION",
    "max_batch_size": "DETECTOPS_MAX_BATCH_SIZE",
    "batch_wait_ms": "DETECTOPS_BATCH_WAIT_MS",
    "inference_workers": "DETECTOPS_INFERENCE_WORKERS",
    "max_image_bytes": "DETECTOPS_MAX_IMAGE_BYTES",
    "max_image_pixels": "DETECTOPS_MAX_IMAGE_PIXELS",
    "max_instances": "DETECTOPS_MAX_INSTANCES",
    "max_queue": "DETECTOPS_MAX_QUEUE",
    "decode_threads": "DETECTOPS_DECODE_THREADS",
    "prediction_log": "DETECTOPS_PREDICTION_LOG",
    "min_score": "DETECTOPS_MIN_SCORE",
}


class ServeConfigError(DetectOpsError):
    """A serving setting is missing or malformed."""


@dataclass(frozen=True)
class ServeSettings:
    """How the service runs. ``ServeSettings.from_env()`` reads ``DETECTOPS_*`` variables.

    - ``model_dir``: a contract SavedModel directory, or a TF-Serving base directory with
      numbered version subdirectories (``base/1``, ``base/2``: the highest, or
      ``model_version``, is served).
    - ``model_version``: reported by ``GET /v1/models/{name}``; default: the version
      subdirectory's number, else ``"1"``.
    - ``max_batch_size`` / ``batch_wait_ms``: micro-batching of the inference engine
      (see ``detectops.serve.engine``; 1 / 0 is best on CPU-only machines).
    - ``inference_workers``: model calls in flight at once (2: 1.1-1.35x the throughput of one
      at a time on 2 cores, where TensorFlow alone leaves them idle between ops; see the engine).
    - ``max_image_bytes`` / ``max_image_pixels``: larger images get 413.
    - ``max_instances``: more instances in one predict request get 413.
    - ``max_queue``: images waiting for the model; beyond it requests get 503 (back-pressure).
    - ``prediction_log``: ``""`` (off), ``"stdout"``/``"-"``, or a file path (JSON lines, appended).
    - ``min_score``: detections below it are left out of ``/detect`` and counted as
      not detected in metrics and the prediction log (the TF-Serving API returns raw outputs).
    """

    model_dir: Path | None = None
    model_name: str = "detector"
    model_version: str | None = None
    max_batch_size: int = 1
    batch_wait_ms: float = 0.0
    inference_workers: int = 2
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_instances: int = 16
    max_queue: int = 64
    decode_threads: int = 4
    prediction_log: str = ""
    min_score: float = 0.3

    def __post_init__(self) -> None:
        if self.model_dir is not None and not isinstance(self.model_dir, Path):
            object.__setattr__(self, "model_dir", Path(self.model_dir))
        problems = []
        if not self.model_name or "/" in self.model_name or ":" in self.model_name:
            problems.append(f"model_name {self.model_name!r} must be non-empty without '/' or ':'")
        for name in ("max_batch_size", "inference_workers", "max_image_bytes", "max_image_pixels", "max_instances",
                     "max_queue", "decode_threads"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.batch_wait_ms < 0:
            problems.append(f"batch_wait_ms must be >= 0 (got {self.batch_wait_ms})")
        if not 0.0 <= self.min_score <= 1.0:
            problems.append(f"min_score must be in [0, 1] (got {self.min_score})")
        if problems:
            raise ServeConfigError("Invalid serving settings: " + "; ".join(problems) + ".")

    @property
    def max_request_bytes(self) -> int:
        """Largest request body accepted: every instance at the byte limit, base64-encoded."""
        return self.max_instances * (self.max_image_bytes * 4 // 3 + 1024) + 64 * 1024

    def with_overrides(self, **changes: object) -> ServeSettings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["model_dir"] = str(self.model_dir) if self.model_dir else None
        return d

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ServeSettings:
        """Read ``DETECTOPS_*`` variables (see the class docstring); ``overrides`` win."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in _ENV_NAMES.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            kind = types[name]
            try:
                if kind == "int":
                    kwargs[name] = int(raw)
                elif kind == "float":
                    kwargs[name] = float(raw)
                elif name == "model_dir":
                    kwargs[name] = Path(raw)
                else:
                    kwargs[name] = raw
            except ValueError:
                raise ServeConfigError(
                    f"Environment variable {var}={raw!r} is not a valid {kind}; fix or unset it."
                ) from None
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)
