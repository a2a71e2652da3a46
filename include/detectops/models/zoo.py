"""TF2 Detection Model Zoo archives (``<name>.tar.gz`` holding ``<name>/saved_model/``).

    zoo:ssd_mobilenet_v2_320x320_coco17_tpu-8
    https://host/path/model.tar.gz#sha256=<hex>

Cached under ``cache_dir()/zoo/<name>-<sha12>`` (sha of the archive). An entry records the
URL it came from, so asking again for the same URL needs no network.
"""

from __future__ import annotations

import json
import os
import tarfile
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from detectops.errors import ContractError, ModelSourceError
from detectops.fsutil import publish, scratch_dir
from detectops.models.cache import download
from detectops.models.contract import verify_contract

DEFAULT_ZOO_BASE_URL = "http://download.tensorflow.org/models/object_detection/tf2/20200711"
SOURCE_FILE = "detectops-source.json"


def zoo_base_url() -> str:
    return os.environ.get("DETECTOPS_ZOO_BASE_URL", DEFAULT_ZOO_BASE_URL).rstrip("/")


def is_archive_url(source: str) -> bool:
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.path.endswith((".tar.gz", ".tgz"))


def parse_archive_source(source: str) -> tuple[str, str, str | None]:
    """``zoo:<name>`` or an archive URL (optionally ``#sha256=<hex>``) -> (url, name, sha256)."""
    source, _, fragment = source.partition("#")
    sha256 = None
    if fragment:
        key, _, value = fragment.partition("=")
        if key != "sha256" or len(value) != 64:
            raise ModelSourceError(f"unsupported URL fragment '#{fragment}': use '#sha256=<64 hex digits>'")
        sha256 = value.lower()
    if source.startswith("zoo:"):
        name = source[len("zoo:"):].strip("/")
        if not name or "/" in name:
            raise ModelSourceError(f"'{source}': expected zoo:<model_name>, e.g. zoo:ssd_mobilenet_v2_320x320_coco17_tpu-8")
        return f"{zoo_base_url()}/{name}.tar.gz", name, sha256
    name = Path(urlsplit(source).path).name
    for suffix in (".tar.gz", ".tgz"):
        name = name.removesuffix(suffix)
    return source, name, sha256


def find_saved_model(root: Path) -> Path:
    """The directory below ``root`` that holds ``saved_model.pb`` (the shallowest, if several)."""
    found = sorted((p.parent for p in Path(root).rglob("saved_model.pb")), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise ContractError(f"no SavedModel (saved_model.pb) found inside {root}; is this a detection model export?")
    return found[0]


def _cached(zoo_root: Path, name: str, url: str, sha256: str | None) -> Path | None:
    candidates = [zoo_root / f"{name}-{sha256[:12]}"] if sha256 else sorted(zoo_root.glob(f"{name}-*"))
    for entry in candidates:
        meta = entry / SOURCE_FILE
        if not meta.is_file():
            continue
        recorded = json.loads(meta.read_text())
        if (sha256 and recorded.get("sha256") == sha256) or (not sha256 and recorded.get("url") == url):
            return entry
    return None


def _extract(archive: Path, dest: Path) -> None:
    """Extract safely: the ``data`` filter refuses absolute paths, ``..``, device files and
    links that point outside ``dest``."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as e:
        raise ModelSourceError(f"refusing to extract {archive.name}: unsafe member ({e}). Do not use this archive.") from e
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ModelSourceError(
            f"{archive.name} is not a readable tar.gz archive ({e}); the download is corrupt or the URL "
            "does not point at a model archive. Check the URL and try again."
        ) from e


def fetch_archive(
    url: str, name: str, *, sha256: str | None, cache_root: Path, label_map: dict[int, str] | None = None
) -> tuple[Path, str]:
    """Download, verify, extract and cache a model archive; return (SavedModel dir, archive sha256).

    ``label_map`` is written into the SavedModel when it carries none (zoo models are COCO).
    """
    from detectops.models.labels import read_label_map, write_label_map

    zoo_root = Path(cache_root) / "zoo"
    entry = _cached(zoo_root, name, url, sha256)
    if entry is not None:
        return find_saved_model(entry), json.loads((entry / SOURCE_FILE).read_text())["sha256"]

    with scratch_dir(zoo_root / name) as tmp:
        archive = tmp / "archive.tar.gz"
        actual = download(url, archive, expected_sha256=sha256)
        extracted = tmp / "extracted"
        _extract(archive, extracted)
        # Archives hold one top folder (<name>/...); cache its content, not the wrapper.
        children = list(extracted.iterdir())
        model_root = children[0] if len(children) == 1 and children[0].is_dir() else extracted
        saved_model = find_saved_model(model_root)
        verify_contract(saved_model)
        if label_map and not read_label_map(saved_model):
            write_label_map(saved_model, label_map)
        (model_root / SOURCE_FILE).write_text(json.dumps({"url": url, "name": name, "sha256": actual}, indent=1))
        relative = saved_model.relative_to(model_root)
        # Keyed by the archive hash: an entry another process finished first is the same model.
        final = publish(model_root, zoo_root / f"{name}-{actual[:12]}", replace=False)
    return final / relative, actual
