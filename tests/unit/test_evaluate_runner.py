"""The detector runner: box conversion, prefetching, latency (a fake detector: this tests our loop)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from detectops.errors import DataValidationError
from detectops.evaluate.runner import (InferenceRun, latency_summary, load_image, map_ordered, prefetch, run_detector,
                                       to_coco_results)


def test_normalised_yx_boxes_become_pixel_xywh():
    d = SimpleNamespace(boxes=np.array([[0.1, 0.2, 0.5, 0.6]]), classes=np.array([3]), scores=np.array([0.75]))
    # width 200, height 100: x = 0.2*200, y = 0.1*100, w = 0.4*200, h = 0.4*100
    assert to_coco_results(7, d, width=200, height=100) == [
        {"image_id": 7, "category_id": 3, "bbox": [40.0, 10.0, 80.0, 40.0], "score": 0.75}
    ]


def test_boxes_outside_the_image_are_clipped():
    d = SimpleNamespace(boxes=np.array([[-0.2, -0.1, 1.3, 0.5]]), classes=np.array([1]), scores=np.array([0.5]))
    assert to_coco_results(1, d, width=100, height=50)[0]["bbox"] == [0.0, 0.0, 50.0, 50.0]


def test_prefetch_keeps_order_and_loads_on_another_thread():
    threads = set()

    def load(x: int) -> int:
        threads.add(threading.get_ident())
        return x * 10

    assert list(prefetch(range(20), load, depth=3)) == [(i, i * 10) for i in range(20)]
    assert threads and threading.get_ident() not in threads


def test_prefetch_reraises_loader_error_in_the_consumer():
    def load(x: int) -> int:
        if x == 2:
            raise DataValidationError("bad image 2")
        return x

    seen = []
    with pytest.raises(DataValidationError, match="bad image 2"):
        for item, _ in prefetch(range(5), load):
            seen.append(item)
    assert seen == [0, 1]


def test_prefetch_stops_its_thread_when_the_consumer_stops_early():
    before = threading.active_count()
    gen = prefetch(range(1000), lambda x: x, depth=1)
    next(gen)
    gen.close()
    time.sleep(0.1)
    assert threading.active_count() == before


def test_map_ordered_runs_calls_at_once_and_yields_them_in_order():
    running, most = 0, 0
    lock = threading.Lock()

    def slow(x: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02 if x % 2 else 0.005)  # later items often finish first
        with lock:
            running -= 1
        return -x

    assert list(map_ordered(range(30), slow, workers=3, ahead=2)) == [(i, -i) for i in range(30)]
    assert most == 3  # three calls were in flight, never more than the workers


def test_map_ordered_reraises_for_the_failing_item_and_stops():
    calls = []

    def fn(x: int) -> int:
        calls.append(x)
        if x == 3:
            raise ValueError("item 3 is bad")
        return x

    seen = []
    with pytest.raises(ValueError, match="item 3"):
        for item, _ in map_ordered(range(1000), fn, workers=2, ahead=2):
            seen.append(item)
    assert seen == [0, 1, 2] and len(calls) < 20  # what was not submitted yet never ran


def test_broken_image_says_which_file_and_what_to_do(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataValidationError, match="broken.jpg.*annotations.json"):
        load_image(bad)


def test_grayscale_image_is_decoded_as_rgb(tmp_path):
    Image.fromarray(np.full((4, 6), 7, np.uint8)).save(tmp_path / "g.png")
    image = load_image(tmp_path / "g.png")
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8


class SlowDetector:
    """Sleeps 20 ms per call and records the image sizes it saw."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def predict(self, image: np.ndarray) -> SimpleNamespace:
        self.shapes.append(image.shape)
        time.sleep(0.02)
        return SimpleNamespace(boxes=np.array([[0.0, 0.0, 0.5, 0.5]]), classes=np.array([1]), scores=np.array([0.9]))


def test_run_detector_times_the_model_and_converts_per_image_size(tmp_path):
    images = []
    for i, (w, h) in enumerate([(40, 20), (30, 60), (50, 50)], start=1):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / f"{i}.png")
        images.append((i, tmp_path / f"{i}.png"))
    det = SlowDetector()
    run = run_detector(det, images)
    assert len(det.shapes) == 4  # one warm-up call + 3 timed
    assert run.num_images == 3
    assert all(19.0 <= ms < 200.0 for ms in run.latencies_ms)
    assert [r["bbox"] for r in run.results] == [[0.0, 0.0, 20.0, 10.0], [0.0, 0.0, 15.0, 30.0], [0.0, 0.0, 25.0, 25.0]]
    summary = latency_summary(run)
    assert 19.0 <= summary["p50_ms"] <= summary["p95_ms"]
    assert 0 < summary["throughput_ips"] <= 1000 / 19.0


def test_latency_summary_of_nothing_is_zero():
    assert latency_summary(InferenceRun()) == {"p50_ms": 0.0, "p95_ms": 0.0, "mean_ms": 0.0, "throughput_ips": 0.0}


def test_percentiles():
    run = InferenceRun(latencies_ms=[float(x) for x in range(1, 101)], wall_s=2.0)
    s = latency_summary(run)
    assert s["p50_ms"] == pytest.approx(50.5) and s["p95_ms"] == pytest.approx(95.05)
    assert s["throughput_ips"] == pytest.approx(50.0)
