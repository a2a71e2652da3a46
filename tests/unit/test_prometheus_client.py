"""detectops.monitoring.prometheus against a real HTTP server on 127.0.0.1 that answers the way
Prometheus' API does (its JSON envelope, 400 bad_data, 422 execution, 503 while starting) —
no mock of requests. The client against a real Prometheus: tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from detectops.errors import DetectOpsError, ServiceUnavailableError, is_transient
from detectops.monitoring.prometheus import PrometheusClient

VECTOR = [{"metric": {"__name__": "up", "job": "prometheus"}, "value": [1700000000.0, "1"]}]
MATRIX = [{"metric": {"job": "prometheus"}, "values": [[1700000000.0, "1"], [1700000005.0, "1"]]}]

#: query text -> (status, content type, body) the fake server answers with.
ANSWERS = {
    "up": (200, "application/json", {"status": "success", "data": {"resultType": "vector", "result": VECTOR}}),
    "up{": (400, "application/json", {"status": "error", "errorType": "bad_data",
                                      "error": 'invalid parameter "query": 1:4: parse error: unexpected end of input inside braces'}),
    "a / on() b": (422, "application/json", {"status": "error", "errorType": "execution",
                                             "error": "found duplicate series for the match group"}),
    "starting": (503, "text/plain", "Service Unavailable"),
    "broken": (500, "application/json", {"status": "error", "errorType": "internal", "error": "tsdb closed"}),
    "proxy": (502, "text/html", "<html>Bad Gateway</html>"),
}


class FakePrometheus(BaseHTTPRequestHandler):
    requests_seen: list[tuple[str, str, dict[str, list[str]]]] = []

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        self.requests_seen.append(("POST", self.path, form))
        query = form.get("query", [""])[0]
        if self.path not in ("/api/v1/query", "/api/v1/query_range"):
            self._send(404, "text/plain", "404 page not found\n")
        elif query == "slow":
            time.sleep(1.0)
            self._send(*ANSWERS["up"])
        elif self.path == "/api/v1/query_range" and query == "up":
            self._send(200, "application/json", {"status": "success", "data": {"resultType": "matrix", "result": MATRIX}})
        else:
            self._send(*ANSWERS[query])

    def _send(self, status: int, ctype: str, body) -> None:
        raw = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_) -> None:
        pass


@pytest.fixture(scope="module")
def server_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def prom(server_url):
    FakePrometheus.requests_seen.clear()
    return PrometheusClient(server_url + "/", timeout_s=0.3)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: connecting is refused


def test_query_returns_the_result_and_sends_the_query_and_time(prom) -> None:
    assert prom.query("up", time=1700000000.5) == VECTOR
    (method, path, form), = FakePrometheus.requests_seen
    assert (method, path) == ("POST", "/api/v1/query")  # the trailing slash of the URL is dropped
    assert form == {"query": ["up"], "time": ["1700000000.5"]}


def test_query_range_sends_start_end_step(prom) -> None:
    from datetime import datetime, timezone

    start = datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)  # 1700000000
    assert prom.query_range("up", start=start, end=1700000060, step=5) == MATRIX
    (_, path, form), = FakePrometheus.requests_seen
    assert path == "/api/v1/query_range"
    assert form == {"query": ["up"], "start": ["1700000000.000"], "end": ["1700000060"], "step": ["5"]}


@pytest.mark.parametrize("query, kind, message", [
    ("up{", "bad_data", "unexpected end of input inside braces"),
    ("a / on() b", "execution", "found duplicate series for the match group"),
])
def test_a_bad_query_is_a_value_error_with_prometheus_message(prom, query, kind, message) -> None:
    with pytest.raises(ValueError) as err:
        prom.query(query)
    text = str(err.value)
    assert f"({kind})" in text and message in text and f"query: {query}" in text
    assert not is_transient(err.value)  # retrying a bad query fails the same way


@pytest.mark.parametrize("query, shown", [("starting", "HTTP 503"), ("broken", "tsdb closed"), ("proxy", "HTTP 502")])
def test_5xx_is_service_unavailable_and_transient(prom, query, shown) -> None:
    with pytest.raises(ServiceUnavailableError) as err:
        prom.query(query)
    assert shown in str(err.value) and is_transient(err.value)


def test_connection_refused_is_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailableError, match="not reachable") as err:
        PrometheusClient(f"http://127.0.0.1:{closed_port()}", timeout_s=2).query("up")
    assert is_transient(err.value)


def test_a_timeout_is_service_unavailable(prom) -> None:
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match="ReadTimeout"):
        prom.query("slow")
    assert time.monotonic() - started < 0.9  # gave up at timeout_s, did not wait for the answer


def test_something_that_is_not_prometheus_is_a_clear_error(server_url) -> None:
    client = PrometheusClient(server_url + "/not-prometheus", timeout_s=2)
    with pytest.raises(DetectOpsError, match="did not answer as Prometheus' HTTP API does") as err:
        client.query("up")
    assert not isinstance(err.value, (ServiceUnavailableError, ValueError)) and "HTTP 404" in str(err.value)


def test_the_url_defaults_to_the_environment(monkeypatch, server_url) -> None:
    monkeypatch.setenv("DETECTOPS_PROMETHEUS_URL", server_url + "/")
    assert PrometheusClient().url == server_url
    monkeypatch.delenv("DETECTOPS_PROMETHEUS_URL")
    assert PrometheusClient().url == "http://127.0.0.1:9090"
