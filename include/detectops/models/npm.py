"""Package tarballs from the npm registry, over plain HTTP (no ``npm`` binary needed in a pod).

The tarball is checked against the registry's ``dist.integrity`` (sha512) and kept in
``cache_dir()/npm/``, so a second fetch works offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from detectops.errors import ModelSourceError
from detectops.fsutil import publish, scratch_dir
from detectops.models.cache import download

DEFAULT_REGISTRY = "https://registry.npmjs.org"


def registry_url() -> str:
    return os.environ.get("DETECTOPS_NPM_REGISTRY", DEFAULT_REGISTRY).rstrip("/")


def parse_spec(spec: str) -> tuple[str, str]:
    """``@scope/name@1.2.3`` -> (``@scope/name``, ``1.2.3``). An exact version is required."""
    name, sep, version = spec.rpartition("@")
    if not sep or not name or not version or name == "@":
        raise ModelSourceError(f"'{spec}': expected an npm package with an exact version, e.g. @vladmandic/human@3.3.6")
    return name, version


def _integrity_ok(path: Path, integrity: str) -> bool:
    algo, _, expected = integrity.partition("-")
    if algo not in ("sha512", "sha384", "sha256", "sha1"):
        return False
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode() == expected


def fetch_tarball(name: str, version: str, cache_root: Path) -> Path:
    """The package tarball ``name@version``, from the cache or the registry."""
    npm_root = Path(cache_root) / "npm"
    final = npm_root / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if final.is_file():
        return final

    meta_url = f"{registry_url()}/{name}/{version}"
    try:
        with urllib.request.urlopen(meta_url, timeout=30) as response:
            dist = json.load(response)["dist"]
    except urllib.error.HTTPError as e:
        raise ModelSourceError(f"npm registry has no {name}@{version} ({meta_url}: HTTP {e.code}); check the version.") from e
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        raise ModelSourceError(
            f"could not read {meta_url} ({e}). The npm registry must be reachable once to fetch {name}@{version} "
            "(set DETECTOPS_NPM_REGISTRY to a mirror); afterwards the cached copy is used."
        ) from e

    with scratch_dir(final) as tmp:
        tarball = tmp / final.name
        download(dist["tarball"], tarball)
        integrity = dist.get("integrity")
        if integrity and not _integrity_ok(tarball, integrity):
            raise ModelSourceError(
                f"{dist['tarball']} does not match the registry's integrity {integrity[:20]}...: "
                "the download is corrupt or was tampered with. Try again; if it persists, do not use it."
            )
        publish(tarball, final, replace=True)
    return final
