"""The served model's state: where it is, whether it is loaded, and what requests share.

``ServiceState.load`` runs in a background thread at start-up (so ``/healthz`` answers at
once); ``/readyz`` and ``GET /v1/models/{name}`` report its progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectops import __version__
from detectops.serve.config import ServeConfigError, ServeSettings
from detectops.serve.engine import DetectorLike, EngineStopped, InferenceEngine
from detectops.serve.errors import RequestError
from detectops.serve.metrics import ServeMetrics
from detectops.serve.predlog import PredictionLog

log = logging.getLogger("detectops.serve")

Loader = Callable[[Path], DetectorLike]


# -- model directory ------------------------------------------------------------------------
def resolve_model_dir(model_dir: Path, version: str | None = None) -> tuple[Path, str]:
    """The SavedModel to serve and its version.

    ``model_dir`` is a SavedModel (``saved_model.pb`` inside) or a TF-Serving base directory
    with numbered versions (``base/1/saved_model.pb``, ...): the requested ``version`` or the
    highest is served. A SavedModel's version is ``version``, else its directory name if it
    is a number, else ``"1"``.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ServeConfigError(
            f"DETECTOPS_MODEL_DIR={model_dir} does not exist or is not a directory; "
            "point it at a detector SavedModel (e.g. the path `detectops fetch-model` printed)."
        )
    if (model_dir / "saved_model.pb").is_file():
        if version is None:
            version = model_dir.name if model_dir.name.isdigit() else "1"
        return model_dir, str(version)
    versions = sorted(
        (int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file())
    )
    if not versions:
        raise ServeConfigError(
            f"{model_dir} holds no SavedModel (no saved_model.pb, no numbered version directories); "
            "point DETECTOPS_MODEL_DIR at a detector SavedModel."
        )
    if version is not None:
        if not str(version).isdigit() or int(version) not in versions:
            raise ServeConfigError(
                f"version {version} is not in {model_dir} (versions there: {versions}); "
                "fix DETECTOPS_MODEL_VERSION or unset it to serve the newest."
            )
        chosen = int(version)
    else:
        chosen = versions[-1]
    return model_dir / str(chosen), str(chosen)


def default_loader(path: Path) -> DetectorLike:
    from detectops.models.detector import Detector

    return Detector.load(path)


# -- state ----------------------------------------------------------------------------------
@dataclass
class ServiceState:
    """Everything a request handler needs; lives on ``app.state.service``."""

    settings: ServeSettings
    metrics: ServeMetrics
    predlog: PredictionLog
    version: str
    model_path: Path | None = None
    state: str = "START"  # TF Serving's ModelVersionState: START, LOADING, AVAILABLE, END
    error: str | None = None
    warmup_seconds: float | None = None
    engine: InferenceEngine | None = None
    label_map: dict[int, str] = field(default_factory=dict)
    input_size: tuple[int, int] | None = None  # the model's fixed (height, width), if any
    pool: ThreadPoolExecutor | None = None
    loaded: threading.Event = field(default_factory=threading.Event)

    @property
    def ready(self) -> bool:
        return self.state == "AVAILABLE" and self.engine is not None

    def load(self, loader: Loader) -> None:
        """Load, start the engine, warm up. Runs in a background thread at start-up."""
        self.state = "LOADING"
        t0 = time.perf_counter()
        try:
            if self.settings.model_dir is None:
                raise ServeConfigError("No model to serve: set DETECTOPS_MODEL_DIR to a detector SavedModel.")
            self.model_path, self.version = resolve_model_dir(self.settings.model_dir, self.settings.model_version)
            self.metrics.model_info.info({"name": self.settings.model_name, "version": self.version,
                                          "path": str(self.model_path), "detectops": __version__})
            detector = loader(self.model_path)
            self.label_map = {int(k): str(v) for k, v in (getattr(detector, "label_map", None) or {}).items()}
            self.input_size = getattr(detector, "input_size", None)
            engine = InferenceEngine(
                detector,
                max_batch_size=self.settings.max_batch_size,
                max_wait_ms=self.settings.batch_wait_ms,
                max_queue=self.settings.max_queue,
                workers=self.settings.inference_workers,
                on_batch=self.metrics.observe_batch,
            ).start()
            self.warmup_seconds = round(engine.warm_up(), 4)
            self.engine = engine
            self.state = "AVAILABLE"
            self.metrics.model_ready.set(1)
            self.metrics.model_load_seconds.set(time.perf_counter() - t0)
            log.info("model %s version %s loaded from %s in %.1fs (warm-up %.3fs)", self.settings.model_name,
                     self.version, self.model_path, time.perf_counter() - t0, self.warmup_seconds)
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the model status
            self.state = "END"
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("model failed to load: %s", self.error)
        finally:
            self.loaded.set()

    def require_engine(self) -> InferenceEngine:
        if self.engine is None or not self.ready:
            if self.state == "END":
                raise RequestError(503, "model_failed", f"the model failed to load: {self.error}")
            raise EngineStopped()
        return self.engine

    def check_model(self, name: str, version: str | None = None) -> None:
        if name != self.settings.model_name:
            raise RequestError(404, "model_not_found",
                               f"model {name!r} is not served here; this server serves "
                               f"{self.settings.model_name!r} (GET /v1/models/{self.settings.model_name})")
        if version is not None and version != self.version:
            raise RequestError(404, "version_not_found",
                               f"version {version!r} of model {name!r} is not served here; "
                               f"the served version is {self.version!r}")

    def model_status(self) -> dict[str, Any]:
        code, msg = ("OK", "") if self.state != "END" else ("UNKNOWN", self.error or "load failed")
        return {"model_version_status": [
            {"version": self.version, "state": self.state, "status": {"error_code": code, "error_message": msg}}
        ]}
