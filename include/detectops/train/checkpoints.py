"""Where the trainer keeps one checkpoint per epoch, so that a retried pod resumes instead of restarting.

A checkpoint is a directory of files (written by :mod:`detectops.train.trainer`); a store only
keeps and returns such directories, by epoch:

    store.save(epoch, files_dir)     # after each epoch
    store.latest() -> (epoch, dir) | None

A checkpoint counts only once it is complete: stores publish a ``COMPLETE`` marker after the
files, and ``latest`` ignores an epoch without one, so a pod killed during an upload resumes
from the previous epoch rather than from half a checkpoint.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from detectops.fsutil import TEMP_PATTERNS, staged_dir

COMPLETE_MARKER = "COMPLETE"
_EPOCH_DIR = re.compile(r"^epoch-(\d{3,})$")


def epoch_dir_name(epoch: int) -> str:
    return f"epoch-{epoch:03d}"


class CheckpointStore(Protocol):
    """Keeps the checkpoint directory of each epoch."""

    def save(self, epoch: int, files_dir: Path) -> None:
        """Store the files of ``files_dir`` as the checkpoint of ``epoch`` (1-based)."""

    def latest(self) -> tuple[int, Path] | None:
        """``(epoch, local directory)`` of the newest complete checkpoint, or ``None``."""


class LocalCheckpointStore:
    """Checkpoints as ``<root>/epoch-NNN/`` on a local (or mounted) filesystem."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def save(self, epoch: int, files_dir: Path) -> None:
        target = self.root / epoch_dir_name(epoch)
        with staged_dir(target, replace=True) as tmp:  # rename into place: complete or absent
            shutil.copytree(files_dir, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*TEMP_PATTERNS))
            (tmp / COMPLETE_MARKER).write_text(f"{epoch}\n")

    def latest(self) -> tuple[int, Path] | None:
        if not self.root.is_dir():
            return None
        found = [(int(m.group(1)), p) for p in self.root.iterdir()
                 if (m := _EPOCH_DIR.match(p.name)) and (p / COMPLETE_MARKER).is_file()]
        return max(found) if found else None

    def __repr__(self) -> str:
        return f"LocalCheckpointStore({str(self.root)!r})"


class MlflowCheckpointStore:
    """Checkpoints as artifacts ``checkpoints/epoch-NNN/`` of one MLflow run.

    The run's artifact store is reachable from any pod that reaches the tracking server, so a
    retried pod (a new pod, maybe on another node) finds what the killed one saved. ``latest``
    downloads the newest complete checkpoint into ``download_dir`` (default: a fresh temp dir).
    """

    ARTIFACT_DIR = "checkpoints"

    def __init__(self, tracking_uri: str | None, run_id: str, *, download_dir: str | Path | None = None):
        from detectops.evaluate.mlflow_log import connect

        self.client = connect(tracking_uri)
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.download_dir = Path(download_dir) if download_dir else None

    def save(self, epoch: int, files_dir: Path) -> None:
        path = f"{self.ARTIFACT_DIR}/{epoch_dir_name(epoch)}"
        self.client.log_artifacts(self.run_id, str(files_dir), path)
        # The marker goes last: an upload cut short leaves an epoch that latest() ignores.
        with tempfile.TemporaryDirectory() as tmp:
            marker = Path(tmp) / COMPLETE_MARKER
            marker.write_text(f"{epoch}\n")
            self.client.log_artifact(self.run_id, str(marker), path)

    def _complete_epochs(self) -> list[int]:
        epochs = []
        for entry in self.client.list_artifacts(self.run_id, self.ARTIFACT_DIR):
            m = _EPOCH_DIR.match(Path(entry.path).name)
            if entry.is_dir and m:
                names = {Path(f.path).name for f in self.client.list_artifacts(self.run_id, entry.path)}
                if COMPLETE_MARKER in names:
                    epochs.append(int(m.group(1)))
        return sorted(epochs)

    def latest(self) -> tuple[int, Path] | None:
        epochs = self._complete_epochs()
        if not epochs:
            return None
        epoch = epochs[-1]
        dst = self.download_dir or Path(tempfile.mkdtemp(prefix="detectops-ckpt-"))
        dst.mkdir(parents=True, exist_ok=True)
        local = self.client.download_artifacts(self.run_id, f"{self.ARTIFACT_DIR}/{epoch_dir_name(epoch)}", str(dst))
        return epoch, Path(local)

    def __repr__(self) -> str:
        return f"MlflowCheckpointStore(run_id={self.run_id!r})"
