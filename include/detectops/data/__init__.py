"""COCO-format datasets: load/save, content hashes, the synthetic generator, the real eval set.

Stays cheap to import (NumPy at most); PIL and pycocotools load inside the functions that need them.
"""

from detectops.data.coco import (
    ANNOTATIONS_FILE,
    IMAGES_DIR,
    CocoDataset,
    DatasetFormatError,
    DatasetRef,
)
from detectops.data.evalset import REAL_EVAL_DIR, real_eval_set
from detectops.data.hashing import dataset_hash
from detectops.data.synthetic import SHAPES, SYNTHETIC_LABEL_MAP, SyntheticSpec, generate_synthetic

__all__ = [
    "ANNOTATIONS_FILE",
    "IMAGES_DIR",
    "CocoDataset",
    "DatasetFormatError",
    "DatasetRef",
    "REAL_EVAL_DIR",
    "real_eval_set",
    "dataset_hash",
    "SHAPES",
    "SYNTHETIC_LABEL_MAP",
    "SyntheticSpec",
    "generate_synthetic",
]
