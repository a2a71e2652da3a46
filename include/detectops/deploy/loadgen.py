"""A bounded load generator for the production Service's NodePort on 127.0.0.1.

It drives a canary analysis (live traffic for Prometheus to judge) and measures what a switch
costs clients (every failed request is counted). Bounded on purpose: at most ``max_requests``
requests and ``max_seconds`` seconds, a few concurrent workers, optionally a fixed rate; it runs
in a background thread so the caller polls Prometheus meanwhile.

    url = nodeport_url(kube, "detectops", "detector")          # http://127.0.0.1:<nodePort>
    with LoadGenerator(url, **detect_request(jpeg), max_requests=600, max_seconds=120) as load:
        ...                                                      # analysis, promotion, removal
    print(load.result().to_dict())                               # {"sent": 600, "failed": 0, ...}

Every request opens a new connection (``Connection: close``): kube-proxy balances connections,
not requests, so a pinned keep-alive connection would see one pod only and would not move off a
pod that is draining. A request fails when it raises (refused, reset, timed out) or is answered
with anything but 2xx. Only 127.0.0.1 is accepted as a target: load stays on loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from detectops.errors import DetectOpsError

LOOPBACK = "127.0.0.1"

#: ``answered_by(status, body) -> str | None``: who answered (e.g. the model version), counted per value.
AnsweredBy = Callable[[int, bytes], str | None]


@dataclass
class Sample:
    """One request: when it started (Unix s), how long it took, its status (0: no answer), who answered."""

    at: float
    seconds: float
    status: int
    answered_by: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class LoadResult:
    """What the load saw; ``to_dict()`` is XCom-safe (no per-request samples)."""

    url: str
    sent: int
    ok: int
    failed: int
    statuses: dict[str, int]
    errors: dict[str, int]
    answered_by: dict[str, int]
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    stopped: str
    first_failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def share(self, who: str) -> float:
        """Share of the answered requests that ``who`` answered."""
        total = sum(self.answered_by.values())
        return self.answered_by.get(who, 0) / total if total else 0.0


def _percentile_ms(seconds: list[float], q: float) -> float | None:
    if not seconds:
        return None
    ordered = sorted(seconds)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


class LoadGenerator:
    """Send ``method path`` to ``base_url`` from ``concurrency`` threads until a bound is reached or ``stop()``."""

    def __init__(self, base_url: str, *, path: str, method: str = "POST", body: bytes = b"",
                 headers: Mapping[str, str] | None = None, max_requests: int = 500, max_seconds: float = 120,
                 concurrency: int = 2, rate_per_s: float | None = None, timeout_s: float = 10,
                 answered_by: AnsweredBy | None = None) -> None:
        host = urlsplit(base_url).hostname
        if host != LOOPBACK:
            raise DetectOpsError(f"the load generator sends only to {LOOPBACK} (the NodePort on loopback), "
                                 f"not to {host!r}")
        if not (0 < max_requests <= 100_000 and 0 < max_seconds <= 3600 and 1 <= concurrency <= 16):
            raise DetectOpsError("load bounds: 0 < max_requests <= 100000, 0 < max_seconds <= 3600, "
                                 "1 <= concurrency <= 16")
        if rate_per_s is not None and rate_per_s <= 0:
            raise DetectOpsError("rate_per_s must be > 0 (or None: as fast as the workers go)")
        self.url = base_url.rstrip("/") + path
        self.method, self.body = method, body
        self.headers = {**(headers or {}), "Connection": "close"}
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.concurrency, self.rate_per_s, self.timeout_s = concurrency, rate_per_s, timeout_s
        self.answered_by = answered_by
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._issued = 0
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0
        self._ended: float | None = None
        self._stopped = ""

    # -- running ---------------------------------------------------------------------------------
    def start(self) -> LoadGenerator:
        if self._threads:
            raise DetectOpsError("this load generator was started already")
        self._t0 = time.monotonic()
        self._threads = [threading.Thread(target=self._worker, name=f"loadgen-{i}", daemon=True)
                         for i in range(self.concurrency)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Stop issuing requests (those in flight finish)."""
        with self._lock:
            self._stopped = self._stopped or "stopped"
        self._stop.set()

    def wait(self, timeout_s: float | None = None) -> LoadResult:
        """Block until the workers are done (a bound reached or ``stop()``); return the result."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.result()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self.wait(self.timeout_s + 5)

    def _ticket(self) -> int | None:
        """The next request's number, or None when a bound is reached."""
        with self._lock:
            if self._stop.is_set():
                return None
            if self._issued >= self.max_requests:
                self._stopped = self._stopped or "max_requests"
                return None
            if time.monotonic() - self._t0 >= self.max_seconds:
                self._stopped = self._stopped or "max_seconds"
                return None
            self._issued += 1
            return self._issued - 1

    def _worker(self) -> None:
        import requests

        while (n := self._ticket()) is not None:
            if self.rate_per_s:
                due = self._t0 + n / self.rate_per_s
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
            at, started = time.time(), time.perf_counter()
            sample = Sample(at=at, seconds=0.0, status=0)
            try:
                # requests.request: a fresh Session, hence a fresh connection, per request
                resp = requests.request(self.method, self.url, data=self.body or None, headers=self.headers,
                                        timeout=self.timeout_s)
                sample.status = resp.status_code
                if self.answered_by is not None:
                    sample.answered_by = self.answered_by(resp.status_code, resp.content)
                if not sample.ok:
                    sample.error = f"HTTP {resp.status_code}: {resp.text[:120]}"
            except requests.RequestException as exc:
                sample.error = f"{type(exc).__name__}: {str(exc)[:160]}"
            sample.seconds = time.perf_counter() - started
            with self._lock:
                self.samples.append(sample)
                self._ended = time.monotonic()

    # -- results ---------------------------------------------------------------------------------
    def result(self) -> LoadResult:
        """The figures so far (safe while running)."""
        with self._lock:
            samples = list(self.samples)
            stopped = self._stopped or ("running" if self.running else "")
            ended = self._ended if not self.running and self._ended else time.monotonic()
        failures = [s for s in samples if not s.ok]
        return LoadResult(
            url=self.url, sent=len(samples), ok=len(samples) - len(failures), failed=len(failures),
            statuses=dict(Counter(str(s.status) for s in samples)),
            errors=dict(Counter(s.error.split(":", 1)[0] for s in failures if s.error)),
            answered_by=dict(Counter(s.answered_by for s in samples if s.ok and s.answered_by)),
            seconds=round(ended - self._t0, 2) if self._t0 else 0.0,
            p50_ms=_percentile_ms([s.seconds for s in samples if s.ok], 0.50),
            p99_ms=_percentile_ms([s.seconds for s in samples if s.ok], 0.99),
            stopped=stopped,
            first_failures=[f"{time.strftime('%H:%M:%S', time.gmtime(s.at))} {s.error}" for s in failures[:5]],
        )

    def samples_between(self, start: float, end: float) -> list[Sample]:
        """Samples started within ``[start, end)`` (Unix seconds), e.g. during a promotion."""
        with self._lock:
            return [s for s in self.samples if start <= s.at < end]


# -- what to send --------------------------------------------------------------------------------
def nodeport_url(kube: Any, namespace: str, service: str, port: int = 8080) -> str:
    """``http://127.0.0.1:<nodePort>`` of the production Service (kube-proxy answers on loopback)."""
    from detectops.deploy.smoke import service_address

    _, node_port = service_address(kube, namespace, service, port)
    if not node_port:
        raise DetectOpsError(f"service {namespace}/{service} has no nodePort for port {port}: it must be of "
                             "type NodePort (include/k8s/serving/service.yaml)")
    return f"http://{LOOPBACK}:{node_port}"


def detect_request(image: bytes, filename: str = "load.jpg", content_type: str = "image/jpeg") -> dict[str, Any]:
    """``POST /detect`` with ``image``: kwargs for ``LoadGenerator`` (the answer names the model version)."""
    from detectops.deploy.smoke import _multipart

    body, ctype = _multipart("file", filename, image, content_type)
    return {"path": "/detect", "method": "POST", "body": body, "headers": {"Content-Type": ctype},
            "answered_by": model_version_of}


def predict_request(image: bytes, serving_name: str = "detector") -> dict[str, Any]:
    """TF-Serving ``:predict`` with one image: kwargs for ``LoadGenerator``."""
    import base64

    body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]}).encode()
    return {"path": f"/v1/models/{serving_name}:predict", "method": "POST", "body": body,
            "headers": {"Content-Type": "application/json"}}


def model_version_of(status: int, body: bytes) -> str | None:
    """The model version in a ``/detect`` answer (``{"model": {"version": ...}}``)."""
    if not 200 <= status < 300:
        return None
    try:
        return str(json.loads(body)["model"]["version"])
    except (ValueError, KeyError, TypeError):
        return None
