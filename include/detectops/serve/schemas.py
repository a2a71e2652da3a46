"""The API's request and response shapes, as Pydantic models for the OpenAPI schema.

Hot paths build plain dicts/JSON themselves (validating 100x4 box lists through Pydantic
costs time for nothing); these models document the shapes in ``/openapi.json`` and
``/docs``. ``tests/unit/test_serve_app.py`` checks that real responses validate against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import SkipJsonSchema


# -- TF-Serving REST API --------------------------------------------------------------------
# The predict body is parsed by hand (``processing.parse_predict_body``); these models say
# exactly what that parser accepts, so that a body the schema allows is a body the server
# takes. Two things JSON Schema cannot say are stated in words: a ``b64`` value must decode
# to an image, and a tensor's rows must all have the same length.
class B64Image(BaseModel):
    """An encoded image (JPEG, PNG, ...), base64."""

    b64: str = Field(min_length=1, json_schema_extra={"format": "byte", "contentMediaType": "image/*"},
                     description="The image file's bytes, base64-encoded (standard or URL-safe alphabet); "
                                 "they must decode to an image.")


Pixel = Annotated[list[Annotated[float, Field(ge=0, le=255)]], Field(min_length=3, max_length=3)]
Row = Annotated[list[Pixel], Field(min_length=1)]


class ImageTensor(RootModel[Annotated[list[Row], Field(min_length=1)]]):
    """A raw image: ``[H][W][3]`` numbers 0-255 (RGB), every row of the same width."""


class BatchOfOneTensor(RootModel[Annotated[list[ImageTensor], Field(min_length=1, max_length=1)]]):
    """A raw image with a batch dimension of one: ``[1][H][W][3]``."""


RawTensor = ImageTensor | BatchOfOneTensor


class NamedInput(BaseModel):
    """An instance keyed by the signature's input name."""

    input_tensor: B64Image | RawTensor


Instance = B64Image | NamedInput | RawTensor


class Instances(RootModel[Annotated[list[Instance], Field(min_length=1)]]):
    """One to ``DETECTOPS_MAX_INSTANCES`` images (more: 413)."""


class NamedInputs(BaseModel):
    """Columnar inputs keyed by the signature's input name."""

    input_tensor: Instances | B64Image


EXAMPLE_PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mOoaOoBAAL8AYfzNMqyAAAAAElFTkSuQmCC"
"""A 1x1 PNG: the documented example is a request the server answers with 200."""


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # absent, not null: null is refused


class PredictRequest(BaseModel):
    """TF-Serving predict request: exactly one of ``instances`` (row format) or ``inputs`` (columnar).

    Each instance is ``{"b64": ...}``, ``{"input_tensor": ...}``, or a raw tensor ``[H][W][3]``
    of numbers 0-255. ``inputs`` is a list of instances, ``{"input_tensor": [...]}`` or one
    ``{"b64": ...}``; its answer is ``{"outputs": ...}`` as in TF Serving.
    """

    model_config = ConfigDict(json_schema_extra={
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        "examples": [{"instances": [{"b64": EXAMPLE_PNG_B64}]}]})

    signature_name: Literal["serving_default", ""] | None = Field(
        None, description='Only "serving_default" exists (empty or null: the same).')
    instances: SkipJsonSchema[None] | Instances = Field(None, json_schema_extra=_no_default)
    inputs: SkipJsonSchema[None] | Instances | NamedInputs | B64Image = Field(None, json_schema_extra=_no_default)


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
