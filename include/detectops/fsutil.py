"""Write files and directories so that a reader finds the old content or the new, never half of one.

Every output of DetectOps (datasets, cached models, evaluation and validation reports, the
wheelhouse) is built under a hidden temporary name beside its target and renamed into place
only when complete. A rename within one directory is atomic on POSIX, so a crash, a kill or an
exception leaves the previous content (or nothing), and the temporary is removed on the way out.

Temporaries are named ``.<target>.tmp-<random>`` (an old copy being swapped out:
``.<target>.old-<random>``): hidden, beside the target (same filesystem, so the rename is
atomic), and recognisable if a killed process ever leaves one. They are created with the
ordinary umask-derived modes, not ``tempfile``'s private 0600/0700, because they become the result.

This guards against a process that dies half-way, not against power loss (there is no fsync).
Stdlib only, importing nothing of DetectOps, so every layer may use it.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Glob patterns of the temporaries, for code that copies a tree and must skip what a killed
#: process left behind (``shutil.ignore_patterns(*TEMP_PATTERNS)``).
TEMP_PATTERNS = (".*.tmp-*", ".*.old-*")


def _sibling(target: Path, tag: str) -> Path:
    """A fresh hidden name beside ``target``: ``.<name>.<tag>-<random>`` (48 random bits)."""
    return target.parent / f".{target.name}.{tag}-{secrets.token_hex(6)}"


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file beside it, then rename over ``path``.

    A reader (or a crash) sees the old file or the new one; on any error the temp file is
    removed and the old file is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask: the usual mode
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def scratch_dir(near: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary directory beside ``near``, always removed on exit.

    For building something whose final name is known only at the end (a content hash):
    build inside it, then :func:`publish` the finished part. Whatever was not published is
    removed, whether the block succeeded or raised.
    """
    near = Path(near)
    near.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(near, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def publish(staged: str | os.PathLike[str], final: str | os.PathLike[str], *, replace: bool) -> Path:
    """Rename the complete ``staged`` file or directory to ``final`` (same filesystem); return ``final``.

    ``replace=True``: ``staged`` becomes ``final`` even if ``final`` exists. An existing
    directory is first moved aside and removed afterwards (a rename cannot replace a non-empty
    directory), so a reader may briefly find no ``final`` but never a mix of old and new; if
    the swap fails the old one is put back.

    ``replace=False``: for content-addressed caches, where any complete entry is as good as
    ours. If ``final`` already exists (another process won the race), it is kept and
    ``staged`` is discarded. A rename refuses to overwrite a non-empty directory, so for
    directories this holds even if ``final`` appears between the check and the rename.
    """
    staged, final = Path(staged), Path(final)
    if not replace:
        if final.exists():
            _discard(staged)
            return final
        try:
            os.rename(staged, final)
        except OSError:
            if not final.exists():
                raise
            _discard(staged)
        return final
    if not (final.is_dir() and not final.is_symlink()):
        os.replace(staged, final)
        return final
    aside = _sibling(final, "old")
    os.rename(final, aside)
    try:
        os.rename(staged, final)
    except BaseException:
        os.rename(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return final


@contextmanager
def staged_dir(final: str | os.PathLike[str], *, replace: bool) -> Iterator[Path]:
    """Yield an empty directory beside ``final`` that becomes ``final`` when the block succeeds.

    If the block raises, the directory is removed and ``final`` is left as it was. ``replace``
    says what happens when ``final`` exists on success; see :func:`publish` (True: ours replaces
    it, e.g. a rerun's report; False: theirs is kept, e.g. a cache entry another process wrote).
    """
    final = Path(final)
    with scratch_dir(final) as tmp:
        yield tmp
        publish(tmp, final, replace=replace)
