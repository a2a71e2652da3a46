"""Data quality: a COCO dataset as tables, Great Expectations suites, validation reports.

Importing this package is cheap; pandas and great_expectations load inside the functions.
"""

from detectops.quality.purpose import Purpose, resolve_purpose
from detectops.quality.suites import TABLES, Bounds, build_expectations, build_suite
from detectops.quality.tables import dataset_tables
from detectops.quality.validate import ValidationReport, validate_dataset

__all__ = ["Purpose", "resolve_purpose", "TABLES", "Bounds", "build_expectations", "build_suite", "dataset_tables",
           "ValidationReport", "validate_dataset"]
