"""The bounded load generator (detectops.deploy.loadgen) against a small HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from detectops.deploy.loadgen import LoadGenerator, detect_request, model_version_of, predict_request
from detectops.errors import DetectOpsError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client says otherwise
    fail_every = 0
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.seen.append((self.client_address[1], self.headers.get("Connection", "")))
            n = len(self.seen)
        status = 503 if self.fail_every and n % self.fail_every == 0 else 200
        body = json.dumps({"model": {"version": "2" if n % 3 == 0 else "1"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_) -> None:
        pass


@pytest.fixture
def server():
    _Handler.seen, _Handler.fail_every = [], 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_bounded_by_count_with_a_new_connection_per_request(server) -> None:
    load = LoadGenerator(server, **detect_request(b"\xff\xd8jpeg"), max_requests=30, concurrency=3).start()
    result = load.wait(30)
    assert (result.sent, result.ok, result.failed, result.stopped) == (30, 30, 0, "max_requests")
    assert result.statuses == {"200": 30}
    assert result.answered_by == {"1": 20, "2": 10} and result.share("2") == pytest.approx(1 / 3)
    ports = {port for port, _ in _Handler.seen}
    assert len(ports) == 30 and {c for _, c in _Handler.seen} == {"close"}  # never a pinned connection
    json.dumps(result.to_dict())


def test_bounded_by_time_and_rate_and_stoppable(server) -> None:
    started = time.monotonic()
    result = LoadGenerator(server, path="/x", max_requests=1000, max_seconds=0.6, rate_per_s=20).start().wait(10)
    assert result.stopped == "max_seconds" and time.monotonic() - started < 3
    assert 8 <= result.sent <= 14  # ~20/s for 0.6 s
    with LoadGenerator(server, path="/x", max_requests=1000, max_seconds=60, rate_per_s=50) as load:
        time.sleep(0.3)
    assert load.result().stopped == "stopped" and not load.running and load.result().sent < 30


def test_http_errors_and_connection_failures_count_as_failed(server) -> None:
    _Handler.fail_every = 4
    result = LoadGenerator(server, path="/x", max_requests=20, concurrency=2).start().wait(30)
    assert result.failed == 5 and result.statuses == {"200": 15, "503": 5} and result.errors == {"HTTP 503": 5}
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    refused = LoadGenerator(f"http://127.0.0.1:{closed}", path="/x", max_requests=3, timeout_s=2).start().wait(30)
    assert refused.failed == 3 and refused.statuses == {"0": 3} and refused.errors == {"ConnectionError": 3}
    assert refused.first_failures and refused.p99_ms is None


def test_only_loopback_and_sane_bounds() -> None:
    with pytest.raises(DetectOpsError, match="only to 127.0.0.1"):
        LoadGenerator("http://10.0.0.7:8080", path="/detect")
    with pytest.raises(DetectOpsError, match="load bounds"):
        LoadGenerator("http://127.0.0.1:1", path="/detect", concurrency=100)


def test_request_builders() -> None:
    predict = predict_request(b"img", "detector")
    assert predict["path"] == "/v1/models/detector:predict" and json.loads(predict["body"])["instances"][0]["b64"]
    assert detect_request(b"img")["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert model_version_of(200, b'{"model": {"version": 7}}') == "7"
    assert model_version_of(503, b"{}") is None and model_version_of(200, b"<html>") is None
