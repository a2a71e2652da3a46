"""What a dataset is validated *for*: the classes it must cover and the bounds that apply.

Full COCO exports (and most labelling tools) declare every category of a project, also those
with no box in this particular dataset. Requiring boxes of every *declared* category made such
valid datasets fail. Which classes need boxes depends on what the data is for:

- ``evaluation`` needs none: a test set without any dog simply has no dog AP.
- ``training`` needs the classes being trained (the model's label map), each with at least
  ``min_boxes_per_class`` boxes.

A :class:`Purpose` is a small record (it crosses XCom as a dict) that the suites turn into
expectations (:func:`detectops.quality.suites.build_expectations`); its dataset-level bounds
override those of :class:`~detectops.quality.suites.Bounds`.

    Purpose.evaluation()
    Purpose.training({1: "circle", 2: "square"}, min_boxes_per_class=5)
    resolve_purpose("training", label_map)        # by name, from a dict, or a Purpose
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Mapping

from detectops.errors import DetectOpsError

EVALUATION = "evaluation"
TRAINING = "training"
PURPOSE_NAMES: tuple[str, ...] = (EVALUATION, TRAINING)


@dataclass(frozen=True)
class Purpose:
    """The classes a purpose needs and its per-class and dataset-level bounds.

    ``required_classes``: category ids that must have between ``min_boxes_per_class`` and
    ``max_boxes_per_class`` boxes; categories outside it are never counted against the
    dataset. Every bound left ``None`` keeps the value of the
    :class:`~detectops.quality.suites.Bounds` in use (``min_class_count``, ``max_class_count``,
    ``min_images``, ``min_annotations``).
    """

    name: str
    required_classes: tuple[int, ...] = ()
    min_boxes_per_class: int | None = None
    max_boxes_per_class: int | None = None
    min_images: int | None = None
    min_annotations: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "required_classes", tuple(sorted({int(c) for c in self.required_classes})))
        if self.min_boxes_per_class is not None and self.min_boxes_per_class < 0:
            raise DetectOpsError(f"Purpose {self.name!r}: min_boxes_per_class must be >= 0, "
                                 f"got {self.min_boxes_per_class}.")
        if (self.max_boxes_per_class is not None and self.min_boxes_per_class is not None
                and self.max_boxes_per_class < self.min_boxes_per_class):
            raise DetectOpsError(f"Purpose {self.name!r}: max_boxes_per_class ({self.max_boxes_per_class}) "
                                 f"is below min_boxes_per_class ({self.min_boxes_per_class}).")

    # ------------------------------------------------------------------ the two purposes
    @classmethod
    def evaluation(cls, **bounds: Any) -> "Purpose":
        """No class needs boxes: absent classes just have no AP."""
        return cls(name=EVALUATION, required_classes=(), **bounds)

    @classmethod
    def training(cls, label_map: Mapping[Any, str] | Iterable[int], **bounds: Any) -> "Purpose":
        """Every class of ``label_map`` (``{id: name}`` or ids) needs boxes to learn from."""
        return cls(name=TRAINING, required_classes=tuple(int(k) for k in label_map), **bounds)

    # ------------------------------------------------------------------ checks
    def apply(self, bounds):  # (Bounds) -> Bounds
        """``bounds`` with the limits this purpose sets (its ``None`` fields keep ``bounds``'s)."""
        changes = {field: value for field, value in (
            ("min_class_count", self.min_boxes_per_class), ("max_class_count", self.max_boxes_per_class),
            ("min_images", self.min_images), ("min_annotations", self.min_annotations)) if value is not None}
        return replace(bounds, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["required_classes"] = list(self.required_classes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Purpose":
        d = dict(d)
        d["required_classes"] = tuple(d.get("required_classes") or ())
        return cls(**d)


def resolve_purpose(purpose: "Purpose | str | Mapping[str, Any] | None",
                    label_map: Mapping[Any, str] | None = None) -> Purpose:
    """A :class:`Purpose` from itself, its dict, or its name.

    ``None`` means ``evaluation`` (no class must have boxes). The name ``training`` needs the
    ``label_map`` of the classes being trained.
    """
    if isinstance(purpose, Purpose):
        return purpose
    if purpose is None:
        return Purpose.evaluation()
    if isinstance(purpose, Mapping):
        return Purpose.from_dict(purpose)
    if purpose == EVALUATION:
        return Purpose.evaluation()
    if purpose == TRAINING:
        if not label_map:
            raise DetectOpsError(
                "The 'training' purpose needs the label map of the classes being trained "
                "(e.g. --label-map include/labelmaps/<model>.json); each of them must have boxes.")
        return Purpose.training(label_map)
    raise DetectOpsError(f"Unknown validation purpose {purpose!r}; choose from {list(PURPOSE_NAMES)}.")


__all__ = ["Purpose", "resolve_purpose", "EVALUATION", "TRAINING", "PURPOSE_NAMES"]
