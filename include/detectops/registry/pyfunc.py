"""The MLflow pyfunc wrapper of a detector SavedModel.

Imported only when MLflow logs or loads a model (it imports mlflow at module level because
the class must subclass ``PythonModel``). Being a module-level class of an installed
package, it is pickled by reference: loading needs ``detectops`` installed (the project's
image has it), and the SavedModel travels as the ``saved_model`` artifact.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np

#: Name of the artifact that holds the SavedModel directory inside the MLflow model.
SAVED_MODEL_ARTIFACT = "saved_model"


class DetectorPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(images)`` -> one dict per image: ``boxes`` (normalised ymin, xmin, ymax, xmax), ``classes``, ``scores``.

    ``images``: one uint8 H x W x 3 array, a uint8 N x H x W x 3 array, or a list of arrays.
    All detections are returned (as the SavedModel gives them); filter by score downstream.
    """

    def load_context(self, context: Any) -> None:
        from detectops.models import Detector

        self._detector = Detector.load(context.artifacts[SAVED_MODEL_ARTIFACT])

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would validate inputs by them
        if isinstance(model_input, np.ndarray) and model_input.ndim == 3:
            images = [model_input]
        else:
            images = list(model_input)
        out = []
        for image in images:
            d = self._detector.predict(np.asarray(image))
            out.append({"boxes": d.boxes.tolist(), "classes": d.classes.tolist(), "scores": d.scores.tolist()})
        return out
