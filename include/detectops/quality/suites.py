"""Great Expectations suites for the three dataset tables (see :mod:`.tables`).

One function, :func:`build_suite`, turns a table name, a label map and :class:`Bounds` into a
real ``gx.ExpectationSuite``; the same suites run in :func:`~detectops.quality.validate.validate_dataset`
and inside the GX Airflow provider's operator (:mod:`.gx_operators`), so a DAG and a test
check exactly the same things.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from detectops.quality.purpose import Purpose
from detectops.quality.tables import ANNOTATIONS_COLUMNS, CLASS_COUNTS_COLUMNS, IMAGES_COLUMNS

TABLES: tuple[str, ...] = ("images", "annotations", "class_counts")
_COLUMNS = {"images": IMAGES_COLUMNS, "annotations": ANNOTATIONS_COLUMNS, "class_counts": CLASS_COUNTS_COLUMNS}
_INT_TYPES = ["int64", "int32", "int16", "int8"]
_FLOAT_TYPES = ["float64", "float32"]
#: Column -> allowed pandas dtypes (the schema). Booleans must be real booleans.
_TYPES: dict[str, dict[str, list[str]]] = {
    "images": {"id": _INT_TYPES, "width": _INT_TYPES, "height": _INT_TYPES,
               "file_exists": ["bool"], "readable": ["bool"]},
    "annotations": {"id": _INT_TYPES, "image_id": _INT_TYPES, "category_id": _INT_TYPES,
                    "x": _FLOAT_TYPES + _INT_TYPES, "y": _FLOAT_TYPES + _INT_TYPES,
                    "w": _FLOAT_TYPES + _INT_TYPES, "h": _FLOAT_TYPES + _INT_TYPES,
                    "area": _FLOAT_TYPES + _INT_TYPES, "image_exists": ["bool"]},
    "class_counts": {"category_id": _INT_TYPES, "count": _INT_TYPES},
}


@dataclass(frozen=True)
class Bounds:
    """Limits the suites enforce. Defaults suit both the real eval set and synthetic data."""

    min_image_side: int = 16
    max_image_side: int = 8192
    #: Pixels a box may reach past the right/bottom edge (COCO exports round; 1 px is noise).
    box_tolerance_px: float = 1.0
    #: Boxes each *required* class needs (a :class:`~detectops.quality.purpose.Purpose` says which
    #: classes are required and sets these two; 0 / None turn the checks off).
    min_class_count: int = 1
    max_class_count: int | None = None
    min_images: int = 1
    min_annotations: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Bounds":
        return cls(**dict(d or {}))


def suite_name(table: str) -> str:
    return f"detectops_{table}"


def build_expectations(table: str, label_map: Mapping[int, str] | None = None,
                       bounds: Bounds | None = None, purpose: "Purpose | None" = None) -> list:
    """The list of GX Expectation objects for ``table`` (see :func:`build_suite`)."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    if table not in TABLES:
        raise ValueError(f"Unknown table {table!r}; choose from {TABLES}.")
    purpose = purpose or Purpose.evaluation()
    b = purpose.apply(bounds or Bounds())
    cols = _COLUMNS[table]
    ex: list = [gxe.ExpectTableColumnsToMatchSet(column_set=list(cols), exact_match=False)]
    ex += [gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=t) for c, t in _TYPES[table].items()]
    valid_ids = sorted(int(k) for k in label_map) if label_map is not None else None

    if table == "images":
        ex += [
            gxe.ExpectTableRowCountToBeBetween(min_value=b.min_images),
            gxe.ExpectColumnValuesToNotBeNull(column="id"),
            gxe.ExpectColumnValuesToBeUnique(column="id"),
            gxe.ExpectColumnValuesToBeUnique(column="file_name"),
            gxe.ExpectColumnValuesToBeBetween(column="width", min_value=b.min_image_side, max_value=b.max_image_side),
            gxe.ExpectColumnValuesToBeBetween(column="height", min_value=b.min_image_side, max_value=b.max_image_side),
            gxe.ExpectColumnValuesToBeInSet(column="file_exists", value_set=[True]),
            gxe.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]),
            # The header must agree with the JSON; unreadable files are left to `readable`.
            gxe.ExpectColumnPairValuesToBeEqual(column_A="width", column_B="actual_width",
                                                ignore_row_if="either_value_is_missing"),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="height", column_B="actual_height",
                                                ignore_row_if="either_value_is_missing"),
        ]
    elif table == "annotations":
        ex += [
            gxe.ExpectTableRowCountToBeBetween(min_value=b.min_annotations),
            gxe.ExpectColumnValuesToNotBeNull(column="id"),
            gxe.ExpectColumnValuesToBeUnique(column="id"),
            gxe.ExpectColumnValuesToBeInSet(column="image_exists", value_set=[True]),
            *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("x", "y", "w", "h")],
            gxe.ExpectColumnValuesToBeBetween(column="x", min_value=0),
            gxe.ExpectColumnValuesToBeBetween(column="y", min_value=0),
            gxe.ExpectColumnValuesToBeBetween(column="w", min_value=0, strict_min=True),
            gxe.ExpectColumnValuesToBeBetween(column="h", min_value=0, strict_min=True),
            gxe.ExpectColumnValuesToBeBetween(column="area", min_value=0, strict_min=True),
            gxe.ExpectColumnValuesToBeBetween(column="x_overflow", max_value=b.box_tolerance_px),
            gxe.ExpectColumnValuesToBeBetween(column="y_overflow", max_value=b.box_tolerance_px),
        ]
        if valid_ids is not None:
            ex.append(gxe.ExpectColumnValuesToBeInSet(column="category_id", value_set=valid_ids))
    else:  # class_counts
        if valid_ids is not None:
            # Only categories that have boxes: a full export declares classes this model never sees.
            ex.append(gxe.ExpectColumnValuesToBeInSet(column="category_id", value_set=valid_ids,
                                                      row_condition=Column("count") > 0))
        if purpose.required_classes and (b.min_class_count > 0 or b.max_class_count is not None):
            # Per-class bounds hold for the classes the purpose needs, and only for them.
            required = list(purpose.required_classes)
            if b.min_class_count > 0:  # a required class nobody even declared has no row at all
                ex.append(gxe.ExpectColumnDistinctValuesToContainSet(column="category_id", value_set=required))
            ex.append(gxe.ExpectColumnValuesToBeBetween(
                column="count", min_value=b.min_class_count or None, max_value=b.max_class_count,
                row_condition=Column("category_id").is_in(required)))
    return ex


def build_suite(table: str, label_map: Mapping[int, str] | None = None, bounds: Bounds | None = None,
                purpose: "Purpose | None" = None):
    """A ``gx.ExpectationSuite`` named ``detectops_<table>`` for one of :data:`TABLES`.

    ``label_map`` (``{category_id: name}``) sets the allowed category ids; ``None`` skips that
    check. ``bounds`` defaults to :class:`Bounds()`. ``purpose`` (default: evaluation, which
    needs no class) names the classes that need boxes and overrides the per-class bounds.
    """
    import great_expectations as gx

    return gx.ExpectationSuite(name=suite_name(table),
                               expectations=build_expectations(table, label_map, bounds, purpose))
