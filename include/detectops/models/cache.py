"""Downloads and content hashes for the all-or-nothing model cache.

Every cache entry is built in a hidden temporary directory next to its final place
(``detectops.fsutil.scratch_dir``) and renamed into place only when complete
(``detectops.fsutil.publish``), so a crash or a bad download never leaves a half-written
model that a later run would trust.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from detectops.errors import ModelSourceError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_dir(path: Path) -> str:
    """A content hash of a directory tree: every file's relative path and bytes, in sorted order."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


def download(url: str, dest: Path, *, expected_sha256: str | None = None, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` with a progress bar; return the file's sha256.

    Raises ``ModelSourceError`` (and removes the partial file) when the URL cannot be read or
    the checksum differs.
    """
    from tqdm import tqdm

    dest = Path(dest)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {Path(url).name}", leave=False) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        dest.unlink(missing_ok=True)
        raise ModelSourceError(
            f"could not download {url}: {e}. Check the URL and that the host is reachable from here "
            "(set DETECTOPS_ZOO_BASE_URL to a mirror you can reach, or fetch a local SavedModel directory instead)."
        ) from e
    actual = digest.hexdigest()
    if expected_sha256 and actual.lower() != expected_sha256.lower():
        dest.unlink(missing_ok=True)
        raise ModelSourceError(
            f"checksum mismatch for {url}: expected sha256 {expected_sha256}, got {actual}. "
            "The file is corrupt or was replaced; re-check the published checksum before using it."
        )
    return actual
