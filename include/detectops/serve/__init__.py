"""The HTTP service: TF-Serving-compatible REST predict API, upload page, probes, metrics.

    from detectops.serve import ServeSettings, create_app, run

Importing this package does not import TensorFlow; the model loads when the app starts.
"""

from detectops.serve.app import create_app, run
from detectops.serve.state import resolve_model_dir
from detectops.serve.config import ServeConfigError, ServeSettings

__all__ = ["ServeConfigError", "ServeSettings", "create_app", "resolve_model_dir", "run"]
