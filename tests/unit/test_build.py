"""Unit tests of detectops.build: tags, the build-log follower, the context, the wheelhouse, push checks.

No Docker daemon here (tests/integration/test_image.py builds for real); the daemon's and the
registry's answers are replayed in the shapes the Engine API and distribution really send.
"""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from detectops.build import ImageRef, assemble_context, image_tags, push_image, split_tag
from detectops.build import distribution, image, wheelhouse
from detectops.errors import BuildError
from detectops.settings import INCLUDE_DIR

DIGEST = "sha256:" + "ab" * 32


def test_one_tag_carries_model_name_version_and_commit() -> None:
    tags = image_tags("127.0.0.1:5000", 7, "0123456789abcdef0123")
    # No bare :<commit12> tag: each model version built at that commit would move it.
    assert tags == ["127.0.0.1:5000/detectops/detector:v7-0123456789ab"]
    assert image_tags("r:5000", 1, "ab" * 20, model_name="shapes/v1") == ["r:5000/detectops/detector:shapes_v1-v1-" + "ab" * 6]
    dirty = image_tags("reg:5000", "1", "0123456789abcdef-dirty")
    assert dirty[0].endswith(":v1-0123456789ab-dirty")
    assert image_tags("r", "a/b c", "ff" * 20)[0].endswith(":va_b_c-" + "ff" * 6)


def test_split_tag_handles_registry_ports() -> None:
    assert split_tag("127.0.0.1:5000/a/b:v1") == ("127.0.0.1:5000/a/b", "v1")
    assert split_tag("127.0.0.1:5000/a/b") == ("127.0.0.1:5000/a/b", "latest")


def test_build_log_follows_steps_and_reports_the_failing_one() -> None:
    lines: list[str] = []
    tracker = image._BuildLog(lines.append)
    tracker.feed({"stream": "Step 1/3 : FROM base\n"})
    tracker.feed({"stream": " ---> abc\n"})
    tracker.feed({"stream": "Step 2/3 : RUN pip install -r req.txt\n"})
    tracker.feed({"stream": "\x1b[91mERROR: No matching distribution found for nope==1\n\x1b[0m"})
    assert "ERROR: No matching distribution found for nope==1" in lines  # colour codes stripped
    with pytest.raises(BuildError) as err:
        tracker.feed({"error": "The command '/bin/sh -c pip install' returned a non-zero code: 1",
                      "errorDetail": {"message": "The command '/bin/sh -c pip install' returned a non-zero code: 1"}})
    msg = str(err.value)
    assert "Step 2/3 : RUN pip install -r req.txt" in msg
    assert "No matching distribution found" in msg


def test_build_log_reads_the_image_id() -> None:
    tracker = image._BuildLog(lambda _: None)
    tracker.feed({"aux": {"ID": "sha256:" + "1" * 64}})
    tracker.feed({"stream": "Successfully built 111111111111\n"})
    assert tracker.image_id == "sha256:" + "1" * 64


def _fake_model(root: Path) -> Path:
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"pb")
    (root / "variables" / "variables.index").write_bytes(b"x")
    return root


def test_context_has_the_repository_layout_and_nothing_else(tmp_path: Path) -> None:
    model = _fake_model(tmp_path / "model")
    (model / "__pycache__").mkdir()
    ctx = assemble_context(model, tmp_path / "ctx")
    assert (ctx / "include" / "docker" / "Dockerfile").is_file()
    assert (ctx / "include" / "docker" / "requirements-runtime.txt").is_file()
    assert (ctx / "include" / "detectops" / "settings.py").is_file()
    assert (ctx / "include" / "k8s" / "serving" / "deployment.yaml").is_file()
    assert (ctx / "model" / "saved_model.pb").read_bytes() == b"pb"
    assert not list(ctx.rglob("__pycache__")) and not list(ctx.rglob("*.egg-info"))
    assert {p.name for p in ctx.iterdir()} <= {"include", "model", "pyproject.toml", ".dockerignore", "tests"}
    assert not list((ctx / "tests").iterdir())  # the test suite only goes into a test image's context
    mode = (ctx / "model" / "saved_model.pb").stat().st_mode
    assert mode & 0o004, "the image's non-root user must be able to read the model"


def test_the_test_images_context_carries_the_tests(tmp_path: Path) -> None:
    ctx = assemble_context(None, tmp_path / "ctx", with_tests=True)
    assert (ctx / "tests" / "conftest.py").is_file() and (ctx / "tests" / "unit").is_dir()
    assert not (ctx / "model").exists() and not list(ctx.rglob("__pycache__"))


def test_context_rejects_a_directory_that_is_not_a_saved_model(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not a TensorFlow SavedModel"):
        assemble_context(tmp_path, tmp_path / "ctx")


def test_runtime_pins_match_this_venv_and_leave_out_the_platform() -> None:
    pins = wheelhouse.requirement_lines()
    assert pins == wheelhouse.runtime_pins().split(), "regenerate include/docker/requirements-runtime.txt"
    names = {p.split("==")[0] for p in pins}
    assert {"tensorflow-cpu", "fastapi", "uvicorn", "kubernetes", "pillow", "prometheus-client"} <= names
    # The MLflow client (mlflow-skinny) is in: training pods log to MLflow. The server and the platform are not.
    assert not names & {"apache-airflow", "mlflow", "great-expectations"}
    assert all("==" in p for p in pins)


def test_wheelhouse_key_ignores_comments(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_text("# one\nnumpy==2.4.6\nfastapi==0.1\n")
    b.write_text("fastapi==0.1   # why\n\nnumpy==2.4.6\n")
    assert wheelhouse.wheelhouse_key(a) == wheelhouse.wheelhouse_key(b)
    b.write_text("numpy==2.4.7\nfastapi==0.1\n")
    assert wheelhouse.wheelhouse_key(a) != wheelhouse.wheelhouse_key(b)


def test_existing_wheelhouse_is_reused_without_downloading(tmp_path: Path, monkeypatch) -> None:
    req = tmp_path / "req.txt"
    req.write_text("numpy==2.4.6\n")
    ready = tmp_path / "wheelhouse" / wheelhouse.wheelhouse_key(req)
    ready.mkdir(parents=True)
    monkeypatch.setattr(wheelhouse.subprocess, "run", lambda *a, **k: pytest.fail("downloaded again"))
    assert wheelhouse.ensure_wheelhouse(req, cache=tmp_path) == ready


def test_failed_download_leaves_no_partial_wheelhouse(tmp_path: Path, monkeypatch) -> None:
    req = tmp_path / "req.txt"
    req.write_text("numpy==2.4.6\n")

    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement"

    monkeypatch.setattr(wheelhouse.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(BuildError, match="could not download"):
        wheelhouse.ensure_wheelhouse(req, cache=tmp_path)
    assert list((tmp_path / "wheelhouse").iterdir()) == []


def test_wheelhouse_is_served_on_loopback(tmp_path: Path) -> None:
    (tmp_path / "pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
    with wheelhouse.serve_wheelhouse(tmp_path, port=0) as url:
        assert url.startswith("http://127.0.0.1:")
        index = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "pkg-1.0-py3-none-any.whl" in index  # pip --find-links reads the links in this page
        assert urllib.request.urlopen(url + "pkg-1.0-py3-none-any.whl", timeout=5).read() == b"wheel"


def test_dockerfile_layers_are_ordered_for_fast_rebuilds() -> None:
    text = (INCLUDE_DIR / "docker" / "Dockerfile").read_text()
    pipeline = text[text.index("AS pipeline"):text.index("AS detector")]
    detector = text[text.index("AS detector"):]
    # venv, then code (pipeline target); the model goes on top (detector target)
    assert pipeline.index("COPY --from=builder /opt/venv") < pipeline.index("COPY include/ /opt/detectops/include/")
    assert "COPY ${MODEL_DIR}/" in detector and "COPY ${MODEL_DIR}/" not in pipeline
    # per-build values come after every file layer, or each commit would recopy the venv / model
    assert pipeline.index("ARG GIT_COMMIT") > pipeline.index("COPY include/ /opt/detectops/include/")
    assert detector.index("ARG GIT_COMMIT") > detector.index("COPY ${MODEL_DIR}/")
    assert "USER 10001" in detector and "HEALTHCHECK" in detector and "/healthz" in detector
    assert 'ENTRYPOINT ["detectops"]' in detector and 'CMD ["serve"]' in detector
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text and "procps" in text


# -- push: the digest must be what the registry serves ----------------------------------------------
class FakeApi:
    def __init__(self, chunks: list[dict]) -> None:
        self.chunks = chunks
        self.pushed: list[tuple] = []

    def push(self, repository, tag=None, stream=False, decode=False, auth_config=None):
        self.pushed.append((repository, tag, auth_config))
        return iter(self.chunks)


class FakeClient:
    def __init__(self, chunks: list[dict]) -> None:
        self.api = FakeApi(chunks)


PUSH_STREAM = [
    {"status": "The push refers to repository [127.0.0.1:5000/detectops/detector]"},
    {"status": "Pushing", "progressDetail": {"current": 1, "total": 2}, "progress": "[==>  ]", "id": "aa"},
    {"status": "Pushed", "progressDetail": {}, "id": "aa"},
    {"status": f"v1: digest: {DIGEST} size: 1234"},
    {"progressDetail": {}, "aux": {"Tag": "v1", "Digest": DIGEST, "Size": 1234}},
]


def test_push_returns_the_verified_digest(monkeypatch) -> None:
    seen = {}

    def served(registry, repository, reference, auth=None):
        seen.update(registry=registry, repository=repository, reference=reference)
        return DIGEST

    monkeypatch.setattr(image, "manifest_digest", served)
    client = FakeClient(PUSH_STREAM)
    logged: list[str] = []
    ref = push_image("127.0.0.1:5000/detectops/detector:v1", client=client, log=logged.append)
    assert ref == ImageRef("127.0.0.1:5000/detectops/detector", "v1", DIGEST)
    assert ref.pinned == f"127.0.0.1:5000/detectops/detector@{DIGEST}"
    assert seen == {"registry": "127.0.0.1:5000", "repository": "detectops/detector", "reference": "v1"}
    assert not any("[==>" in line for line in logged)  # progress bars are not logged


def test_push_fails_when_the_registry_serves_another_digest(monkeypatch) -> None:
    monkeypatch.setattr(image, "manifest_digest", lambda *a, **k: "sha256:" + "cd" * 32)
    with pytest.raises(BuildError, match="registry serves"):
        push_image("127.0.0.1:5000/detectops/detector:v1", client=FakeClient(PUSH_STREAM), log=lambda _: None)


def test_push_error_in_the_stream_is_a_build_error(monkeypatch) -> None:
    stream = [{"status": "Preparing", "id": "aa"}, {"error": "unauthorized: authentication required"}]
    with pytest.raises(BuildError, match="unauthorized"):
        push_image("127.0.0.1:5000/x:v1", client=FakeClient(stream), log=lambda _: None)


def test_push_needs_a_registry_host() -> None:
    with pytest.raises(BuildError, match="names no registry host"):
        push_image("detectops/detector:v1", client=FakeClient([]), log=lambda _: None)


# -- the registry's manifest API ------------------------------------------------------------------------
class _Registry(BaseHTTPRequestHandler):
    token_required = False

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # the token endpoint
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"token": "T0K"}')

    def do_HEAD(self) -> None:
        accept = self.headers.get("Accept", "")
        if self.token_required and self.headers.get("Authorization") != "Bearer T0K":
            self.send_response(401)
            host = self.headers["Host"]
            self.send_header("WWW-Authenticate",
                             f'Bearer realm="http://{host}/token",service="reg",scope="repository:a/b:pull"')
            self.end_headers()
            return
        if self.path == "/v2/a/b/manifests/v1" and "manifest.v2+json" in accept:
            self.send_response(200)
            self.send_header("Docker-Content-Digest", DIGEST)
        else:
            self.send_response(404)
        self.end_headers()


def _serve(handler):
    """Run ``handler`` on a loopback port for one test; yields the registry's ``host:port``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def registry():
    yield from _serve(_Registry)
    _Registry.token_required = False


def test_manifest_digest_reads_the_registry(registry: str) -> None:
    assert distribution.manifest_digest(registry, "a/b", "v1") == DIGEST
    assert distribution.manifest_digest(registry, "a/b", "missing") is None


def test_manifest_digest_follows_a_bearer_challenge(registry: str) -> None:
    _Registry.token_required = True
    assert distribution.manifest_digest(registry, "a/b", "v1") == DIGEST


def test_loopback_registries_use_http_others_https() -> None:
    assert distribution.registry_base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert distribution.registry_base_url("localhost:5000") == "http://localhost:5000"
    assert distribution.registry_base_url("registry.example.com") == "https://registry.example.com"


def test_image_ref_round_trips_and_deploys_by_digest() -> None:
    ref = ImageRef("r/x", "v1", DIGEST)
    assert ImageRef.from_dict(ref.to_dict()) == ref
    assert ref.image_by_digest == f"r/x@{DIGEST}"


# -- immutable tags: never pushed over, the same content reused -----------------------------------------
class _LabelledRegistry(BaseHTTPRequestHandler):
    """Serves one image, a/b:v1, whose config carries ``labels``."""

    labels: dict = {}

    def log_message(self, *args) -> None:
        pass

    def _send(self, body: bytes | None, headers: dict) -> None:
        self.send_response(200 if body is not None else 404)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and self.command == "GET":
            self.wfile.write(body)

    def do_GET(self) -> None:
        import json

        if self.path == "/v2/a/b/manifests/v1":
            body = json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:cfg"}}).encode()
            self._send(body, {"Docker-Content-Digest": DIGEST, "Content-Type": "application/json"})
        elif self.path == "/v2/a/b/blobs/sha256:cfg":
            self._send(json.dumps({"config": {"Labels": self.labels}}).encode(), {"Content-Type": "application/json"})
        else:
            self._send(None, {})

    do_HEAD = do_GET


@pytest.fixture
def labelled_registry():
    yield from _serve(_LabelledRegistry)


def test_a_free_tag_same_content_and_other_content(labelled_registry: str) -> None:
    from detectops.build.immutable import CONTENT_LABEL, existing_build
    from detectops.errors import ImageTagConflict

    _LabelledRegistry.labels = {CONTENT_LABEL: "k" * 64}
    assert existing_build(labelled_registry, "a/b", "v2", "k" * 64) is None  # free
    assert existing_build(labelled_registry, "a/b", "v1", "k" * 64) == DIGEST  # same content: reuse
    with pytest.raises(ImageTagConflict, match="already names another build.*never|not pushed over"):
        existing_build(labelled_registry, "a/b", "v1", "j" * 64)
    _LabelledRegistry.labels = {}  # an image pushed before content labels existed is not ours to replace
    with pytest.raises(ImageTagConflict, match="unknown"):
        existing_build(labelled_registry, "a/b", "v1", "k" * 64)


def test_content_key_ignores_build_time_but_not_model_code_or_base(tmp_path: Path) -> None:
    from detectops.build.immutable import content_key

    args = {"MODEL_VERSION": "1", "GIT_COMMIT": "abc"}
    key = content_key("m" * 64, base_image="base:1", build_args=args)
    assert key == content_key("m" * 64, base_image="base:1", build_args={**args, "CREATED": "now", "WHEELHOUSE_URL": "u"})
    assert key != content_key("n" * 64, base_image="base:1", build_args=args)
    assert key != content_key("m" * 64, base_image="base:2", build_args=args)
    assert key != content_key("m" * 64, base_image="base:1", build_args={**args, "DATASET_SHA256": "d"})
    code = tmp_path / "include"
    code.mkdir()
    (code / "x.py").write_text("a = 1\n")
    before = content_key("m" * 64, base_image=None, build_args=args, include_dir=code)
    (code / "x.py").write_text("a = 2\n")
    assert content_key("m" * 64, base_image=None, build_args=args, include_dir=code) != before


def _fail_if_built(*args, **kwargs):
    pytest.fail("built or contacted the Docker engine although the registry already decided")


def test_build_and_push_reuses_the_same_content_without_building(tmp_path: Path, monkeypatch) -> None:
    import detectops.build as build

    seen = {}

    def existing(registry, repository, tag, key, auth=None):
        seen.update(registry=registry, repository=repository, tag=tag)
        return DIGEST

    monkeypatch.setattr(build, "existing_build", existing)
    monkeypatch.setattr(build, "docker_client", _fail_if_built)
    ref = build.build_and_push(_fake_model(tmp_path / "m"), registry="127.0.0.1:5000", model_version=3,
                               model_name="detector", commit="ab" * 20, log=lambda _: None)
    assert ref == ImageRef("127.0.0.1:5000/detectops/detector", "detector-v3-" + "ab" * 6, DIGEST)
    assert seen == {"registry": "127.0.0.1:5000", "repository": "detectops/detector", "tag": "detector-v3-" + "ab" * 6}


def test_build_and_push_refuses_a_tag_that_names_another_build(tmp_path: Path, monkeypatch) -> None:
    import detectops.build as build
    from detectops.errors import ImageTagConflict

    def conflict(*args, **kwargs):
        raise ImageTagConflict("127.0.0.1:5000/detectops/detector:v3-abab already names another build")

    monkeypatch.setattr(build, "existing_build", conflict)
    monkeypatch.setattr(build, "docker_client", _fail_if_built)
    with pytest.raises(ImageTagConflict):
        build.build_and_push(_fake_model(tmp_path / "m"), registry="127.0.0.1:5000", model_version=3,
                             commit="ab" * 20, log=lambda _: None)


def test_build_and_push_labels_the_content_and_checks_again_before_pushing(tmp_path: Path, monkeypatch) -> None:
    import detectops.build as build

    calls: list[str] = []
    answers = iter([None, DIGEST])  # free before the build; pushed by a concurrent run meanwhile

    def existing(*args, **kwargs):
        calls.append("check")
        return next(answers)

    def built(model_dir, tags, **kwargs):
        calls.append("build")
        assert kwargs["labels"][build.CONTENT_LABEL] and len(tags) == 1
        return "sha256:" + "1" * 64

    monkeypatch.setattr(build, "existing_build", existing)
    monkeypatch.setattr(build, "docker_client", lambda base_url=None: calls.append(f"engine {base_url}"))
    monkeypatch.setattr(build, "build_image", built)
    monkeypatch.setattr(build, "push_image", lambda *a, **k: pytest.fail("pushed over a tag"))
    ref = build.build_and_push(_fake_model(tmp_path / "m"), registry="127.0.0.1:5000", model_version=3,
                               commit="ab" * 20, docker_host="unix:///x.sock", log=lambda _: None)
    assert calls == ["check", "engine unix:///x.sock", "build", "check"] and ref.digest == DIGEST


@pytest.mark.slow
@pytest.mark.platform
def test_image_is_recorded_on_the_mlflow_model_version(tmp_path: Path) -> None:
    """Real MLflow client on a local SQLite store: the tags land on the model version."""
    import mlflow

    from detectops.registry import record_image

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("detector")
    mv = client.create_model_version("detector", source=str(tmp_path / "model"))
    ref = ImageRef("127.0.0.1:5000/detectops/detector", "v1-0123456789ab", DIGEST)
    record_image("detector", mv.version, ref, tracking_uri=uri)
    record_image("detector", mv.version, ref, tracking_uri=uri)  # idempotent
    tags = client.get_model_version("detector", mv.version).tags
    assert tags["image_digest"] == DIGEST
    assert tags["image_repository"] == "127.0.0.1:5000/detectops/detector"
    assert tags["image_tag"] == "v1-0123456789ab"
    assert tags["image"] == f"127.0.0.1:5000/detectops/detector@{DIGEST}"
