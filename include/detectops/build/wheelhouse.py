"""A local wheelhouse for the image's runtime dependencies, served to the build over loopback.

Why: the image's venv needs ~340 MB of wheels (TensorFlow alone is most of it). Downloading them
inside every cold `docker build` is slow and fails without an index. Instead the host downloads
them once into ``cache_dir()/wheelhouse/<hash of the pins>/`` (atomically: temp dir, then rename)
and, while a build runs, serves that directory on 127.0.0.1; the Dockerfile's builder stage
(``--network host``) installs with ``--no-index --find-links <url>`` and falls back to the index.

It is also what makes the build work behind a TLS-intercepting proxy: the host's pip trusts
the proxy's CA (PIP_CERT), a build container does not, so pip inside the build cannot reach the
index there (seen on the project's machines: CERTIFICATE_VERIFY_FAILED) while the loopback
wheelhouse needs no TLS at all.

The URL is a build argument, and a build argument's value is part of the cache key of the ``RUN``
that uses it, so the server prefers one fixed port: a warm rebuild then hits the layer cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from detectops import settings
from detectops.errors import BuildError
from detectops.fsutil import staged_dir

log_ = logging.getLogger(__name__)

RUNTIME_REQUIREMENTS = settings.INCLUDE_DIR / "docker" / "requirements-runtime.txt"
#: The test target's tools (pytest), added to the same wheelhouse when a test image is built.
TEST_REQUIREMENTS = settings.INCLUDE_DIR / "docker" / "requirements-test-image.txt"
DEFAULT_PORT = 38517  # fixed so the build arg (and the pip layer's cache key) stays the same


def requirement_lines(requirements: Path = RUNTIME_REQUIREMENTS) -> list[str]:
    """The pins in a requirements file, without comments or blank lines."""
    lines = []
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def wheelhouse_key(requirements: Path = RUNTIME_REQUIREMENTS) -> str:
    """Cache key: the pins (not the comments) and the target interpreter."""
    text = "\n".join(sorted(requirement_lines(requirements))) + "\ncp311-manylinux-x86_64\n"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _platform_args() -> list[str]:
    """pip download flags for the image's platform when the host is a different one."""
    if sys.version_info[:2] == (3, 11) and sys.platform == "linux" and platform.machine() == "x86_64":
        return []
    return ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
            "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]


def _download(requirements: Path, dest: Path, log: Callable[[str], None]) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", *_platform_args(), "-r", str(requirements), "-d", str(dest)]
    log(f"wheelhouse: downloading the wheels of {requirements.name} into {dest}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(
            f"could not download the image's wheels ({' '.join(cmd)}):\n{tail}\n"
            "Check that the package index is reachable (pip config), or build without the "
            "wheelhouse (use_wheelhouse=False) so pip inside the build uses the index."
        )


def ensure_wheelhouse(
    requirements: Path = RUNTIME_REQUIREMENTS,
    *,
    extra: tuple[Path, ...] = (),
    cache: Path | None = None,
    log: Callable[[str], None] = log_.info,
) -> Path:
    """Return a directory holding a wheel for every pin in ``requirements``; download if needed.

    ``extra`` requirement files (the test tools) are added to the same directory once each (a
    marker named by their pins records it), so the runtime's wheelhouse key does not change.
    """
    root = (cache or settings.cache_dir()) / "wheelhouse"
    final = root / wheelhouse_key(requirements)
    if not final.is_dir():
        # Keyed by the pins: if another process finishes first, theirs is as good as ours.
        with staged_dir(final, replace=False) as tmp:
            _download(requirements, tmp, log)
    for more in extra:
        marker = final / f".added-{wheelhouse_key(more)}"
        if not marker.exists():
            _download(more, final, log)
            marker.touch()
    return final


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log_.debug("wheelhouse: " + format, *args)


@contextmanager
def serve_wheelhouse(directory: Path, port: int | None = None) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 for the duration of the block; yield its URL.

    Tries ``DETECTOPS_WHEELHOUSE_PORT`` (default 38517) first so the URL, and the cache key of
    the pip layer, is stable; falls back to a free port (a cache miss, still correct).
    """
    handler = partial(_QuietHandler, directory=str(directory))
    preferred = port if port is not None else int(os.environ.get("DETECTOPS_WHEELHOUSE_PORT", DEFAULT_PORT))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", preferred), handler)
    except OSError:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


#: The image's direct runtime dependencies; requirements-runtime.txt pins their whole closure.
#: mlflow-skinny (the client, without the server) and pycocotools are for training pods: they log
#: to MLflow, read datasets from its artifact store, and compute validation AP.
RUNTIME_ROOTS = ("tensorflow-cpu", "numpy", "pillow", "fastapi", "uvicorn", "python-multipart",
                 "prometheus-client", "kubernetes", "requests", "mlflow-skinny", "pycocotools")


def runtime_pins(roots: tuple[str, ...] = RUNTIME_ROOTS) -> str:
    """Pins (``name==version``) for ``roots`` and everything they need, as installed in this venv.

    Regenerates the body of requirements-runtime.txt, so the image runs exactly the versions the
    tests ran with.
    """
    import re
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    seen: dict[str, str] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if norm(name) in seen:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError as exc:
            raise BuildError(f"{name} is not installed in this venv; install the project first") from exc
        seen[norm(name)] = dist.version
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    return "".join(f"{name}=={version}\n" for name, version in sorted(seen.items()))
