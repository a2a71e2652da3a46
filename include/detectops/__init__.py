"""DetectOps: the library behind the Airflow DAGs.

The package reads as the ML lifecycle, lower layers never importing higher ones:

    data -> quality -> models -> evaluate -> registry -> build -> deploy -> serve

Every stage is a plain function that takes references (paths, URIs) and returns a
small record (a dataclass) that can cross Airflow's XCom as a dict. Heavy libraries
(TensorFlow, Great Expectations, MLflow) are imported inside functions, so importing
``detectops`` itself is cheap.
"""

__version__ = "0.1.0"
