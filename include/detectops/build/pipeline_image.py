"""The pipeline image: the code and its runtime without a model (Dockerfile target ``pipeline``).

Training and deployer pods run it. Its tag is a hash of the code it holds (``code-<12 hex>``),
so the same code is built once and found again by asking the registry, and a tag can never
name two different builds: different code gives a different tag. Level 2 tags commit builds
by their full SHA instead (it builds from a clone, not from the running checkout).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from detectops import settings
from detectops.build.distribution import manifest_digest
from detectops.build.image import build_image, docker_client, push_image
from detectops.build.records import ImageRef

log_ = logging.getLogger(__name__)

PIPELINE_REPOSITORY = "detectops/pipeline"
_SKIP_DIRS = {"__pycache__", ".pytest_cache"}
_SKIP_SUFFIXES = (".pyc", ".egg-info")


def code_key(include_dir: Path | None = None) -> str:
    """12 hex digits of a hash over every file the image copies (paths and bytes), sorted."""
    include_dir = Path(include_dir or settings.INCLUDE_DIR)
    digest = hashlib.sha256()
    for path in sorted(include_dir.rglob("*")):
        rel = path.relative_to(include_dir)
        if not path.is_file() or _SKIP_DIRS & set(rel.parts) or path.name.endswith(_SKIP_SUFFIXES):
            continue
        digest.update(str(rel).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def ensure_pipeline_image(
    *,
    registry: str,
    repository: str = PIPELINE_REPOSITORY,
    base_image: str | None = None,
    username: str | None = None,
    password: str | None = None,
    include_dir: Path | None = None,
    docker_host: str | None = None,
    log: Callable[[str], None] = log_.info,
) -> ImageRef:
    """The pipeline image of this checkout's code in ``registry``: found there, or built and pushed."""
    tag = f"code-{code_key(include_dir)}"
    auth = (username, password) if username else None
    digest = manifest_digest(registry, repository, tag, auth=auth)
    ref = f"{registry.rstrip('/')}/{repository}"
    if digest:
        log(f"pipeline image {ref}:{tag} is already in the registry ({digest}): reusing it")
        return ImageRef(repository=ref, tag=tag, digest=digest)
    client = docker_client(base_url=docker_host)
    build_image(None, [f"{ref}:{tag}"], target="pipeline", base_image=base_image,
                build_args={"GIT_COMMIT": settings.code_version()}, include_dir=include_dir,
                log=log, client=client)
    return push_image(f"{ref}:{tag}", username=username, password=password, log=log, client=client)
