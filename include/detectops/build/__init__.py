"""Package a model version as a container image and push it (Docker Engine API via the ``docker`` SDK).

    ref = build_and_push(model_dir, registry="127.0.0.1:5000", model_version="3",
                         dataset_sha256=..., base_image="local/bookworm:base")
    detectops.registry.record_image("detector", "3", ref)   # lineage: model version -> image digest

One tag = one build of one model version at one commit:
``<registry>/detectops/detector:[<model name>-]v<version>-<commit12>``, never overwritten
(``detectops.build.immutable``). Deployments use ``ref.image_by_digest`` (``repo@sha256:...``).
The Dockerfile is ``include/docker/Dockerfile``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from detectops.build.context import assemble_context
from detectops.build.distribution import image_labels as image_labels_in_registry
from detectops.build.distribution import manifest_digest
from detectops.build.immutable import CONTENT_LABEL, build_once, content_key, existing_build
from detectops.build.image import (
    DEFAULT_REPOSITORY,
    build_image,
    commit_tag,
    docker_client,
    image_labels,
    image_tags,
    push_image,
    split_tag,
)
from detectops.build.records import ImageRef
from detectops.build.wheelhouse import ensure_wheelhouse, serve_wheelhouse

__all__ = [
    "CONTENT_LABEL", "DEFAULT_REPOSITORY", "ImageRef", "assemble_context", "content_key", "existing_build", "build_and_push", "build_image",
    "commit_tag", "configure_parser", "docker_client", "ensure_wheelhouse", "image_labels",
    "image_tags", "manifest_digest", "push_image", "run_from_args",
    "serve_wheelhouse", "split_tag",
]

log_ = logging.getLogger(__name__)


def build_and_push(
    model_dir: str | Path,
    *,
    registry: str,
    model_version: str | int,
    model_name: str | None = None,
    dataset_sha256: str | None = None,
    commit: str | None = None,
    repository: str = DEFAULT_REPOSITORY,
    base_image: str | None = None,
    username: str | None = None,
    password: str | None = None,
    docker_host: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
    use_wheelhouse: bool = True,
    pipeline_image: str | None = None,
    log=log_.info,
) -> ImageRef:
    """Build the image for one model version and push it under its one tag; return its ``ImageRef``.

    The tag is never overwritten (``detectops.build.immutable``): a build of the same content
    already in the registry is reused without building; another build under the tag raises
    ``ImageTagConflict``. ``docker_host`` is the engine's address (default: ``DOCKER_HOST``).
    Deploy ``ref.image_by_digest``, never the tag.

    ``pipeline_image`` (``repo@sha256:...``): the detector stage builds on that pipeline image
    instead of this checkout's code, so the service runs the code the model trained with (level 1
    with a level-2 commit's image); the tag and labels name that image's commit.
    """
    from detectops import settings
    from detectops.models.cache import sha256_dir

    if pipeline_image:  # the model on the code it trained with: that image's commit names the build
        commit = commit or pipeline_commit(pipeline_image, auth=(username, password) if username else None)
    commit = commit or settings.code_version()
    args = {"MODEL_VERSION": str(model_version), "GIT_COMMIT": commit}
    if pipeline_image:
        args["PIPELINE_IMAGE"] = pipeline_image
    if dataset_sha256:
        args["DATASET_SHA256"] = dataset_sha256
    key = content_key(sha256_dir(Path(model_dir)), base_image=base_image, build_args=args)
    (tag,) = image_tags(registry, model_version, commit, repository, model_name=model_name)
    if commit_tag(commit).endswith("-dirty"):
        tag = f"{tag}-{key[:12]}"  # a dirty tree is not named by its commit, so its content names it
    engine: dict[str, object] = {}

    def build() -> None:
        engine["client"] = docker_client(base_url=docker_host)
        build_image(model_dir, [tag], build_args=args, labels={**(extra_labels or {}), CONTENT_LABEL: key},
                    base_image=base_image, use_wheelhouse=use_wheelhouse, log=log, client=engine["client"])

    return build_once(tag, key, build=build, find=existing_build, log=log,
                      push=lambda: push_image(tag, username=username, password=password, log=log,
                                              client=engine["client"]),
                      auth=(username, password) if username else None)


def pipeline_commit(pipeline_image: str, *, auth: tuple[str, str] | None = None) -> str:
    """The commit a pipeline image was built from (its ``io.detectops.git.commit`` label, from the registry)."""
    from detectops.errors import BuildError

    repository, _, digest = pipeline_image.partition("@")
    host, _, name = repository.partition("/")
    if not digest.startswith("sha256:") or not name:
        raise BuildError(f"pipeline_image {pipeline_image!r} is not pinned (host/repository@sha256:...)")
    labels = image_labels_in_registry(host, name, digest, auth=auth)
    if labels is None:
        raise BuildError(f"{pipeline_image} is not in the registry: build the pipeline image first")
    commit = labels.get("io.detectops.git.commit")
    if not commit or commit == "unknown":
        raise BuildError(f"{pipeline_image} has no io.detectops.git.commit label: it was not built by detectops.build")
    return commit


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``detectops build`` (the lead's CLI calls this, then ``run_from_args``)."""
    parser.add_argument("--model-dir", required=True, help="SavedModel directory to bake into the image")
    parser.add_argument("--model-version", required=True, help="model version (MLflow registry version)")
    parser.add_argument("--registry", default=os.environ.get("DETECTOPS_REGISTRY"),
                        help="registry host:port (default: $DETECTOPS_REGISTRY)")
    parser.add_argument("--repository", default=DEFAULT_REPOSITORY)
    parser.add_argument("--dataset-sha256", default=None)
    parser.add_argument("--commit", default=None, help="code commit (default: git HEAD / $DETECTOPS_CODE_VERSION)")
    parser.add_argument("--base-image", default=os.environ.get("DETECTOPS_BASE_IMAGE"),
                        help="FROM image (default: $DETECTOPS_BASE_IMAGE or python:3.11-slim-bookworm)")
    parser.add_argument("--no-wheelhouse", action="store_true", help="let pip in the build use the index")
    parser.add_argument("--registered-model", default=None,
                        help="MLflow registered model name: tag its version with the image digest")
    return parser


def run_from_args(args: argparse.Namespace) -> dict:
    """Run ``detectops build`` from parsed arguments; returns the ImageRef as a dict (for XCom)."""
    from detectops.errors import BuildError

    if not args.registry:
        raise BuildError("no registry: pass --registry host:port or export DETECTOPS_REGISTRY.")
    ref = build_and_push(
        args.model_dir, registry=args.registry, model_version=args.model_version, model_name=args.registered_model,
        dataset_sha256=args.dataset_sha256, commit=args.commit, repository=args.repository,
        base_image=args.base_image, use_wheelhouse=not args.no_wheelhouse,
        username=os.environ.get("DETECTOPS_REGISTRY_USER"), password=os.environ.get("DETECTOPS_REGISTRY_PASSWORD"),
    )
    if args.registered_model:
        from detectops.registry import record_image

        record_image(args.registered_model, args.model_version, ref)
    return ref.to_dict()
