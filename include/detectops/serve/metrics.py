"""Prometheus metrics of the service (``GET /metrics``).

Each app gets its own ``CollectorRegistry``, so several apps in one process (tests, the
benchmark) never collide. Endpoint labels are route *templates* (``/v1/models/{name}:predict``),
never raw paths, to keep label cardinality bounded.

The registry also carries the process's own metrics (``process_resident_memory_bytes``,
``process_cpu_seconds_total``, ``process_open_fds``, ``process_start_time_seconds``, from
``/proc``) and ``python_info``: Prometheus' restart alert reads ``process_start_time_seconds``
(include/monitoring/rules/serving.yml).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from detectops.serve.engine import BatchStats

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
_COUNT_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServeMetrics:
    """The service's metrics, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.requests = Counter(
            "detectops_http_requests", "HTTP requests answered, by endpoint, method and status code.",
            ["endpoint", "method", "status"], registry=r)
        self.request_latency = Histogram(
            "detectops_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["endpoint", "method"], buckets=_LATENCY_BUCKETS, registry=r)
        self.inference_latency = Histogram(
            "detectops_inference_duration_seconds", "Time of one model call (excluding queueing).",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "detectops_queue_wait_seconds", "Time an image waited for the model after decoding.",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "detectops_batch_size", "Images the inference worker took from the queue together.",
            buckets=_BATCH_BUCKETS, registry=r)
        self.images = Counter(
            "detectops_images", "Images run through the model, by endpoint.", ["endpoint"], registry=r)
        self.detections_per_image = Histogram(
            "detectops_detections_per_image", "Detections at or above min_score per image.",
            buckets=_COUNT_BUCKETS, registry=r)
        self.detection_score = Histogram(
            "detectops_detection_score", "Scores of detections at or above min_score.",
            buckets=_SCORE_BUCKETS, registry=r)
        self.detections_by_class = Counter(
            "detectops_detections", "Detections at or above min_score, by label.", ["label"], registry=r)
        self.image_brightness = Histogram(
            "detectops_image_mean_brightness", "Mean luma (0-255) of the images served (drift signal).",
            buckets=(16, 32, 64, 96, 128, 160, 192, 224, 255), registry=r)
        self.model_info = Info(
            "detectops_model", "The model being served (name, version, path).", registry=r)
        self.model_ready = Gauge(
            "detectops_model_ready", "1 when the model is loaded and warmed up.", registry=r)
        self.model_load_seconds = Gauge(
            "detectops_model_load_seconds", "Seconds spent loading and warming up the model.", registry=r)
        self.queue_depth = Gauge(
            "detectops_inference_queue_depth", "Images waiting for the model.", registry=r)
        self.predlog_dropped = Counter(
            "detectops_prediction_log_dropped", "Prediction log records dropped (sink too slow).", registry=r)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_size.observe(stats.batch_size)
        for s in stats.call_seconds:
            self.inference_latency.observe(s)

    def observe_detections(self, endpoint: str, scores: Sequence[float], labels: Sequence[str],
                           brightness: float) -> None:
        """``scores`` / ``labels``: the detections at or above min_score of one image."""
        self.images.labels(endpoint).inc()
        self.detections_per_image.observe(len(scores))
        for s in scores:
            self.detection_score.observe(s)
        for label in labels:
            self.detections_by_class.labels(label).inc()
        self.image_brightness.observe(brightness)

    def render(self) -> bytes:
        return generate_latest(self.registry)
