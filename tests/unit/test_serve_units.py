"""Unit tests of the serving building blocks: settings, model-dir resolution, image decoding,
the inference engine (with a stand-in detector: this tests the engine's own queueing logic),
and the prediction log. The app itself is tested against a real SavedModel in test_serve_app.py.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from detectops.serve.config import ServeConfigError, ServeSettings
from detectops.serve.engine import EngineBusy, EngineStopped, InferenceEngine
from detectops.serve.errors import RequestError
from detectops.serve.imageio import decode_base64, decode_image, decode_instance
from detectops.serve.predlog import PredictionLog


def _jpeg(w: int = 40, h: int = 30, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _noisy(fmt: str, w: int = 200, h: int = 150) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


# -- settings --------------------------------------------------------------------------------
def test_settings_from_env_parses_types_and_overrides_win(tmp_path):
    env = {"DETECTOPS_MODEL_DIR": str(tmp_path), "DETECTOPS_MODEL_NAME": "cn", "DETECTOPS_MAX_BATCH_SIZE": "4",
           "DETECTOPS_BATCH_WAIT_MS": "2.5", "DETECTOPS_MIN_SCORE": "0.5", "DETECTOPS_PREDICTION_LOG": "stdout",
           "DETECTOPS_MAX_IMAGE_BYTES": "1000", "DETECTOPS_MAX_INSTANCES": "3", "DETECTOPS_MODEL_VERSION": "7",
           "DETECTOPS_INFERENCE_WORKERS": "3"}
    s = ServeSettings.from_env(env, model_name="other")
    assert s.inference_workers == 3 and ServeSettings().inference_workers == 2
    assert s.model_dir == tmp_path and s.model_name == "other" and s.model_version == "7"
    assert (s.max_batch_size, s.batch_wait_ms, s.min_score) == (4, 2.5, 0.5)
    assert (s.max_image_bytes, s.max_instances, s.prediction_log) == (1000, 3, "stdout")
    assert s.max_request_bytes > 3 * 1000
    assert ServeSettings.from_env({}) == ServeSettings()  # defaults


@pytest.mark.parametrize("env, needle", [
    ({"DETECTOPS_MAX_BATCH_SIZE": "four"}, "DETECTOPS_MAX_BATCH_SIZE"),
    ({"DETECTOPS_MIN_SCORE": "1.5"}, "min_score"),
    ({"DETECTOPS_MAX_INSTANCES": "0"}, "max_instances"),
    ({"DETECTOPS_MODEL_NAME": "a/b"}, "model_name"),
])
def test_settings_reject_bad_values_with_the_name(env, needle):
    with pytest.raises(ServeConfigError, match=needle):
        ServeSettings.from_env(env)


def test_resolve_model_dir_savedmodel_and_versioned_layout(tmp_path):
    from detectops.serve import resolve_model_dir

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "saved_model.pb").write_bytes(b"x")
    assert resolve_model_dir(plain) == (plain, "1")
    assert resolve_model_dir(plain, "5") == (plain, "5")
    base = tmp_path / "base"
    for v in ("1", "3", "12"):
        (base / v).mkdir(parents=True)
        (base / v / "saved_model.pb").write_bytes(b"x")
    (base / "tmp").mkdir()
    assert resolve_model_dir(base) == (base / "12", "12")  # numeric, not lexical, order
    assert resolve_model_dir(base, "3") == (base / "3", "3")
    with pytest.raises(ServeConfigError, match=r"versions there: \[1, 3, 12\]"):
        resolve_model_dir(base, "2")
    with pytest.raises(ServeConfigError, match="does not exist"):
        resolve_model_dir(tmp_path / "missing")
    with pytest.raises(ServeConfigError, match="no SavedModel"):
        resolve_model_dir(base / "tmp")


# -- image decoding ------------------------------------------------------------------------
def test_decode_image_jpeg_png_grayscale_rgba():
    img = decode_image(_jpeg(40, 30, 200), max_bytes=10**6, max_pixels=10**6)
    assert img.pixels.shape == (30, 40, 3) and img.pixels.dtype == np.uint8 and img.format == "JPEG"
    assert abs(float(img.pixels.mean()) - 200) < 3
    for mode, shape in (("L", (20, 10)), ("RGBA", (20, 10, 4)), ("P", (20, 10))):
        buf = io.BytesIO()
        Image.fromarray(np.zeros(shape, np.uint8), mode=mode if mode != "P" else None).convert(mode).save(buf, "PNG")
        out = decode_image(buf.getvalue(), max_bytes=10**6, max_pixels=10**6)
        assert out.pixels.shape == (20, 10, 3)


def test_decode_image_honours_exif_orientation():
    img = Image.fromarray(np.zeros((30, 40, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees: a phone photo taken upright
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    assert decode_image(buf.getvalue(), max_bytes=10**6, max_pixels=10**6).pixels.shape == (40, 30, 3)


@pytest.mark.parametrize("data, status, code", [
    (b"", 400, "empty_image"),
    (b"hello, this is text", 400, "not_an_image"),
    (_noisy("JPEG")[: len(_noisy("JPEG")) // 2], 400, "truncated_image"),
    (_noisy("PNG")[: len(_noisy("PNG")) // 2], 400, "truncated_image"),
    (b"x" * 2000, 413, "image_too_large"),
])
def test_decode_image_errors(data, status, code):
    with pytest.raises(RequestError) as err:
        decode_image(data, max_bytes=1500 if code == "image_too_large" else 10**6, max_pixels=10**6)
    assert (err.value.status, err.value.code) == (status, code)


def test_decode_image_refuses_too_many_pixels_before_decoding():
    buf = io.BytesIO()
    Image.new("L", (3000, 2000)).save(buf, "PNG")  # small file, 6 megapixels
    with pytest.raises(RequestError) as err:
        decode_image(buf.getvalue(), max_bytes=10**6, max_pixels=1_000_000)
    assert err.value.status == 413 and "3000x2000" in err.value.message


def test_large_jpeg_is_decoded_at_reduced_scale_but_reports_its_size():
    big = _noisy("JPEG", w=2200, h=1400)
    kw = dict(max_bytes=10**7, max_pixels=10**7)
    full = decode_image(big, **kw)
    fast = decode_image(big, target_size=(512, 512), **kw)
    assert full.pixels.shape == (1400, 2200, 3) and full.original_size is None
    assert fast.pixels.shape == (700, 1100, 3)  # 1/2 scale: 1/4 would be below 512
    assert (fast.width, fast.height) == (2200, 1400)
    # Small images and PNGs are decoded as they are.
    assert decode_image(_noisy("JPEG", 900, 600), target_size=(512, 512), **kw).pixels.shape == (600, 900, 3)
    assert decode_image(_noisy("PNG", 1200, 1100), target_size=(512, 512), **kw).pixels.shape == (1100, 1200, 3)


def test_decode_base64_and_instances():
    data = _jpeg()
    assert decode_base64(base64.b64encode(data).decode()) == data
    assert decode_base64(base64.urlsafe_b64encode(data).decode().rstrip("=")) == data
    for bad in ("!!!!", 12, ""):
        with pytest.raises(RequestError) as err:
            decode_base64(bad)
        assert err.value.status == 400
    b64 = base64.b64encode(data).decode()
    kw = dict(max_bytes=10**6, max_pixels=10**6)
    assert decode_instance({"b64": b64}, **kw).pixels.shape == (30, 40, 3)
    assert decode_instance({"input_tensor": {"b64": b64}}, **kw).pixels.shape == (30, 40, 3)
    raw = np.arange(2 * 3 * 3).reshape(2, 3, 3).tolist()
    assert decode_instance(raw, **kw).pixels.tolist() == raw
    assert decode_instance({"input_tensor": [raw]}, **kw).pixels.shape == (2, 3, 3)
    for bad, code in (({"image": b64}, "invalid_instance"), ("abc", "invalid_instance"),
                      ([[1, 2], [3]], "invalid_tensor"), ([[[1, 2]]], "invalid_tensor"),
                      ([[[1, 2, 300]]], "invalid_tensor"),
                      # JSON true is not a number, though numpy would read [true, 1, 2] as [1, 1, 2]
                      ([[[True, 1, 2]]], "invalid_tensor"), ([[[[1.5, 2, False]]]], "invalid_tensor")):
        with pytest.raises(RequestError) as err:
            decode_instance(bad, **kw)
        assert err.value.code == code, bad


# -- inference engine ----------------------------------------------------------------------
class _Recorder:
    """A stand-in detector that records calls (engine logic only; real models in test_serve_app)."""

    label_map = {1: "thing"}

    def __init__(self, delay: float = 0.0, batch_capable: bool = False, fail_on: int | None = None):
        self.delay, self.batch_capable, self.fail_on = delay, batch_capable, fail_on
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def _one(self, image):
        if self.fail_on is not None and int(image[0, 0, 0]) == self.fail_on:
            raise RuntimeError("boom")
        return SimpleNamespace(boxes=np.zeros((1, 4)), classes=np.array([1]), scores=np.array([image[0, 0, 0] / 255]))

    def predict(self, image):
        self.gate.wait()
        time.sleep(self.delay)
        self.calls.append(1)
        return self._one(image)

    def predict_batch(self, images):
        self.gate.wait()
        self.calls.append(len(images))
        return [self._one(im) for im in images]


def _img(v: int) -> np.ndarray:
    return np.full((4, 4, 3), v, np.uint8)


def test_engine_answers_each_caller_with_its_own_result():
    engine = InferenceEngine(_Recorder()).start()
    try:
        futs = [engine.submit(_img(v)) for v in range(10)]
        assert [round(f.result(5).scores[0] * 255) for f in futs] == list(range(10))
    finally:
        engine.stop()


def test_engine_runs_as_many_calls_at_once_as_it_has_workers_and_stops_them_all():
    running, most = 0, 0
    lock = threading.Lock()

    class Counting(_Recorder):
        def predict(self, image):
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            try:
                return super().predict(image)
            finally:
                with lock:
                    running -= 1

    det = Counting(delay=0.02)
    engine = InferenceEngine(det, workers=2).start()
    futs = [engine.submit(_img(v)) for v in range(12)]
    assert [round(f.result(5).scores[0] * 255) for f in futs] == list(range(12))  # each caller its own answer
    assert most == 2  # two calls in flight, never more
    det.gate.clear()  # hold both workers, queue more, then stop
    held = [engine.submit(_img(v)) for v in range(2)]
    time.sleep(0.05)
    queued = [engine.submit(_img(v)) for v in range(3)]
    threading.Timer(0.1, det.gate.set).start()
    t0 = time.perf_counter()
    engine.stop(timeout=5)
    assert time.perf_counter() - t0 < 2  # every worker got its own stop
    assert all(f.result(1).scores[0] >= 0 for f in held)  # calls under way finish
    for f in queued:  # nobody waits for ever
        assert f.done()
        if f.exception() is not None:
            assert isinstance(f.exception(), EngineStopped)
    with pytest.raises(EngineStopped):
        engine.submit(_img(1))


def test_engine_micro_batches_only_batch_capable_detectors():
    stats = []
    det = _Recorder(batch_capable=True)
    det.gate.clear()  # hold the worker so that the queue fills up
    engine = InferenceEngine(det, max_batch_size=4, max_wait_ms=300, on_batch=stats.append).start()
    try:
        futs = [engine.submit(_img(v)) for v in range(6)]
        det.gate.set()
        assert [round(f.result(5).scores[0] * 255) for f in futs] == list(range(6))
        assert det.calls == [4, 2]  # a full batch of 4, then the 2 left after waiting max_wait_ms
        assert [s.batch_size for s in stats] == [4, 2] and all(len(s.call_seconds) == 1 for s in stats)
        t0 = time.perf_counter()
        engine.predict(_img(9), timeout=5)  # a lone request waits at most max_wait_ms for company
        assert 0.25 < time.perf_counter() - t0 < 2.0 and det.calls[-1] == 1
    finally:
        engine.stop()
    # Without batch_capable (the contract's batch-1 models) the batch is run image by image.
    plain = _Recorder()
    plain.gate.clear()
    engine = InferenceEngine(plain, max_batch_size=4, max_wait_ms=50, on_batch=stats.append).start()
    try:
        futs = [engine.submit(_img(v)) for v in range(4)]
        time.sleep(0.02)
        plain.gate.set()
        assert [round(f.result(5).scores[0] * 255) for f in futs] == list(range(4))
        assert plain.calls == [1, 1, 1, 1]
    finally:
        engine.stop()


def test_engine_back_pressure_errors_and_stop():
    det = _Recorder(fail_on=7)
    det.gate.clear()
    engine = InferenceEngine(det, max_queue=2).start()
    first = engine.submit(_img(1))
    time.sleep(0.05)  # taken by the worker, blocked at the gate
    queued = [engine.submit(_img(7)), engine.submit(_img(2))]
    with pytest.raises(EngineBusy) as err:
        engine.submit(_img(3))
    assert err.value.status == 503
    det.gate.set()
    assert first.result(5).scores[0] > 0
    with pytest.raises(RuntimeError, match="boom"):  # a failing image fails only its own request
        queued[0].result(5)
    assert queued[1].result(5).scores[0] > 0
    engine.stop()
    with pytest.raises(EngineStopped):
        engine.submit(_img(1))


# -- prediction log ------------------------------------------------------------------------
def test_prediction_log_appends_json_lines(tmp_path):
    path = tmp_path / "logs" / "pred.jsonl"
    for run in range(2):  # a restart appends, never truncates
        plog = PredictionLog(str(path)).start()
        for i in range(3):
            assert plog.write({"run": run, "i": i})
        plog.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"run": r, "i": i} for r in range(2) for i in range(3)]


def test_prediction_log_disabled_and_stdout(capsys):
    off = PredictionLog("").start()
    assert not off.enabled and off.write({"a": 1}) is False
    out = PredictionLog("stdout").start()
    out.write({"a": 1})
    out.close()
    assert json.loads(capsys.readouterr().out.strip()) == {"a": 1}


def test_prediction_log_drops_instead_of_blocking_when_the_sink_is_slow():
    release = threading.Event()

    class SlowStream(io.StringIO):
        def write(self, s):
            release.wait(5)
            return super().write(s)

    dropped = []
    stream = SlowStream()
    plog = PredictionLog(None, stream=stream, max_queue=2, on_drop=lambda: dropped.append(1)).start()
    plog.write({"i": 0})
    deadline = time.time() + 5
    while plog._queue.qsize() and time.time() < deadline:  # the worker took it and is stuck writing
        time.sleep(0.01)
    t0 = time.perf_counter()
    results = [plog.write({"i": i}) for i in range(1, 6)]
    assert time.perf_counter() - t0 < 0.1  # never blocks the caller
    assert results == [True, True, False, False, False] and len(dropped) == 3
    release.set()
    plog.close()
    assert [json.loads(x)["i"] for x in stream.getvalue().splitlines()] == [0, 1, 2]
