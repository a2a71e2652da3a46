"""The images of one commit, for level 2: fetch the commit, build its pipeline and test images.

    checked = checkout_commit("https://github.com/org/detectops.git", sha, work_dir / sha)
    images = build_commit_images(Path(checked["dir"]), sha, registry="127.0.0.1:5000")
    images["pipeline_image"]   # 127.0.0.1:5000/detectops/pipeline@sha256:...   (tag :<sha>)
    images["test_image"]       # 127.0.0.1:5000/detectops/pipeline-test@sha256:... (tag :<sha>)

Both come from the commit's own ``include/docker/Dockerfile`` and code (targets ``pipeline`` and
``test``), tagged with the full SHA. A tag names one build forever (``detectops.build.immutable``):
a retried task finds its build in the registry and pushes nothing; another content under the
tag is refused.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from detectops.build.image import build_image, docker_client, push_image
from detectops.build.immutable import CONTENT_LABEL, build_once, content_key
from detectops.build.pipeline_image import PIPELINE_REPOSITORY, code_key
from detectops.errors import BuildError, ServiceUnavailableError

log_ = logging.getLogger(__name__)

TEST_REPOSITORY = "detectops/pipeline-test"
_SHA = re.compile(r"^[0-9a-f]{40}$")
#: git's own words for "that commit is not there" (not a network fault).
_NOT_FOUND = ("not our ref", "couldn't find remote ref", "no such remote ref", "not a valid object",
              "reference is not a tree", "unknown revision", "did not match any", "bad object")


def _git(*args: str, cwd: Path, timeout: float = 600) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except subprocess.TimeoutExpired as exc:
        raise ServiceUnavailableError(f"git {args[0]} timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["git", *args], done.stdout, done.stderr)
    return done.stdout.strip()


def _head(dest: Path) -> str | None:
    try:
        return _git("rev-parse", "HEAD", cwd=dest) if (dest / ".git").exists() else None
    except subprocess.CalledProcessError:
        return None


def checkout_commit(repo_url: str, sha: str, dest: Path) -> dict[str, Any]:
    """A clean checkout of exactly ``sha`` from ``repo_url`` in ``dest`` (reused if it already is one).

    Fetches only that commit when the server allows it, else everything. An unknown commit is a
    ``BuildError`` (not retried); an unreachable server a ``ServiceUnavailableError`` (retried).
    """
    sha = sha.strip().lower()
    if not _SHA.match(sha):
        raise BuildError(f"commit {sha!r} is not a full 40-hex commit SHA: pass the SHA CI built (GITHUB_SHA), "
                         "not a branch or a short SHA")
    dest = Path(dest)
    if _head(dest) == sha and not _git("status", "--porcelain", cwd=dest):
        print(f"{dest} already holds {sha[:12]}, clean: reusing it")
    else:
        dest.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", cwd=dest)
        try:
            try:
                _git("fetch", "--quiet", "--depth", "1", repo_url, sha, cwd=dest)
            except subprocess.CalledProcessError:  # servers that refuse to serve a bare SHA
                _git("fetch", "--quiet", repo_url, "+refs/heads/*:refs/remotes/origin/*", cwd=dest)
            _git("checkout", "--quiet", "--force", "--detach", sha, cwd=dest)
            _git("clean", "-qfdx", cwd=dest)
        except subprocess.CalledProcessError as exc:
            message = (exc.stderr or "").strip()
            if any(marker in message.lower() for marker in _NOT_FOUND):
                raise BuildError(f"commit {sha} is not in {repo_url}: {message}. Push it first, or check the SHA "
                                 "and the repository URL") from exc
            raise ServiceUnavailableError(f"could not fetch {sha[:12]} from {repo_url}: {message}") from exc
    subject, author = _git("log", "-1", "--format=%s%n%an <%ae>", sha, cwd=dest).split("\n", 1)
    return {"sha": sha, "repo": repo_url, "dir": str(dest), "include_dir": str(dest / "include"),
            "subject": subject, "author": author}


def build_commit_images(
    checkout_dir: Path,
    sha: str,
    *,
    registry: str,
    base_image: str | None = None,
    username: str | None = None,
    password: str | None = None,
    docker_host: str | None = None,
    source_url: str = "",
    log: Callable[[str], None] = log_.info,
) -> dict[str, Any]:
    """Build and push the pipeline image and the test image of the checkout at ``sha``."""
    checkout_dir = Path(checkout_dir)
    include_dir = checkout_dir / "include"
    if not (include_dir / "docker" / "Dockerfile").is_file():
        raise BuildError(f"{checkout_dir} has no include/docker/Dockerfile: commit {sha[:12]} is not a DetectOps tree")
    client = docker_client(base_url=docker_host)
    started = time.monotonic()
    args = {"GIT_COMMIT": sha, "SOURCE_URL": source_url}
    refs = {}
    for target, repository, tests in (("pipeline", PIPELINE_REPOSITORY, ""), ("test", TEST_REPOSITORY, "tests")):
        tag = f"{registry.rstrip('/')}/{repository}:{sha}"
        # The tests stand where a model would in a detector image's key: the other content.
        extra = code_key(checkout_dir / tests) if tests else ""
        key = content_key(extra, base_image=base_image, build_args={**args, "TARGET": target}, include_dir=include_dir)

        def build(tag=tag, target=target, key=key, tests=bool(tests)) -> None:
            build_image(None, [tag], target=target, build_args=args, labels={CONTENT_LABEL: key},
                        base_image=base_image, include_dir=include_dir, with_tests=tests, log=log, client=client)

        refs[target] = build_once(tag, key, build=build, log=log, auth=(username, password) if username else None,
                                  push=lambda tag=tag: push_image(tag, username=username, password=password, log=log,
                                                                  client=client))
    return {"sha": sha, "pipeline_image": refs["pipeline"].pinned, "pipeline_digest": refs["pipeline"].digest,
            "pipeline_tag": refs["pipeline"].tagged, "test_image": refs["test"].pinned,
            "test_digest": refs["test"].digest, "test_tag": refs["test"].tagged,
            "seconds": round(time.monotonic() - started, 1)}
