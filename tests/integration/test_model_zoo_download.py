"""Model Zoo archives, downloaded for real from an HTTP server on 127.0.0.1.

The server stands in for download.tensorflow.org (``DETECTOPS_ZOO_BASE_URL``): same archive
layout (``<name>/saved_model/``, ``<name>/pipeline.config``), same client code path.
"""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from detectops.errors import ContractError, ModelSourceError
from detectops.models import Detector, fetch_model
from tests.support.tiny_detector import make_tiny_detector

NAME = "tiny_detector_coco17"


def _tar(path: Path, members: dict[str, Path | bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for arcname, content in members.items():
            if isinstance(content, Path):
                tar.add(content, arcname=arcname)
            else:
                info = tarfile.TarInfo(arcname)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A static file server on 127.0.0.1 with the archives; yields (base_url, request log)."""
    root = tmp_path_factory.mktemp("www")
    build = tmp_path_factory.mktemp("build")
    with_labels = make_tiny_detector(build / "a" / "saved_model", classes=[1, 47])
    without_labels = make_tiny_detector(build / "b" / "saved_model", classes=[1, 47], label_map=None)
    _tar(root / f"{NAME}.tar.gz", {NAME: with_labels.parent, f"{NAME}/pipeline.config": b"model {}\n"})
    _tar(root / "bare.tar.gz", {"bare": without_labels.parent})
    _tar(root / "nomodel.tar.gz", {"nomodel/README": b"no SavedModel here\n"})
    _tar(root / "evil.tar.gz", {"evil/../../escaped.txt": b"gotcha\n"})
    good = (root / f"{NAME}.tar.gz").read_bytes()
    (root / "corrupt.tar.gz").write_bytes(good[: len(good) // 2])

    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):  # keep pytest output clean, but remember the hits
            requests.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests, hashlib.sha256(good).hexdigest()
    httpd.shutdown()
    httpd.server_close()


def _entries(cache: Path) -> list[str]:
    """Everything in the zoo cache, hidden temp dirs included."""
    zoo = cache / "zoo"
    return sorted(p.name for p in zoo.iterdir()) if zoo.exists() else []


def test_archive_url_with_checksum_is_downloaded_verified_and_cached(server, tmp_path):
    base, requests, sha = server
    url = f"{base}/{NAME}.tar.gz"
    ref = fetch_model(f"{url}#sha256={sha}", cache_dir=tmp_path)

    assert Path(ref.path) == tmp_path / "zoo" / f"{NAME}-{sha[:12]}" / "saved_model"
    assert (ref.source, ref.name, ref.version) == (url, NAME, sha[:12])
    assert (Path(ref.path).parent / "pipeline.config").is_file()  # the rest of the export is kept
    assert _entries(tmp_path) == [f"{NAME}-{sha[:12]}"]

    det = Detector.load(ref.path)
    assert det.predict(np.zeros((20, 30, 3), np.uint8)).classes.tolist() == [1, 47]

    hits = len(requests)
    again = fetch_model(url, cache_dir=tmp_path)  # same URL, no checksum: served from the cache
    assert again == ref and len(requests) == hits


def test_zoo_name_uses_the_base_url_and_adds_the_coco_label_map(server, tmp_path, monkeypatch):
    base, _, _ = server
    monkeypatch.setenv("DETECTOPS_ZOO_BASE_URL", base)
    ref = fetch_model("zoo:bare", cache_dir=tmp_path)
    det = Detector.load(ref.path)
    assert len(det.label_map) == 80 and det.label_map[47] == "cup"


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    base, _, _ = server
    with pytest.raises(ModelSourceError, match="checksum mismatch"):
        fetch_model(f"{base}/{NAME}.tar.gz", cache_dir=tmp_path, sha256="0" * 64)
    assert _entries(tmp_path) == []


@pytest.mark.parametrize(("archive", "error", "message"), [
    ("corrupt.tar.gz", ModelSourceError, "not a readable tar.gz"),
    ("evil.tar.gz", ModelSourceError, "unsafe member"),
    ("nomodel.tar.gz", ContractError, "no SavedModel"),
])
def test_bad_archives_leave_nothing(server, tmp_path, archive, error, message):
    base, _, _ = server
    with pytest.raises(error, match=message):
        fetch_model(f"{base}/{archive}", cache_dir=tmp_path)
    assert _entries(tmp_path) == []
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_unreachable_url_says_what_to_do(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ModelSourceError, match="could not download.*DETECTOPS_ZOO_BASE_URL"):
        fetch_model(f"http://127.0.0.1:{port}/x.tar.gz", cache_dir=tmp_path)
    assert _entries(tmp_path) == []
