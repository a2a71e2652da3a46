"""The serving app does what its OpenAPI schema says: Schemathesis against a real server.

A uvicorn on 127.0.0.1 serves the tiny detector, as a new user would meet it. Schemathesis
reads ``/openapi.json`` and runs its examples, coverage (boundary values, missing and wrong
fields, undeclared HTTP methods) and fuzzing phases, in positive mode (what the schema
allows) and negative mode (what it forbids), with all its checks on every answer: no 5xx,
only documented status codes, content types, headers and bodies; schema-valid requests
accepted, invalid ones rejected; a 405 with ``Allow`` for an undeclared method.

The schema states two things JSON Schema cannot check, and this file teaches them to the
generator: a ``format: byte`` / ``binary`` value is an image, and a raw tensor's rows have one
width. Bounded and reproducible: a fixed number of examples, derandomized (the same cases on
every run). About 1,000 requests; ~45 s on two busy cores: ~15-20 s Schemathesis building
its coverage cases at collection, ~10 s the tiny model and the server, ~12 s the requests.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.specs.openapi.formats import unregister_string_format

from detectops.serve import ServeSettings, create_app
from tests.support.services import free_port, wait_http
from tests.support.tiny_detector import make_tiny_detector

pytestmark = pytest.mark.slow  # a real uvicorn and ~1,000 requests; no outside service

MAX_EXAMPLES = 30  # per operation and mode in the fuzzing phase; the examples and coverage phases add theirs
MAX_INSTANCES = 3
# What the server answers for invalid data: 413 (too many instances) is a rejection too,
# though not in Schemathesis' default list.
REJECTIONS = ["400", "404", "405", "413", "415", "422"]

# operation label -> (generation mode, status) -> count; read by the last test of this file
SEEN: dict[str, Counter] = {}
# what a case must get for the fuzzer to have reached an operation's own logic
REACHED = {"positive": range(200, 300), "negative": range(400, 500)}


def _encoded_image(size: tuple[int, int], rgb: tuple[int, int, int], fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, fmt)
    return buf.getvalue()


IMAGES = st.builds(_encoded_image, st.tuples(st.integers(1, 48), st.integers(1, 48)),
                   st.tuples(*[st.integers(0, 255)] * 3), st.sampled_from(["JPEG", "PNG", "BMP", "GIF", "WEBP"]))


CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none", "mode": "all"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
               "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
    "checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}},
    "request-timeout": 30,
    "cache": {"enabled": False},  # no .schemathesis/ of failed cases in the working tree
})


def _settings(tmp: Path) -> ServeSettings:
    return ServeSettings(model_dir=tmp / "tiny", max_instances=MAX_INSTANCES,
                         prediction_log=str(tmp / "predictions.jsonl"))


# Schemathesis builds its tests at collection: the image formats are registered before that,
# and unregistered after this module (``served``'s teardown).
schemathesis.openapi.format("byte", IMAGES.map(lambda data: base64.b64encode(data).decode()))
schemathesis.openapi.format("binary", IMAGES)

# The schema is read at collection (the app builds it without loading a model); the fixture
# checks that the live server serves this very schema. (Schemathesis 4.32's lazy loader,
# ``schemathesis.pytest.from_fixture``, fails under pytest 9.2: it sets ``node._nodeid``.)
SCHEMA = create_app(_settings(Path("unused"))).openapi()
schema = schemathesis.openapi.from_dict(SCHEMA, config=CONFIG)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    """The app under uvicorn on a free port; its base URL."""
    import uvicorn

    tmp = tmp_path_factory.mktemp("fuzz")
    make_tiny_detector(tmp / "tiny")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(_settings(tmp)), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="fuzzed-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_http(f"{base}/readyz", timeout=60), "the served app never became ready"
        assert httpx.get(f"{base}/openapi.json").json() == SCHEMA
        yield base
    finally:
        server.should_exit = True
        thread.join(30)
        unregister_string_format("byte")
        unregister_string_format("binary")


def _rectangular(value: Any) -> Any:
    """Trim each raw ``[H][W][3]`` tensor's rows to its narrowest (JSON Schema cannot ask for one width)."""
    if isinstance(value, dict):
        return {k: _rectangular(v) for k, v in value.items()}
    if not isinstance(value, list):
        return value
    is_tensor = value and all(isinstance(row, list) and row and all(
        isinstance(px, list) and px and not any(isinstance(v, list) for v in px) for px in row) for row in value)
    if is_tensor:
        width = min(len(row) for row in value)
        return [row[:width] for row in value]
    return [_rectangular(v) for v in value]


@pytest.mark.timeout(300)
@schema.parametrize()
def test_the_server_does_what_its_schema_says(case, served):
    mode = case.meta.generation.mode.value if case.meta else "explicit"
    if mode == "positive" and case.operation.path.endswith(":predict"):
        body = _rectangular(case.body)
        if body != case.body:  # leave other cases untouched: an edit makes Schemathesis re-classify them
            case.body = body
    response = case.call_and_validate(base_url=served)  # every check; a failure names its case and a curl line
    SEEN.setdefault(case.operation.label, Counter())[mode, response.status_code] += 1


def test_the_fuzzer_reached_each_operation_s_own_logic():
    """Every operation answered a schema-valid case with 2xx (no 404 or 400 wall hid its handler),
    and every POST refused an invalid one with a 4xx. Reads what the fuzzing test above saw."""
    total = sum(sum(counts.values()) for counts in SEEN.values())
    print(f"schemathesis: {total} cases over {len(SEEN)} operations:",
          {op: dict(counts) for op, counts in sorted(SEEN.items())})
    assert len(SEEN) == sum(len(methods) for methods in SCHEMA["paths"].values()), sorted(SEEN)
    for op, counts in SEEN.items():
        modes = ["positive", "negative"] if op.startswith("POST") else ["positive"]
        for mode in modes:
            assert any(m == mode and status in REACHED[mode] for m, status in counts), (op, mode, dict(counts))
