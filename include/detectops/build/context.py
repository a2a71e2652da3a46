"""The build context: a temp directory with the repository's layout, holding only what the image needs.

    <ctx>/.dockerignore
    <ctx>/pyproject.toml
    <ctx>/include/docker/{Dockerfile, requirements-runtime.txt, detectops-launcher}
    <ctx>/include/detectops/...      the library (no caches, no egg-info)
    <ctx>/include/k8s/...            manifests (the deployer pod renders them)
    <ctx>/model/                     the SavedModel baked into the image
    <ctx>/tests/                     the test suite (the ``test`` target; empty otherwise)

Same layout as the repository, so ``include/docker/Dockerfile`` also builds from the repo root.
Files are made world-readable: the image runs as a non-root user.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from detectops import settings
from detectops.errors import BuildError
from detectops.fsutil import TEMP_PATTERNS

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", *TEMP_PATTERNS)


def _make_readable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        extra = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        if path.is_dir() or mode & stat.S_IXUSR:
            extra |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        path.chmod(mode | extra)


def assemble_context(model_dir: str | Path | None, dest: str | Path, *, include_dir: Path | None = None,
                     with_tests: bool = False) -> Path:
    """Fill ``dest`` (an empty or missing directory) with the build context; return it.

    ``model_dir=None`` makes the context of the pipeline image (the code, no model);
    ``with_tests`` adds ``tests/`` beside ``include/`` (the test image).
    """
    include_dir = Path(include_dir or settings.INCLUDE_DIR)
    model_dir = Path(model_dir) if model_dir is not None else None
    if model_dir is not None and not (model_dir / "saved_model.pb").is_file():
        raise BuildError(
            f"{model_dir} is not a TensorFlow SavedModel (no saved_model.pb): pass the directory "
            "returned by detectops.models.fetch_model(...).path or a trained model's export dir."
        )
    dockerfile = include_dir / "docker" / "Dockerfile"
    if not dockerfile.is_file():
        raise BuildError(f"{dockerfile} is missing: the image cannot be built from this checkout.")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(include_dir, dest / "include", ignore=_IGNORE, dirs_exist_ok=True)
    if model_dir is not None:
        shutil.copytree(model_dir, dest / "model", ignore=_IGNORE, dirs_exist_ok=True)
    # Always a tests/ directory, empty unless asked for: Docker's classic builder (the Engine API's
    # /build, which docker-py drives) builds every stage before the target, the test stage too.
    (dest / "tests").mkdir(exist_ok=True)
    if with_tests:
        tests = include_dir.parent / "tests"
        if not tests.is_dir():
            raise BuildError(f"{tests} is missing: the test image needs the checkout's tests/")
        shutil.copytree(tests, dest / "tests", ignore=_IGNORE, dirs_exist_ok=True)
    pyproject = include_dir.parent / "pyproject.toml"
    if pyproject.is_file():
        shutil.copy2(pyproject, dest / "pyproject.toml")
    dockerignore = include_dir.parent / ".dockerignore"
    if dockerignore.is_file():
        shutil.copy2(dockerignore, dest / ".dockerignore")
    _make_readable(dest)
    return dest
