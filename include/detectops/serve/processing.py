"""Request processing that runs in the decode thread pool, off the event loop.

Parsing and validating a TF-Serving body, decoding its images, and turning detections into
JSON, metrics and prediction-log records. Plain functions of bytes and arrays, so they are
easy to test and never block the event loop.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

from detectops.monitoring.features import box_sizes, image_features, output_features
from detectops.serve import schemas
from detectops.serve.config import ServeSettings
from detectops.serve.errors import RequestError, bad_request, too_large
from detectops.serve.imageio import DecodedImage, decode_instance
from detectops.serve.state import ServiceState

log = logging.getLogger("detectops.serve")

INPUT_NAME = "input_tensor"
SIGNATURE = "serving_default"


def parse_predict_body(body: bytes, settings: ServeSettings,
                       target_size: tuple[int, int] | None = None) -> tuple[list[DecodedImage], bool]:
    """Validate a TF-Serving predict body and decode its images; ``(images, columnar)``."""
    if not body.strip():
        raise bad_request("empty_body", 'the request body is empty; send JSON {"instances": [{"b64": "..."}]}')
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request("malformed_json", f"the body is not valid JSON ({exc}); "
                          'send {"instances": [{"b64": "<base64 image>"}]}') from None
    if not isinstance(payload, dict):
        raise bad_request("invalid_request", f'the body must be a JSON object with "instances", '
                          f"got {type(payload).__name__}")
    sig = payload.get("signature_name")
    if sig not in (None, "", SIGNATURE):
        raise bad_request("unknown_signature", f"signature {sig!r} does not exist; the only one is {SIGNATURE!r}")
    columnar = "instances" not in payload and "inputs" in payload
    if "instances" in payload and "inputs" in payload:
        raise bad_request("invalid_request", 'send either "instances" or "inputs", not both')
    items = payload.get("instances") if not columnar else payload.get("inputs")
    if items is None:
        raise bad_request("missing_instances", 'the body has no "instances" (or "inputs") list; '
                          'send {"instances": [{"b64": "<base64 image>"}]}')
    if columnar and isinstance(items, dict):
        if INPUT_NAME in items:
            items = items[INPUT_NAME]
        elif "b64" in items:
            items = [items]
        else:
            raise bad_request("missing_instances", f'"inputs" must be a list or {{"{INPUT_NAME}": [...]}}')
        if isinstance(items, dict):  # {"input_tensor": {"b64": ...}}
            items = [items]
    if not isinstance(items, list):
        raise bad_request("invalid_request", f'"instances" must be a list, got {type(items).__name__}')
    if not items:
        raise bad_request("missing_instances", '"instances" is empty; send at least one image')
    if len(items) > settings.max_instances:
        raise too_large("too_many_instances", f"{len(items)} instances in one request; the limit is "
                        f"{settings.max_instances} (DETECTOPS_MAX_INSTANCES): split the request")
    images = []
    for i, item in enumerate(items):
        try:
            images.append(decode_instance(item, max_bytes=settings.max_image_bytes,
                                          max_pixels=settings.max_image_pixels, input_name=INPUT_NAME,
                                          target_size=target_size))
        except RequestError as exc:
            raise exc.for_instance(i) from None
    return images, columnar


def raw_prediction(d: Any) -> dict[str, Any]:
    return {
        "detection_boxes": d.boxes.astype(float).round(5).tolist(),
        "detection_classes": [int(c) for c in d.classes],
        "detection_scores": d.scores.astype(float).round(5).tolist(),
        "num_detections": int(len(d.scores)),
    }


def labelled_detections(d: Any, img: DecodedImage, min_score: float, label_map: dict[int, str]) -> list[dict[str, Any]]:
    rows = []
    h, w = img.height, img.width
    for box, c, s in zip(d.boxes, d.classes, d.scores):
        if s < min_score:
            continue
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        rows.append({
            "label": label_map.get(int(c), f"class {int(c)}"),
            "class_id": int(c),
            "score": round(float(s), 4),
            "box": {"xmin": round(xmin * w, 1), "ymin": round(ymin * h, 1),
                    "xmax": round(xmax * w, 1), "ymax": round(ymax * h, 1)},
            "box_normalized": {"ymin": round(ymin, 5), "xmin": round(xmin, 5),
                               "ymax": round(ymax, 5), "xmax": round(xmax, 5)},
        })
    return rows


def _record(svc: ServiceState, endpoint: str, request_id: str, index: int, img: DecodedImage, d: Any,
            min_score: float, started: float) -> None:
    """Metrics + prediction-log record of one image (thread pool; never raises)."""
    try:
        keep = d.scores >= min_score
        scores = [round(float(s), 4) for s in d.scores[keep]]
        classes = [int(c) for c in d.classes[keep]]
        image = image_features(img.pixels, img.width, img.height)
        svc.metrics.observe_detections(endpoint, scores,
                                       [svc.label_map.get(c, f"class {c}") for c in classes], image["brightness_mean"])
        svc.predlog.write({
            "time": datetime.now(timezone.utc).isoformat(),
            "request_id": request_id,
            "endpoint": endpoint,
            "model_name": svc.settings.model_name,
            "model_version": svc.version,
            "instance": index,
            "format": img.format,
            **image,
            "min_score": min_score,
            **output_features(scores, classes, box_sizes(d.boxes[keep])),
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        })
    except Exception:  # noqa: BLE001 - monitoring must never fail a request
        log.exception("could not record prediction")


def build_predict_response(svc: ServiceState, request_id: str, images: list[DecodedImage], results: list[Any],
                           columnar: bool, endpoint: str, started: float) -> bytes:
    preds = [raw_prediction(d) for d in results]
    for i, (img, d) in enumerate(zip(images, results)):
        _record(svc, endpoint, request_id, i, img, d, svc.settings.min_score, started)
    if columnar:
        body: dict[str, Any] = {"outputs": {k: [p[k] for p in preds] for k in schemas.Prediction.model_fields}}
    else:
        body = {"predictions": preds}
    return json.dumps(body, separators=(",", ":")).encode()


def build_detect_response(svc: ServiceState, request_id: str, img: DecodedImage, d: Any, min_score: float,
                          started: float) -> bytes:
    rows = labelled_detections(d, img, min_score, svc.label_map)
    _record(svc, "/detect", request_id, 0, img, d, min_score, started)
    body = {
        "model": {"name": svc.settings.model_name, "version": svc.version},
        "image": {"width": img.width, "height": img.height, "format": img.format},
        "min_score": min_score,
        "num_detections": len(rows),
        "detections": rows,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    return json.dumps(body, separators=(",", ":")).encode()
