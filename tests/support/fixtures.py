"""Shared fixtures: real services started for the test session (see tests/support/services.py).

A service that cannot start makes its tests skip with a message saying how to start it;
CI (``DETECTOPS_NO_SKIP=1``) turns those skips into failures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from detectops.platform_net import bridge_forward, bridge_ip
from tests.support.services import ServiceStartError, start_mlflow_server, stop_process


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real MLflow tracking server + registry; ``MLFLOW_TRACKING_URI`` points at it.

    ``DETECTOPS_TEST_MLFLOW_URI`` uses an already running server instead of starting one.
    When the local cluster runs, pods reach the server at
    ``detectops.platform_net.pod_reachable_url(url)`` (a forwarder on the bridge address).
    """
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    external = os.environ.get("DETECTOPS_TEST_MLFLOW_URI")
    proc = None
    if external:
        url = external.rstrip("/")
    else:
        try:
            url, proc = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
        except ServiceStartError as exc:
            pytest.skip(
                f"MLflow server could not start ({exc}). Install the requirements "
                "(`pip install -r requirements.txt`), or start one with `scripts/services/mlflow.sh start` "
                "and set DETECTOPS_TEST_MLFLOW_URI=http://127.0.0.1:5000"
            )
    os.environ["MLFLOW_TRACKING_URI"] = url
    forward = None
    try:
        if bridge_ip() is not None and urlsplit(url).hostname in ("127.0.0.1", "localhost"):
            forward = bridge_forward(urlsplit(url).port)
        yield url
    finally:
        if forward is not None:
            forward.stop()
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
        if proc is not None:
            stop_process(proc)


# --------------------------------------------------------------------------- evaluation case
#: Image sizes (width, height) of the tiny evaluation set: different, to catch x/y or w/h mix-ups.
TINY_EVAL_SIZES = {1: (200, 100), 2: (120, 160)}

#: What evaluating ``tiny_eval_case``'s detector on its dataset must give, computed by hand:
#: person is found exactly on both images (AP 1); dog is found exactly on image 1, missed on
#: image 2 (its ground truth there is elsewhere) and the image-2 dog detection is a false
#: positive ranked after the true one: precision 1 up to recall 0.5, so 51 of pycocotools'
#: 101 recall points have precision 1 -> AP 51/101 at every IoU threshold. cup: no ground truth.
TINY_EVAL_EXPECTED = {
    "per_class_ap": {"person": 1.0, "dog": 51 / 101, "cup": None},
    "AP": (1.0 + 51 / 101) / 2,
    "num_images": 2,
    "num_detections": 4,
}


def _pixel_box(box: tuple[float, float, float, float], width: int, height: int) -> list[float]:
    ymin, xmin, ymax, xmax = box
    return [xmin * width, ymin * height, (xmax - xmin) * width, (ymax - ymin) * height]


@pytest.fixture()
def tiny_eval_case(tmp_path):
    """``(model_dir, dataset_dir)``: the tiny detector and a 2-image COCO dataset (see TINY_EVAL_EXPECTED)."""
    return make_tiny_eval_case(tmp_path)


def make_tiny_eval_case(tmp_path):
    """Write the tiny detector and its 2-image dataset under ``tmp_path``; return ``(model_dir, dataset_dir)``."""
    import numpy as np
    from PIL import Image

    from detectops.data import CocoDataset
    from tests.support.tiny_detector import DEFAULT_BOXES, make_tiny_detector

    model_dir = make_tiny_detector(tmp_path / "tiny_model")  # person .9 at DEFAULT_BOXES[0], dog .6 at [1]
    root = tmp_path / "tiny_dataset"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id, (w, h) in TINY_EVAL_SIZES.items():
        name = f"img{image_id}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        annotations.append({"image_id": image_id, "category_id": 1, "bbox": _pixel_box(DEFAULT_BOXES[0], w, h)})
    annotations.append({"image_id": 1, "category_id": 18, "bbox": _pixel_box(DEFAULT_BOXES[1], 200, 100)})
    annotations.append({"image_id": 2, "category_id": 18, "bbox": [0.0, 0.0, 20.0, 20.0]})  # missed
    for i, a in enumerate(annotations, start=1):
        a.update(id=i, area=a["bbox"][2] * a["bbox"][3], iscrowd=0)
    categories = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 47, "name": "cup"}]
    CocoDataset(root=root, images=images, annotations=annotations, categories=categories).save()
    return model_dir, root
