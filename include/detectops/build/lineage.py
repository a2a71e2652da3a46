"""Write the pushed image onto the MLflow model version it serves (lineage: model -> image)."""

from __future__ import annotations

from detectops.build.records import ImageRef

#: Dotted tags (the pipeline's contract for the build stage) ...
IMAGE_TAGS = ("image.digest", "image.repository", "image.tag")
#: ... next to detectops.registry.record_image's own (image_digest, image_repository, image_tag, image).


def record_image_on_model_version(
    name: str, version: str | int, image_ref: ImageRef, *, tracking_uri: str | None = None
) -> dict[str, str]:
    """Tag model version ``name``/``version`` with the image that serves it; return the dotted tags.

    Goes through ``detectops.registry`` (the one module that talks to the MLflow registry):
    ``record_image`` writes its ``image_*`` tags and the pinned ``image`` reference, then the
    ``image.digest`` / ``image.repository`` / ``image.tag`` tags are set. Idempotent.
    """
    from detectops.registry import record_image, set_version_tag

    record_image(name, version, image_ref, tracking_uri=tracking_uri)
    tags = {
        "image.digest": image_ref.digest,
        "image.repository": image_ref.repository,
        "image.tag": image_ref.tag,
    }
    for key, value in tags.items():
        set_version_tag(name, version, key, value, tracking_uri=tracking_uri)
    return tags
