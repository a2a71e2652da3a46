"""The one detector contract and its sources.

A detector is a TF SavedModel with the TF2 Detection Model Zoo serving signature (see
``contract``). ``fetch_model`` turns a source string into a verified one on local disk
(``ModelRef``); ``Detector`` is the only code that runs one.

Importing this package is cheap: TensorFlow and MLflow are imported inside the functions
that need them.
"""

from detectops.errors import ContractError, ModelSourceError
from detectops.models.contract import SignatureSpec, verify_contract
from detectops.models.detector import Detections, Detector
from detectops.models.labels import coco_label_map, read_label_map
from detectops.models.sources import ModelRef, fetch_model

__all__ = [
    "ContractError",
    "Detections",
    "Detector",
    "ModelRef",
    "ModelSourceError",
    "SignatureSpec",
    "coco_label_map",
    "fetch_model",
    "read_label_map",
    "verify_contract",
]
