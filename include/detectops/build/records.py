"""The record a build produces: where the image lives, by immutable digest."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ImageRef:
    """A pushed image. ``repository`` includes the registry host (``127.0.0.1:5000/detectops/detector``)."""

    repository: str
    tag: str
    digest: str

    @property
    def tagged(self) -> str:
        """``repository:tag`` — readable, but a tag can move."""
        return f"{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        """``repository@sha256:...`` — what a Deployment should run: it can never change under you."""
        return f"{self.repository}@{self.digest}"

    @property
    def image_by_digest(self) -> str:
        """The reference deployments use: ``repository@sha256:...`` (same as ``pinned``)."""
        return self.pinned

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageRef:
        return cls(repository=data["repository"], tag=data["tag"], digest=data["digest"])
