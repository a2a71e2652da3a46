"""Landing: how batches of labelled images (COCO format) reach level 1, and which ones a run ingests.

Three ways to land a batch, all ending in an event of the Asset ``detectops_batch_landed``
(URI :data:`detectops.assets.BATCH_LANDED_URI`):

**File drop.** The landing area (``detectops.settings.landing_dir()``) looks like this::

    <landing>/<batch>/            a COCO dataset directory (annotations.json + images/)
    <landing>/<batch>.ready       written AFTER the copy is complete; optionally JSON {"model": ...}
    <landing>/READY               the doorbell: "something new is ready" (content ignored)

By hand: ``cp -r mybatch <landing>/ && touch <landing>/mybatch.ready <landing>/READY``, or
:func:`drop_batch` (``detectops land DIR --drop``), which copies under a hidden name first.
The per-batch ``.ready`` marker says which batches are complete (a copy still running has
none); the single ``READY`` file exists only so that a standard trigger can watch it, because
the standard provider's event triggers watch one fixed path each:

- ``FileDeleteTrigger(filepath)`` polls ``filepath``; once it is a file, it deletes it and
  yields ``TriggerEvent(True)``; then the triggerer runs it again for the next drop.
- ``DirectoryFileDeleteTrigger(directory=, filename=)`` does the same for ``directory/filename``
  (sharing one directory scan among sibling triggers) and yields ``{"filepath": ...}``.

Neither carries a batch location (the event's ``extra`` holds only the trigger's payload), so
an event without ``location`` means "scan the landing area", and :func:`collect_batches`
finds every ``<batch>.ready`` there. The DAG declares the watcher like this (parse-time light:
the trigger's module imports no heavy library)::

    from airflow.providers.standard.triggers.file import FileDeleteTrigger
    from airflow.sdk import Asset, AssetWatcher
    Asset(name="detectops_batch_landed", uri=BATCH_LANDED_URI, watchers=[AssetWatcher(
        name="landing_ready_marker",
        trigger=FileDeleteTrigger(filepath=str(landing_dir() / DOORBELL), poke_interval=5))])

Several drops before the trigger polls ring the doorbell once; one run then collects them all.

**REST.** ``POST /api/v2/assets/events`` with ``{"asset_id": <id>, "extra": {"location": <path
or store URI>, "model": <registered model>}}``. A path must lie under one of the allowed roots
(:func:`allowed_roots`); the batch is then copied (see below) so that later changes at the
location cannot change what is trained on.

**CLI.** ``detectops land DIR --model NAME`` (:func:`land`): publishes the batch to the shared
store (:mod:`detectops.data.store`), then emits the event with the store URI as ``location``.

:func:`collect_batches` turns the queued events plus the file drops into one ordered list (by
landing time) of :class:`LandedBatch`, each a content-addressed local copy under
``<landing>/.staged/<sha256>/`` with its content hash; a batch landed twice is returned once,
and a batch already ingested (:func:`mark_ingested`) is not returned again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from detectops.data.coco import CocoDataset
from detectops.data.hashing import dataset_hash
from detectops.errors import DataValidationError
from detectops.fsutil import TEMP_PATTERNS, atomic_write_text, publish, scratch_dir, staged_dir

log = logging.getLogger(__name__)

#: The doorbell the AssetWatcher's trigger watches (and deletes).
DOORBELL = "READY"
#: ``<batch>.ready`` beside ``<batch>/``: the batch is completely copied.
READY_SUFFIX = ".ready"
STAGED_DIR = ".staged"
LEDGER_DIR = ".ingested"
#: Locations of the shared store that events may name (see :mod:`detectops.data.store`).
STORE_URI_PREFIX = "runs:/"
#: Extra roots (``os.pathsep``-separated) a REST event's location may lie under.
ALLOW_ROOTS_ENV = "DETECTOPS_LANDING_ALLOW_ROOTS"


class LandingError(DataValidationError):
    """A landing event names a location that is not allowed or holds no batch."""


@dataclass
class LandedBatch:
    """One batch to ingest: its local, content-addressed copy and where it came from."""

    path: str
    sha256: str
    name: str
    landed_at: str
    source: str  # "file" | "rest" | "store"
    location: str
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LandedBatch":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


# ----------------------------------------------------------------------------- allow-list
def allowed_roots(landing_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The default allow-list: the landing area, the shared store, and ``$DETECTOPS_LANDING_ALLOW_ROOTS``."""
    from detectops import settings

    roots = [str(Path(landing_dir) if landing_dir else settings.landing_dir()), STORE_URI_PREFIX]
    roots += [r for r in os.environ.get(ALLOW_ROOTS_ENV, "").split(os.pathsep) if r.strip()]
    return roots


def _is_uri(location: str) -> bool:
    return "://" in location or location.startswith(STORE_URI_PREFIX)


def check_location(location: Any, allow_roots: Iterable[str]) -> str:
    """``location`` if it is allowed (a path resolved, symlinks and ``..`` included); else :class:`LandingError`."""
    roots = list(allow_roots)
    if not isinstance(location, str) or not location.strip():
        raise LandingError(f"The event's extra has no usable 'location' ({location!r}): send "
                           '{"location": "<batch directory or store URI>", "model": "<model name>"}.')
    if _is_uri(location):
        if any(_is_uri(r) and location.startswith(r) for r in roots):
            return location
        raise LandingError(f"Location {location!r} is not allowed: URIs must start with one of "
                           f"{[r for r in roots if _is_uri(r)]}. Land the batch with `detectops land` "
                           "(it stores the batch and sends its store URI).")
    real = Path(os.path.realpath(location))
    for root in (r for r in roots if not _is_uri(r)):
        if real.is_relative_to(os.path.realpath(root)):
            if not real.is_dir():
                raise LandingError(f"Location {location} is allowed but is not a directory: it must be a "
                                   "COCO batch directory (annotations.json + images/).")
            return str(real)
    raise LandingError(
        f"Location {location!r} is outside the allowed roots {[r for r in roots if not _is_uri(r)]}. Copy the "
        f"batch into the landing area, or ask an operator to add its root to ${ALLOW_ROOTS_ENV}.")


# ----------------------------------------------------------------------------- file drop
def drop_batch(src: str | os.PathLike[str], landing_dir: str | os.PathLike[str], *, name: str | None = None,
               model: str | None = None) -> Path:
    """Land ``src`` by file drop: copy it in (under a hidden name, then rename), mark it ready,
    ring the doorbell. Returns the batch's directory in the landing area."""
    src, landing = Path(src), Path(landing_dir)
    CocoDataset.load(src)  # a clear error now rather than a quarantine later
    name = name or src.name
    if name.startswith(".") or name == DOORBELL or "/" in name:
        raise LandingError(f"{name!r} cannot name a batch in the landing area; pass another --name.")
    landing.mkdir(parents=True, exist_ok=True)
    final = landing / name
    with staged_dir(final, replace=True) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*TEMP_PATTERNS))
    atomic_write_text(landing / f"{name}{READY_SUFFIX}", json.dumps({"model": model} if model else {}))
    atomic_write_text(landing / DOORBELL, datetime.now(timezone.utc).isoformat())
    return final


def _ready_drops(landing: Path) -> list[tuple[Path, float, str | None]]:
    """``(batch dir, landing time, model)`` of every complete file drop."""
    out = []
    if not landing.is_dir():
        return out
    for marker in sorted(landing.glob(f"*{READY_SUFFIX}")):
        batch = marker.with_suffix("")
        if marker.name.startswith(".") or not batch.is_dir():
            continue
        try:
            meta = json.loads(marker.read_text() or "{}")
        except (OSError, ValueError):
            meta = {}
        model = meta.get("model") if isinstance(meta, dict) else None
        out.append((batch, marker.stat().st_mtime, model))
    return out


# ----------------------------------------------------------------------------- collecting
def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def _stage(src: Path, landing: Path) -> tuple[Path, str]:
    """Copy a batch to ``<landing>/.staged/<sha256>`` (once per content); return the copy and its hash."""
    staged_root = landing / STAGED_DIR
    staged_root.mkdir(parents=True, exist_ok=True)
    with scratch_dir(staged_root / "batch") as tmp:
        copy = tmp / "batch"
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns(*TEMP_PATTERNS))
        sha = dataset_hash(copy)  # of the copy: what is hashed is what is ingested
        final = publish(copy, staged_root / sha, replace=False)
    return final, sha


def _fetch_from_store(uri: str, landing: Path, tracking_uri: str | None) -> tuple[Path, str, str]:
    from detectops.data import store

    if not tracking_uri:
        raise LandingError(f"Event location {uri} is in the data store, but no MLflow tracking URI was given "
                           "to collect_batches (pass tracking_uri from the MLflow connection).")
    info = store.stored_info(uri, tracking_uri=tracking_uri)
    if info["kind"] != "batch":
        raise LandingError(f"{uri} is a stored {info['kind']}, not a batch.")
    path = store.fetch_dir(uri, landing / STAGED_DIR / info["sha256"], tracking_uri=tracking_uri)
    return path, info["sha256"], info["name"] or info["sha256"][:12]


def ingested_hashes(landing_dir: str | os.PathLike[str]) -> set[str]:
    """Content hashes of the batches already ingested (or refused) from this landing area."""
    ledger = Path(landing_dir) / LEDGER_DIR
    return {p.stem for p in ledger.glob("*.json")} if ledger.is_dir() else set()


def collect_batches(events: list[dict[str, Any]], landing_dir: str | os.PathLike[str],
                    allow_roots: Iterable[str], *, tracking_uri: str | None = None,
                    on_bad_location: str = "raise") -> list[LandedBatch]:
    """Every batch a run should ingest, oldest landing first, each once.

    ``events``: the run's queued Asset events as ``{"extra": {...}, "timestamp": ...}`` (a bare
    ``extra`` dict works too). Events with a ``location`` name a batch (a path under
    ``allow_roots``, or a store URI, fetched with ``tracking_uri``); the others (the file-drop
    watcher's) just mean "look in the landing area". Every complete file drop
    (``<batch>.ready``) in ``landing_dir`` is collected as well.

    A batch whose content hash was seen earlier in the list, or was already ingested
    (:func:`mark_ingested`), is left out. ``on_bad_location``: ``"raise"`` a
    :class:`LandingError`, or ``"skip"`` the event with an error in the log.
    """
    landing = Path(landing_dir)
    roots = list(allow_roots)
    done = ingested_hashes(landing)
    found: list[LandedBatch] = []

    def add(src_path: Path | None, ts: float, source: str, location: str, model: str | None,
            staged: tuple[Path, str, str] | None = None) -> None:
        if staged is None:
            copy, sha = _stage(src_path, landing)
            name = src_path.name
        else:
            copy, sha, name = staged
        found.append(LandedBatch(path=str(copy), sha256=sha, name=name, landed_at=_iso(ts), source=source,
                                 location=location, model=model))

    for event in events:
        extra = event.get("extra", event) if isinstance(event, Mapping) else {}
        extra = extra if isinstance(extra, Mapping) else {}
        if "location" not in extra:
            continue  # the file-drop doorbell: the landing area is scanned below
        ts = _timestamp(event.get("timestamp") if isinstance(event, Mapping) else None)
        model = extra.get("model")
        try:
            location = check_location(extra["location"], roots)
            if location.startswith(STORE_URI_PREFIX):
                add(None, ts, "store", location, model, _fetch_from_store(location, landing, tracking_uri))
            else:
                add(Path(location), ts, "rest", location, model)
        except LandingError as exc:
            if on_bad_location != "skip":
                raise
            log.error("ignoring landing event %s: %s", dict(extra), exc)

    for batch_dir, ts, model in _ready_drops(landing):
        add(batch_dir, ts, "file", str(batch_dir), model)

    found.sort(key=lambda b: (b.landed_at, b.name))
    out, seen = [], set(done)
    for b in found:
        if b.sha256 in seen:
            log.info("batch %s (%s) was landed before; ingesting it once", b.name, b.sha256[:12])
            continue
        seen.add(b.sha256)
        out.append(b)
    return out


def mark_ingested(batches: Iterable[LandedBatch | Mapping[str, Any]], landing_dir: str | os.PathLike[str], *,
                  version: str | None = None, outcome: str = "ingested") -> None:
    """Record batches as done (``outcome``: ingested into ``version``, quarantined, rejected).

    :func:`collect_batches` never returns them again, and a file drop's ``.ready`` marker is
    removed (its directory is kept: nothing is lost).
    """
    landing = Path(landing_dir)
    for b in batches:
        b = b if isinstance(b, LandedBatch) else LandedBatch.from_dict(b)
        record = {**b.to_dict(), "outcome": outcome, "version": version,
                  "recorded_at": datetime.now(timezone.utc).isoformat()}
        atomic_write_text(landing / LEDGER_DIR / f"{b.sha256}.json", json.dumps(record, indent=1))
        if b.source == "file":
            Path(b.location + READY_SUFFIX).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- per-batch checks
def validate_batch(batch_dir: str | os.PathLike[str], label_map: Mapping[Any, str], *,
                   context: Mapping[str, Any] | None = None, **kwargs: Any):
    """:func:`detectops.quality.batch.validate_batch`, its report written under the run's work dir.

    A batch is a part of the training data, not all of it: it may hold only some of the
    label map's classes (a day of photos with no triangles). So by default a batch needs no
    minimum per class; what it holds must still be valid and inside the label map.
    """
    from detectops.quality.batch import validate_batch as _validate
    from detectops.quality.purpose import Purpose
    from detectops.settings import work_dir

    kwargs.setdefault("purpose", Purpose.training(label_map, min_boxes_per_class=0))

    if context is not None and "report_dir" not in kwargs:
        run = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(context.get("run_id", "run")))
        kwargs["report_dir"] = work_dir() / "validation" / run / Path(batch_dir).name
    return _validate(batch_dir, label_map, **kwargs)


def quarantine(batch: str | os.PathLike[str], verdict: Any, quarantine_dir: str | os.PathLike[str] | None = None) -> Path:
    """Keep a refused batch with its verdict under ``quarantine_dir`` (default ``<state>/quarantine``)."""
    from detectops import settings
    from detectops.quality.batch import quarantine as _quarantine

    report = verdict.to_dict() if hasattr(verdict, "to_dict") else dict(verdict)
    return _quarantine(batch, quarantine_dir or settings.state_dir() / "quarantine", report)


# ----------------------------------------------------------------------------- CLI: detectops land
def land(batch_dir: str | os.PathLike[str], model: str, *, tracking_uri: str, api: Any,
         asset_uri: str | None = None) -> dict[str, Any]:
    """Publish ``batch_dir`` to the store, then emit the batch-landed Asset event through Airflow's API.

    ``api``: a :class:`detectops.airflow_api.AirflowApi` (token from ``POST /auth/token``, asset id
    from ``GET /api/v2/assets?uri_pattern=``, event by ``POST /api/v2/assets/events``).
    """
    from detectops.assets import BATCH_LANDED_URI
    from detectops.data.store import publish_dir

    batch_dir = Path(batch_dir)
    CocoDataset.load(batch_dir)
    sha = dataset_hash(batch_dir)
    uri = publish_dir(batch_dir, kind="batch", sha256=sha, tracking_uri=tracking_uri, name=batch_dir.name)
    extra = {"location": uri, "model": model, "sha256": sha, "name": batch_dir.name}
    event = api.emit_asset_event(asset_uri or BATCH_LANDED_URI, extra)
    return {"location": uri, "sha256": sha, "model": model, "event_id": (event or {}).get("id")}


__all__ = ["DOORBELL", "READY_SUFFIX", "LandedBatch", "LandingError", "allowed_roots", "check_location",
           "drop_batch", "collect_batches", "mark_ingested", "ingested_hashes", "validate_batch", "quarantine",
           "land"]
