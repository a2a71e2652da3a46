"""Write the pushed image onto the MLflow model version it serves (lineage: model -> image)."""

from __future__ import annotations

from detectops.build.records import ImageRef

IMAGE_TAGS = ("image.digest", "image.repository", "image.tag")


def record_image_on_model_version(
    name: str, version: str | int, image_ref: ImageRef, *, tracking_uri: str | None = None
) -> dict[str, str]:
    """Set ``image.digest``, ``image.repository``, ``image.tag`` on model version ``name``/``version``.

    Idempotent (tags are overwritten with the same values). Returns the tags set.
    """
    import mlflow

    client = (mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
              if tracking_uri else mlflow.MlflowClient())
    tags = {
        "image.digest": image_ref.digest,
        "image.repository": image_ref.repository,
        "image.tag": image_ref.tag,
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    return tags
