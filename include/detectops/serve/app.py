"""The HTTP service: a TF-Serving-compatible REST API, an upload page, probes and metrics.

    from detectops.serve import ServeSettings, create_app, run
    run(ServeSettings.from_env(model_dir="models/centernet"), host="127.0.0.1", port=8080)

Endpoints
---------
``GET  /v1/models/{name}``                      TF Serving model status (``model_version_status``)
``GET  /v1/models/{name}/versions/{v}``         the same, for one version
``GET  /v1/models/{name}/metadata``             the serving signature
``POST /v1/models/{name}[/versions/{v}]:predict`` ``{"instances": [{"b64": ...}]}`` -> ``{"predictions": [...]}``
``POST /detect``                                multipart upload -> labelled boxes (for people and scripts)
``GET  /``                                      upload page: boxes drawn on the photo
``GET  /healthz`` / ``/readyz``                 process up / model loaded and warmed up
``GET  /metrics``                               Prometheus
``GET  /openapi.json``, ``/docs``               the API schema

How a request flows (why it stays fast under load): the handler (event loop) reads the
body; decoding and validation run in a thread pool; the decoded image is queued for the
``InferenceEngine``, whose workers run the model (two calls at once by default: TensorFlow
alone leaves cores idle between ops); post-processing (JSON,
metrics, the prediction-log record) runs in the thread pool again. So the event loop only
moves bytes, and decoding of the next request overlaps the current inference.

The model loads in a background thread at start-up: ``/healthz`` answers at once, and
``/readyz`` answers 503 until the model is loaded and one warm-up inference has run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from detectops import __version__
from detectops.serve import schemas
from detectops.serve.config import ServeConfigError, ServeSettings
from detectops.serve.errors import RequestError
from detectops.serve.imageio import DecodedImage, decode_image
from detectops.serve.metrics import CONTENT_TYPE, ServeMetrics
from detectops.serve.predlog import PredictionLog
from detectops.serve.processing import (
    INPUT_NAME,
    SIGNATURE,
    build_detect_response,
    build_predict_response,
    parse_predict_body,
)
from detectops.serve.state import Loader, ServiceState, default_loader, resolve_model_dir

log = logging.getLogger("detectops.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"


# -- ASGI middleware: request metrics and the body-size limit -------------------------------
class _BodyTooLarge(RequestError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "request_too_large", f"the request body is over {limit} bytes; "
                         "send smaller images (DETECTOPS_MAX_IMAGE_BYTES) or fewer instances")


class ServeMiddleware:
    """Counts and times every HTTP request by route template; refuses oversized bodies early.

    Pure ASGI (not ``BaseHTTPMiddleware``) so it adds microseconds, not a task per request.
    """

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, max_body: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                exc = _BodyTooLarge(self.max_body)
                await JSONResponse(exc.to_dict(), status_code=413, headers={"connection": "close"})(
                    scope, receive, send_wrapper)
                return
            seen = 0

            async def limited_receive() -> Message:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.max_body:
                        raise _BodyTooLarge(self.max_body)
                return message

            await self.app(scope, limited_receive, send_wrapper)
        finally:
            route = scope.get("route")
            # the template without convertors ("/v1/models/{name}:predict"): the metrics' label
            endpoint = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(endpoint, method, str(status)).inc()
            self.metrics.request_latency.labels(endpoint, method).observe(time.perf_counter() - t0)


# -- routing: a model name or version is one path segment without ':' ----------------------
class _SegmentConvertor(Convertor[str]):
    """``{name:segment}``: like ``str`` but stops at ':' (model names cannot contain one).

    So ``/v1/models/detector:predict`` never matches the model-status route with the name
    ``detector:predict``: a GET there is a 405 whose ``Allow`` says POST, not a 404.
    """

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", _SegmentConvertor())


# -- the app --------------------------------------------------------------------------------
def _error(status: int, code: str, message: str, detail: list[Any] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "code": code}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for e in errors[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "request"
            parts.append(f"{where}: {e.get('msg')}")
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        return _error(422, "invalid_request", "invalid request: " + "; ".join(parts), detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = str(exc.detail)
        if exc.status_code == 404:
            message = "no such endpoint; see /docs for the API"
        # 405 keeps Starlette's ``Allow`` header (RFC 9110: the methods the resource supports).
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), message, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, "internal", f"internal error ({type(exc).__name__}); the server is still up")


def _install_openapi(app: FastAPI, settings: ServeSettings, svc: ServiceState) -> None:
    """Make ``/openapi.json`` state what the server accepts and answers, and nothing more.

    - the predict body (parsed by hand in the thread pool, not by FastAPI): ``PredictRequest``,
      with at most ``max_instances`` instances;
    - ``{name}`` and ``{version}`` take the one served model and version (others: 404); the
      version is known once the model is loaded (a numbered layout's highest), so the schema
      is cached from then on;
    - errors are ``ErrorResponse`` (the project's error JSON), FastAPI's 422 too, which is
      declared only where FastAPI validates something (``/detect``'s form and query).
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        req = schemas.PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(req.pop("$defs", {}))
        components["PredictRequest"] = req
        components["Instances"]["maxItems"] = settings.max_instances
        error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
        served = {"name": settings.model_name, "version": svc.version}
        for path, item in schema.get("paths", {}).items():
            for op in item.values():
                params = op.get("parameters", [])
                for param in params:
                    if param["in"] == "path" and param["name"] in served:
                        param["schema"] = {"type": "string", "enum": [served[param["name"]]],
                                           "title": param["name"].title()}
                responses = op.get("responses", {})
                if "422" in responses:
                    if "requestBody" in op or any(p["in"] != "path" for p in params):
                        responses["422"] = {"description": "Invalid form or query parameters.",
                                            "content": {"application/json": {"schema": error_ref}}}
                    else:
                        del responses["422"]
            if path.endswith(":predict"):
                item["post"]["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
                }
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        if svc.loaded.is_set():
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: ServeSettings | str | Path | None = None, *, loader: Loader | None = None) -> FastAPI:
    """The FastAPI app serving ``settings.model_dir``.

    ``settings``: a ``ServeSettings``; a model directory (the other settings from the
    environment); or ``None`` (everything from ``DETECTOPS_*``).
    ``loader(path) -> detector`` defaults to ``detectops.models.Detector.load``; tests pass
    their own (e.g. one that waits, to observe ``/readyz`` before the model is ready).
    """
    if settings is None or isinstance(settings, (str, Path)):
        settings = ServeSettings.from_env(model_dir=Path(settings) if settings is not None else None)
    metrics = ServeMetrics()
    predlog = PredictionLog(settings.prediction_log, on_drop=metrics.predlog_dropped.inc)
    svc = ServiceState(settings=settings, metrics=metrics, predlog=predlog,
                       version=settings.model_version or "1")
    metrics.queue_depth.set_function(lambda: svc.engine.queue_depth if svc.engine else 0)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        svc.pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="detectops-decode")
        predlog.start()
        threading.Thread(target=svc.load, args=(loader or default_loader,), name="detectops-load",
                         daemon=True).start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, svc.loaded.wait, 600)
            if svc.engine is not None:
                svc.engine.stop()
            svc.pool.shutdown(wait=True)
            predlog.close()

    app = FastAPI(
        title="DetectOps detector service",
        version=__version__,
        description="Object detection over HTTP: a TF-Serving-compatible REST predict API, "
                    "an upload page for people (`/`), probes and Prometheus metrics.",
        lifespan=lifespan,
    )
    app.state.service = svc
    app.add_middleware(ServeMiddleware, metrics=metrics, max_body=settings.max_request_bytes)
    _install_error_handlers(app)
    _install_openapi(app, settings, svc)

    async def in_pool(fn: Callable[..., Any], *args: Any) -> Any:
        assert svc.pool is not None, "the app's lifespan has not started"
        return await asyncio.get_running_loop().run_in_executor(svc.pool, partial(fn, *args))

    async def infer(images: list[DecodedImage]) -> list[Any]:
        engine = svc.require_engine()
        futures = [engine.submit(img.pixels) for img in images]
        return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))

    # -- probes and metrics -----------------------------------------------------------------
    @app.get("/healthz", response_model=schemas.HealthResponse, tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process is up (liveness). Says nothing about the model: see ``/readyz``."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=schemas.ReadyResponse, tags=["probes"],
             responses={503: {"model": schemas.ReadyResponse, "description": "Not ready yet (or failed)."}})
    async def readyz() -> JSONResponse:
        """200 once the model is loaded and one warm-up inference has run; 503 before (readiness)."""
        body = {"ready": svc.ready, "state": svc.state,
                "model": {"name": settings.model_name, "version": svc.version},
                "error": svc.error, "warmup_seconds": svc.warmup_seconds}
        return JSONResponse(body, status_code=200 if svc.ready else 503)

    @app.get("/metrics", tags=["probes"], response_class=Response,
             responses={200: {"description": "Prometheus text format.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics_endpoint() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # -- TF-Serving REST API ---------------------------------------------------------------
    @app.get("/v1/models/{name:segment}", response_model=schemas.ModelStatusResponse, tags=["tf-serving"],
             responses={404: schemas.ERROR_RESPONSES[404]})
    async def model_status(name: str) -> dict[str, Any]:
        """TF Serving's model status: ``AVAILABLE`` once ready (``LOADING`` before, ``END`` if it failed)."""
        svc.check_model(name)
        return svc.model_status()

    @app.get("/v1/models/{name:segment}/versions/{version:segment}", response_model=schemas.ModelStatusResponse,
             tags=["tf-serving"], responses={404: schemas.ERROR_RESPONSES[404]})
    async def model_version_status(name: str, version: str) -> dict[str, Any]:
        svc.check_model(name, version)
        return svc.model_status()

    @app.get("/v1/models/{name:segment}/metadata", tags=["tf-serving"], responses={404: schemas.ERROR_RESPONSES[404]})
    async def model_metadata(name: str) -> dict[str, Any]:
        """The serving signature (the detector contract), in TF Serving's metadata shape."""
        svc.check_model(name)

        def t(dtype: str, dims: list[int]) -> dict[str, Any]:
            return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d)} for d in dims]}}

        outputs = {"detection_boxes": t("DT_FLOAT", [1, -1, 4]), "detection_classes": t("DT_FLOAT", [1, -1]),
                   "detection_scores": t("DT_FLOAT", [1, -1]), "num_detections": t("DT_FLOAT", [1])}
        return {
            "model_spec": {"name": name, "signature_name": "", "version": svc.version},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE: {
                "inputs": {INPUT_NAME: t("DT_UINT8", [1, -1, -1, 3])},
                "outputs": outputs, "method_name": "tensorflow/serving/predict"}}}},
            "label_map": {str(k): v for k, v in sorted(svc.label_map.items())},
        }

    async def _predict(request: Request, name: str, version: str | None) -> Response:
        started = time.perf_counter()
        svc.check_model(name, version)
        svc.require_engine()  # 503 before reading and decoding the body
        body = await request.body()
        images, columnar = await in_pool(parse_predict_body, body, settings, svc.input_size)
        results = await infer(images)
        request_id = uuid.uuid4().hex
        endpoint = "/v1/models/{name}:predict"
        content = await in_pool(build_predict_response, svc, request_id, images, results, columnar,
                                endpoint, started)
        return Response(content, media_type="application/json", headers={"x-request-id": request_id})

    predict_doc = dict(
        tags=["tf-serving"],
        responses={200: {"model": schemas.PredictResponse | schemas.ColumnarPredictResponse,
                         "description": '`{"predictions": [...]}`; for `inputs`, `{"outputs": {...}}`.'},
                   **schemas.ERROR_RESPONSES},
    )

    @app.post("/v1/models/{name:segment}:predict", **predict_doc)
    async def predict(name: str, request: Request) -> Response:
        """TF Serving predict: ``{"instances": [{"b64": "<base64 JPEG/PNG>"}, ...]}``.

        Returns the detector contract's raw outputs per image (no score threshold).
        """
        return await _predict(request, name, None)

    @app.post("/v1/models/{name:segment}/versions/{version:segment}:predict", **predict_doc)
    async def predict_version(name: str, version: str, request: Request) -> Response:
        """TF Serving predict for one version (only the served version exists)."""
        return await _predict(request, name, version)

    # -- for people --------------------------------------------------------------------------
    @app.post("/detect", response_model=schemas.DetectResponse, tags=["detect"],
              responses={k: v for k, v in schemas.ERROR_RESPONSES.items() if k != 404})
    async def detect(
        file: UploadFile = File(..., description="A photo (JPEG, PNG, ...): a non-empty image file.",
                                json_schema_extra={"format": "binary", "contentMediaType": "image/*",
                                                   "minLength": 1}),
        # a number or absent (None: the server's default); a query string has no null
        min_score: float = Query(None, ge=0.0, le=1.0,  # type: ignore[assignment]
                                 description="Leave out detections below this score (default: the "
                                             "server's DETECTOPS_MIN_SCORE)."),
    ) -> Response:
        """Upload a photo; get labelled boxes (pixels and normalised) above ``min_score``."""
        started = time.perf_counter()
        svc.require_engine()
        data = await file.read()
        img = await in_pool(partial(decode_image, max_bytes=settings.max_image_bytes,
                                    max_pixels=settings.max_image_pixels, target_size=svc.input_size), data)
        (d,) = await infer([img])
        request_id = uuid.uuid4().hex
        score = settings.min_score if min_score is None else min_score
        content = await in_pool(build_detect_response, svc, request_id, img, d, score, started)
        return Response(content, media_type="application/json", headers={"x-request-id": request_id})

    index_html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(index_html.replace("{{MODEL_NAME}}", settings.model_name))

    return app


def run(settings: ServeSettings | None = None, host: str = "127.0.0.1", port: int = 8080, *,
        log_level: str = "info", access_log: bool = True) -> None:
    """Serve with uvicorn until interrupted (one process: the model lives in it once)."""
    import uvicorn

    settings = settings or ServeSettings.from_env()
    if settings.model_dir is None:
        raise ServeConfigError("No model to serve: set DETECTOPS_MODEL_DIR (or pass --model-dir).")
    resolve_model_dir(settings.model_dir, settings.model_version)  # fail fast, before binding the port
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=access_log)
