"""Image tags are immutable: a tag names one build and is never pushed over.

A registry lets any push move a tag, so the check happens here, before building and again
before pushing: the image already under the tag carries a content label (a hash of the model
files, the code, the base image and the build arguments). The same content is reused as it is
(its digest, no rebuild, no push); other content under the tag is refused with
``ImageTagConflict``. Builds are not bit-for-bit reproducible (the creation time is a label),
so content, not the digest, says whether two builds are the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from detectops.build.distribution import image_labels, manifest_digest
from detectops.build.records import ImageRef
from detectops.errors import ImageTagConflict

#: Label holding the content key of a build.
CONTENT_LABEL = "io.detectops.content.sha256"
#: Build arguments that differ between two builds of the same content.
VOLATILE_ARGS = frozenset({"CREATED", "WHEELHOUSE_URL"})


def content_key(model_sha256: str, *, base_image: str | None, build_args: Mapping[str, str],
                include_dir: Path | None = None) -> str:
    """sha256 of what an image is made of: model files, code (``include/``), base image, build arguments."""
    from detectops.build.pipeline_image import code_key

    payload = {
        "model": model_sha256,
        "code": code_key(include_dir),
        "base_image": base_image or "",
        "args": {k: str(v) for k, v in sorted(build_args.items()) if k not in VOLATILE_ARGS},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def existing_build(registry: str, repository: str, tag: str, key: str, *,
                   auth: tuple[str, str] | None = None) -> str | None:
    """The digest under ``repository:tag`` if it is a build of the same content; ``None`` if the tag is free.

    Raises ``ImageTagConflict`` when the tag names another build: it is never overwritten.
    """
    labels = image_labels(registry, repository, tag, auth=auth)
    if labels is None:
        return None
    if labels.get(CONTENT_LABEL) == key:
        return manifest_digest(registry, repository, tag, auth=auth)
    found = labels.get(CONTENT_LABEL)
    raise ImageTagConflict(
        f"{registry}/{repository}:{tag} already names another build (content "
        f"{found[:12] if found else 'unknown: built without a content label'}, this build {key[:12]}). "
        "Tags are immutable, so it is not pushed over. The same model version and commit must hold the "
        "same model and code: register the model as a new version, or commit the code change, then build again."
    )


def build_once(tag: str, key: str, *, build: Callable[[], None], push: Callable[[], ImageRef],
               find: Callable[..., str | None] = existing_build, auth: tuple[str, str] | None = None,
               log: Callable[[str], None] = print) -> ImageRef:
    """``tag`` (``host/repository:tag``) built and pushed exactly once for the content ``key``.

    Reused as it is when the registry already holds that content under the tag (a retried task
    pushes nothing); refused (``ImageTagConflict``) when it holds other content. ``build`` builds
    the image locally under ``tag``, labelled with the key; ``push`` pushes it and returns its
    ``ImageRef``. The registry is asked again after the build: another run may have pushed the
    same content meanwhile.
    """
    repository, _, tag_name = tag.rpartition(":")
    host, _, name = repository.partition("/")

    def reuse() -> ImageRef | None:
        digest = find(host, name, tag_name, key, auth=auth)
        if digest:
            log(f"{tag} already holds this build ({digest}, content {key[:12]}): reusing it")
            return ImageRef(repository=repository, tag=tag_name, digest=digest)
        return None

    found = reuse()
    if found:
        return found
    build()
    return reuse() or push()
