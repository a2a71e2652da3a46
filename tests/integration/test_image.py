"""The DetectOps image, built and pushed for real (Docker Engine API, local registry).

Builds include/docker/Dockerfile with the tiny test detector baked in, pushes it to the
registry from ``scripts/infra/up.sh``, reads the digest back from the registry's manifest API,
then runs the container the way the cluster will (non-root, read-only root filesystem, /tmp
tmpfs) and sends it skimage's astronaut photo.

Needs the infrastructure: ``scripts/infra/up.sh`` (writes ``.state/infra/env.sh``).
The helpers here are shared with test_deploy.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from detectops import settings
from detectops.fsutil import staged_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ENV_FILE = Path(os.environ.get("DETECTOPS_INFRA_DIR") or settings.state_dir() / "infra") / "env.sh"
TEST_MODEL_VERSION = "1"


def infra_env() -> dict[str, str]:
    """Export the variables of ``.state/infra/env.sh`` into this process; skip (with how-to) without it."""
    if not ENV_FILE.is_file():
        pytest.skip(f"{ENV_FILE} is missing: start the local Docker engine, registry and cluster with "
                    "`scripts/infra/up.sh` (see docs), then rerun.")
    env = dict(re.findall(r'^export (\w+)="?([^"\n]*)"?$', ENV_FILE.read_text(), flags=re.M))
    os.environ.update(env)
    for key in ("DOCKER_HOST", "DETECTOPS_REGISTRY"):
        if not env.get(key):
            pytest.skip(f"{ENV_FILE} does not export {key}: rerun scripts/infra/up.sh")
    return env


def tiny_model_dir() -> Path:
    """The tiny detector in a fixed cache path, written once (same bytes -> Docker's layer cache hits)."""
    from tests.support.tiny_detector import make_tiny_detector

    final = settings.cache_dir() / "test-models" / "tiny-detector"
    if not (final / "saved_model.pb").is_file():
        with staged_dir(final, replace=True) as tmp:  # replaces an incomplete one, never leaves half
            make_tiny_detector(tmp)
    return final


def build_test_image(log=print):
    """Build + push the image with the tiny detector; return its ImageRef (cached layers make reruns fast)."""
    from detectops.build import build_and_push

    env = infra_env()
    return build_and_push(tiny_model_dir(), registry=env["DETECTOPS_REGISTRY"], model_version=TEST_MODEL_VERSION,
                          model_name="tiny", dataset_sha256="0" * 64, base_image=env.get("DETECTOPS_BASE_IMAGE"),
                          docker_host=env["DOCKER_HOST"], log=log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def astronaut_jpeg() -> bytes:
    import PIL.Image
    import skimage.data

    buf = io.BytesIO()
    PIL.Image.fromarray(skimage.data.astronaut()).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"astronaut.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def image_ref():
    lines: list[str] = []
    ref = build_test_image(log=lines.append)
    if not any(line.startswith("Step ") for line in lines):  # this content was pushed before: reused
        assert any("reusing it" in line for line in lines), "the build log must reach the caller"
    from detectops.build import docker_client

    docker_client().api.pull(ref.repository, tag=ref.digest)  # the tests below run it by digest
    return ref


def test_pushed_digest_is_what_the_registry_serves(image_ref) -> None:
    from detectops.build import manifest_digest

    registry, _, name = image_ref.repository.partition("/")
    assert image_ref.digest.startswith("sha256:")
    assert manifest_digest(registry, name, image_ref.tag) == image_ref.digest
    assert image_ref.tag.startswith(f"tiny-v{TEST_MODEL_VERSION}-")
    assert image_ref.image_by_digest == f"{image_ref.repository}@{image_ref.digest}"


def test_a_tag_is_never_pushed_over(image_ref, tmp_path) -> None:
    """The same content again reuses the pushed image; another model under the same tag is refused."""
    from detectops.errors import ImageTagConflict
    from tests.support.tiny_detector import make_tiny_detector

    lines: list[str] = []
    again = build_test_image(log=lines.append)
    assert again == image_ref and not any(line.startswith("Step ") for line in lines)  # no rebuild, no push

    from detectops.build import build_and_push

    env = infra_env()
    other = make_tiny_detector(tmp_path / "other", scores=(0.8, 0.5))
    with pytest.raises(ImageTagConflict, match="already names another build"):
        build_and_push(other, registry=env["DETECTOPS_REGISTRY"], model_version=TEST_MODEL_VERSION, model_name="tiny",
                       dataset_sha256="0" * 64, base_image=env.get("DETECTOPS_BASE_IMAGE"),
                       commit=image_ref.tag.removeprefix(f"tiny-v{TEST_MODEL_VERSION}-"), log=lambda _: None)


def test_image_labels_size_and_user(image_ref) -> None:
    from detectops.build import docker_client

    client = docker_client()
    info = client.api.inspect_image(image_ref.image_by_digest)
    labels = info["Config"]["Labels"]
    assert labels["io.detectops.model.version"] == TEST_MODEL_VERSION
    assert labels["io.detectops.dataset.sha256"] == "0" * 64
    assert labels["io.detectops.git.commit"] == settings.code_version()
    assert labels["org.opencontainers.image.revision"] == settings.code_version()
    assert info["Config"]["User"] == "10001:10001"
    assert info["Config"]["Entrypoint"] == ["detectops"] and info["Config"]["Cmd"] == ["serve"]
    assert info["Config"]["Healthcheck"]["Test"][0] == "CMD"
    assert info["Size"] < 1.5 * 1024**3, f"image is {info['Size'] / 1e9:.2f} GB, goal <= 1.5 GB"


def test_container_serves_the_baked_in_model(image_ref) -> None:
    """Run it like the pod does (read-only root, /tmp tmpfs, non-root) and send the astronaut."""
    from detectops.build import docker_client

    client = docker_client()
    port = free_port()
    container = client.containers.run(
        image_ref.image_by_digest, detach=True, read_only=True, tmpfs={"/tmp": "rw,size=64m"},
        ports={"8080/tcp": ("127.0.0.1", port)},
        name=f"detectops-it-{uuid.uuid4().hex[:8]}",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if urllib.request.urlopen(base + "/readyz", timeout=5).status == 200:
                    break
            except OSError:
                pass
            container.reload()
            assert container.status == "running", container.logs(tail=30).decode(errors="replace")
            assert time.monotonic() < deadline, "not ready in 180 s:\n" + container.logs(tail=30).decode()
            time.sleep(2)
        body, ctype = multipart(astronaut_jpeg())
        req = urllib.request.Request(base + "/detect", data=body, headers={"Content-Type": ctype})
        detect = json.loads(urllib.request.urlopen(req, timeout=60).read())
        assert "person" in [d["label"] for d in detect["detections"]]  # the tiny detector's fixed class 1
        assert detect["model"]["version"] == TEST_MODEL_VERSION
        # the image's HEALTHCHECK command works without curl, and the KPO sidecar tools exist
        check = client.api.inspect_image(image_ref.image_by_digest)["Config"]["Healthcheck"]["Test"][1:]
        assert container.exec_run(check).exit_code == 0
        assert container.exec_run(["pgrep", "-f", "detectops"]).exit_code == 0
        assert container.exec_run(["id", "-u"]).output.decode().strip() == "10001"
        assert container.exec_run(["touch", "/opt/x"]).exit_code != 0  # read-only root works for serving
    finally:
        container.remove(force=True)
