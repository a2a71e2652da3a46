"""The API's request and response shapes, as Pydantic models for the OpenAPI schema.

Hot paths build plain dicts/JSON themselves (validating 100x4 box lists through Pydantic
costs time for nothing); these models document the shapes in ``/openapi.json`` and
``/docs``. ``tests/unit/test_serve_app.py`` checks that real responses validate against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


# -- TF-Serving REST API --------------------------------------------------------------------
class B64Image(BaseModel):
    """An encoded image (JPEG, PNG, ...), base64."""

    b64: str = Field(description="The image file's bytes, base64-encoded (standard or URL-safe alphabet).")


class PredictRequest(BaseModel):
    """TF-Serving predict request. Row format (``instances``) or columnar (``inputs``).

    Each instance is ``{"b64": ...}``, ``{"input_tensor": {"b64": ...}}``, or a raw uint8
    tensor ``[H][W][3]`` as nested lists. ``inputs`` takes the same values as a list, or
    ``{"input_tensor": [...]}``; its answer is ``{"outputs": ...}`` as in TF Serving.
    """

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"instances": [{"b64": "/9j/4AAQSkZJRg..."}]}]})

    signature_name: str | None = Field(None, description='Only "serving_default" exists.')
    instances: list[B64Image | dict[str, Any] | list[Any]] | None = None
    inputs: list[B64Image | dict[str, Any] | list[Any]] | dict[str, Any] | None = None


class Prediction(BaseModel):
    """The detector contract's outputs for one image (raw: no score threshold applied)."""

    detection_boxes: list[list[float]] = Field(description="[N, 4] normalised [ymin, xmin, ymax, xmax].")
    detection_classes: list[int] = Field(description="[N] label-map ids.")
    detection_scores: list[float] = Field(description="[N] scores, descending.")
    num_detections: int


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class ColumnarPredictResponse(BaseModel):
    outputs: dict[str, list[Any]] = Field(description="Each output, one entry per input.")


class ModelVersionStatusStatus(BaseModel):
    error_code: str = "OK"
    error_message: str = ""


class ModelVersionStatus(BaseModel):
    version: str
    state: Literal["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
    status: ModelVersionStatusStatus


class ModelStatusResponse(BaseModel):
    """TF Serving's ``GetModelStatus`` answer."""

    model_version_status: list[ModelVersionStatus]


# -- For people: /detect ------------------------------------------------------------------
class PixelBox(BaseModel):
    xmin: float
    ymin: float
    xmax: float
    ymax: float


class NormalizedBox(BaseModel):
    ymin: float
    xmin: float
    ymax: float
    xmax: float


class LabelledDetection(BaseModel):
    label: str = Field(description='Label name from the model\'s label map ("class 7" if unknown).')
    class_id: int
    score: float
    box: PixelBox = Field(description="In pixels of the uploaded image.")
    box_normalized: NormalizedBox = Field(description="Fractions of the image height/width, 0-1.")


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str


class ModelInfo(BaseModel):
    name: str
    version: str


class DetectResponse(BaseModel):
    model: ModelInfo
    image: ImageInfo
    min_score: float
    num_detections: int
    detections: list[LabelledDetection]
    latency_ms: float


# -- Errors and probes --------------------------------------------------------------------
class ErrorResponse(BaseModel):
    """Every error: TF-Serving's ``error`` message plus a stable ``code``."""

    error: str = Field(description="What is wrong and what to do.")
    code: str = Field(description="Machine-readable reason, e.g. not_an_image, image_too_large.")
    detail: list[Any] | None = None


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    state: str
    model: ModelInfo
    error: str | None = None
    warmup_seconds: float | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad input (not an image, malformed JSON, ...)."},
    404: {"model": ErrorResponse, "description": "Unknown model name or version."},
    413: {"model": ErrorResponse, "description": "Image or request too large, too many instances."},
    503: {"model": ErrorResponse, "description": "Model not loaded yet, or the server is overloaded."},
}
