"""Build, tag and push the DetectOps image through the Docker Engine API (the ``docker`` SDK).

Every line the daemon prints is handed to ``log`` (in Airflow: the task log), so a failing
build is diagnosed from the task log alone; a failure raises ``BuildError`` naming the
Dockerfile step that failed and the last lines before it.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from detectops import settings
from detectops.build.context import assemble_context
from detectops.build.distribution import manifest_digest
from detectops.build.records import ImageRef
from detectops.build.wheelhouse import TEST_REQUIREMENTS, ensure_wheelhouse, serve_wheelhouse
from detectops.errors import BuildError, ServiceUnavailableError

log_ = logging.getLogger(__name__)

DEFAULT_REPOSITORY = "detectops/detector"
DOCKERFILE = "include/docker/Dockerfile"
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_STEP = re.compile(r"^Step \d+/\d+ : ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the daemon colours a RUN's stderr

Log = Callable[[str], None]


def docker_client(timeout: int = 900, base_url: str | None = None):
    """A client for the daemon at ``base_url`` (a task passes its connection's), else ``DOCKER_HOST``
    or the default socket; checked with a ping."""
    import docker

    try:
        client = docker.DockerClient(base_url=base_url, timeout=timeout) if base_url else docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # docker raises DockerException, requests' errors, FileNotFoundError
        raise ServiceUnavailableError(
            f"cannot reach the Docker daemon at {base_url or os.environ.get('DOCKER_HOST', 'the default socket')} "
            f"({exc}). Start it (scripts/infra/up.sh here) and export DOCKER_HOST "
            "(`. .state/infra/env.sh`)."
        ) from exc
    return client


def commit_tag(commit: str | None = None) -> str:
    """12 hex digits of the code commit (``-dirty`` kept: such an image is not reproducible)."""
    commit = commit or settings.code_version()
    sha, _, rest = commit.partition("-")
    return _TAG_BAD.sub("_", sha[:12] + (f"-{rest}" if rest else ""))


def image_tags(registry: str, model_version: str | int, commit: str | None = None,
               repository: str = DEFAULT_REPOSITORY, model_name: str | None = None) -> list[str]:
    """``[<registry>/<repo>:[<model_name>-]v<model_version>-<commit12>]``: one tag, naming one build.

    No bare ``:<commit12>`` tag: every model version built at one commit would overwrite it.
    The model name keeps two registered models' version 1 apart in one repository.
    """
    c = commit_tag(commit)
    repo = f"{registry.rstrip('/')}/{repository}" if registry else repository
    version = _TAG_BAD.sub("_", str(model_version))
    prefix = f"{_TAG_BAD.sub('_', model_name)}-" if model_name else ""
    return [f"{repo}:{prefix}v{version}-{c}"[: len(repo) + 129]]


def split_tag(ref: str) -> tuple[str, str]:
    """``host:5000/a/b:tag`` -> (``host:5000/a/b``, ``tag``); no tag -> ``latest``."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


class _BuildLog:
    """Follows the daemon's stream: current step, recent lines, resulting image id."""

    def __init__(self, log: Log, keep: int = 40) -> None:
        self.log = log
        self.step = "(before the first step)"
        self.recent: collections.deque[str] = collections.deque(maxlen=keep)
        self.image_id: str | None = None

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            tail = "\n".join(self.recent)
            raise BuildError(
                f"image build failed at {self.step}:\n  {detail.strip()}\nlast build output:\n{tail}"
            )
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and aux.get("ID"):
            self.image_id = aux["ID"]
        text = chunk.get("stream") or chunk.get("status") or ""
        for line in _ANSI.sub("", text).splitlines():
            line = line.rstrip()
            if not line:
                continue
            if _STEP.match(line):
                self.step = line
            m = re.match(r"Successfully built ([0-9a-f]+)", line)
            if m and not self.image_id:
                self.image_id = m.group(1)
            self.recent.append(line)
            self.log(line)


def build_image(
    model_dir: str | Path | None,
    tags: Iterable[str],
    *,
    target: str | None = None,
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    base_image: str | None = None,
    use_wheelhouse: bool = True,
    nocache: bool = False,
    include_dir: Path | None = None,
    with_tests: bool = False,
    log: Log = log_.info,
    client=None,
) -> str:
    """Build the image with ``model_dir`` baked in, tag it with every tag in ``tags``; return its id.

    ``target`` picks the Dockerfile stage: ``detector`` (the default, the last stage) or
    ``pipeline`` (the code without a model; ``model_dir`` is then None).

    ``base_image`` defaults to ``DETECTOPS_BASE_IMAGE`` or the Dockerfile's official Python image.
    ``build_args`` may set MODEL_VERSION, DATASET_SHA256, GIT_COMMIT (they become OCI labels).
    ``include_dir`` replaces the checkout's ``include/`` (the library and the Dockerfile).
    ``with_tests`` adds the checkout's ``tests/`` to the context (the ``test`` target).
    """
    tags = list(tags)
    if not tags:
        raise BuildError("build_image needs at least one tag (see detectops.build.image_tags).")
    client = client or docker_client()
    args = {
        "GIT_COMMIT": settings.code_version(),
        "CREATED": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        **(build_args or {}),
    }
    base_image = base_image or os.environ.get("DETECTOPS_BASE_IMAGE")
    if base_image:
        args["BASE_IMAGE"] = base_image
    tracker = _BuildLog(log)
    with tempfile.TemporaryDirectory(prefix="detectops-build-") as tmp:
        ctx = assemble_context(model_dir, Path(tmp) / "context", include_dir=include_dir, with_tests=with_tests)
        # The test tools too, whatever the target: the classic builder runs the test-tools stage
        # for later targets as well (it builds every stage before the target).
        wheel_dir = ensure_wheelhouse(extra=(TEST_REQUIREMENTS,), log=log) if use_wheelhouse else None
        with _maybe_serve(wheel_dir) as url:
            if url:
                args["WHEELHOUSE_URL"] = url
            log(f"building {tags[0]} from {ctx} (base {args.get('BASE_IMAGE', 'the Dockerfile default')})")
            try:
                stream = client.api.build(
                    path=str(ctx), dockerfile=DOCKERFILE, tag=tags[0], buildargs=args,
                    labels=dict(labels or {}), decode=True, network_mode="host",
                    rm=True, forcerm=True, pull=False, nocache=nocache,
                    **({"target": target} if target else {}),
                )
                for chunk in stream:
                    tracker.feed(chunk)
            except BuildError:
                raise
            except Exception as exc:
                import docker.errors

                if isinstance(exc, docker.errors.APIError):  # refused before the stream started
                    raise BuildError(f"the Docker daemon rejected the build of {tags[0]}: {exc}") from exc
                raise ServiceUnavailableError(
                    f"lost the connection to the Docker daemon while building {tags[0]} at {tracker.step} "
                    f"({exc}). Was the daemon restarted? Check it (`docker info`) and build again; "
                    "finished layers are cached."
                ) from exc
    if not tracker.image_id:
        raise BuildError(
            f"the build of {tags[0]} ended without an image id; last output:\n" + "\n".join(tracker.recent)
        )
    for ref in tags[1:]:
        repo, tag = split_tag(ref)
        client.api.tag(tracker.image_id, repo, tag)
    log(f"built {tracker.image_id} tagged {', '.join(tags)}")
    return tracker.image_id


class _NullCtx:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _maybe_serve(directory: Path | None):
    return serve_wheelhouse(directory) if directory else _NullCtx()


def push_image(
    ref: str,
    *,
    username: str | None = None,
    password: str | None = None,
    log: Log = log_.info,
    client=None,
) -> ImageRef:
    """Push ``registry/repo:tag``; return its ``ImageRef`` with the digest the registry serves.

    The digest comes from the daemon's push stream and is checked against the registry's
    manifest API (``HEAD /v2/<name>/manifests/<tag>``): a mismatch is an error.
    """
    client = client or docker_client()
    repository, tag = split_tag(ref)
    registry, _, name = repository.partition("/")
    if "." not in registry and ":" not in registry and registry != "localhost":
        raise BuildError(f"{ref} names no registry host: tag it as <host:port>/{repository}:{tag}.")
    auth = {"username": username, "password": password} if username else None
    digest: str | None = None
    last: collections.deque[str] = collections.deque(maxlen=20)
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
            if "error" in chunk:
                raise BuildError(
                    f"pushing {ref} failed: {chunk['error'].strip()}\n"
                    "Check that the registry is running and the credentials are right.\n" + "\n".join(last)
                )
            aux = chunk.get("aux")
            if isinstance(aux, Mapping) and aux.get("Digest"):
                digest = aux["Digest"]
            status = chunk.get("status", "")
            m = re.search(r"digest: (sha256:[0-9a-f]{64})", status)
            if m:
                digest = digest or m.group(1)
            if status and not chunk.get("progress"):  # skip the byte-count progress bars
                line = f"{chunk.get('id', '')} {status}".strip()
                if line:
                    last.append(line)
                    log(line)
    except BuildError:
        raise
    except Exception as exc:
        raise ServiceUnavailableError(f"pushing {ref} failed: {exc}") from exc
    if not digest:
        raise BuildError(f"the push of {ref} reported no digest; last output:\n" + "\n".join(last))
    served = manifest_digest(registry, name, tag, auth=(username, password) if username else None)
    if served != digest:
        raise BuildError(
            f"the registry serves {served} for {ref} but the push reported {digest}: another push "
            "raced this one, or the registry is misbehaving. Push again."
        )
    log(f"pushed {ref} as {digest} (verified against the registry)")
    return ImageRef(repository=repository, tag=tag, digest=digest)


def image_labels(ref: str, client=None) -> dict[str, str]:
    """The labels of a local image (for checks and tests)."""
    client = client or docker_client()
    return dict(client.api.inspect_image(ref)["Config"].get("Labels") or {})
