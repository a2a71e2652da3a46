"""The small, real, hand-annotated evaluation set committed under ``include/datasets/real-eval``.

Ten CC0 / public-domain / permissively licensed photos (see its ``LICENSES.md``),
annotated by hand with COCO category ids, so a COCO-trained detector can be scored on
real pixels without any download.
"""

from __future__ import annotations

from pathlib import Path

from detectops.data.coco import ANNOTATIONS_FILE
from detectops.errors import DataValidationError
from detectops.settings import INCLUDE_DIR

REAL_EVAL_DIR = INCLUDE_DIR / "datasets" / "real-eval"


def real_eval_set() -> Path:
    """Directory of the real evaluation set (``annotations.json`` + ``images/``)."""
    if not (REAL_EVAL_DIR / ANNOTATIONS_FILE).is_file():
        raise DataValidationError(
            f"The real evaluation set is missing at {REAL_EVAL_DIR}. It is part of the "
            "repository: restore it with `git checkout -- include/datasets/real-eval`, or set "
            "DETECTOPS_INCLUDE_DIR to a checkout's include/ folder."
        )
    return REAL_EVAL_DIR
