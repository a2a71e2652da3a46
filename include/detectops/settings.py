"""Where DetectOps keeps things, and the environment variables that move them.

One place for paths and endpoints, so that a DAG task, a pod and a test agree.
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

#: ``include/`` — the library's data (GX suites, label maps, datasets, k8s manifests, Dockerfile).
INCLUDE_DIR = Path(os.environ.get("DETECTOPS_INCLUDE_DIR", Path(__file__).resolve().parents[1]))

#: The repository root (the parent of ``include/``).
REPO_DIR = INCLUDE_DIR.parent


def state_dir() -> Path:
    """Root for everything DetectOps writes at run time (caches, datasets, outputs)."""
    return Path(os.environ.get("DETECTOPS_HOME", REPO_DIR / ".state")).resolve()


def cache_dir() -> Path:
    """Download and conversion cache (model archives, converted SavedModels)."""
    return Path(os.environ.get("DETECTOPS_CACHE", state_dir() / "cache")).resolve()


def work_dir() -> Path:
    """Per-run outputs: evaluation reports, generated datasets."""
    return Path(os.environ.get("DETECTOPS_WORK", state_dir() / "work")).resolve()


def landing_dir() -> Path:
    """The file-drop landing area for new data batches (``DETECTOPS_LANDING_DIR``).

    Level 1's AssetWatcher watches its ``READY`` marker; the triggerer and the workers must see
    the same directory (one machine here; a shared volume elsewhere).
    """
    return Path(os.environ.get("DETECTOPS_LANDING_DIR", state_dir() / "landing")).resolve()


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the running code (``DETECTOPS_CODE_VERSION`` wins, e.g. inside an image)."""
    env = os.environ.get("DETECTOPS_CODE_VERSION")
    if env:
        return env
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
