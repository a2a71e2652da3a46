"""The Params form of the level-1 DAG (parse-time light: no heavy imports)."""

from __future__ import annotations

import json
import os
from typing import Any

#: JSON object of Param defaults to override, read when the DAG file is parsed. For an
#: environment whose scheduled and Asset-triggered runs (which have no form) need other
#: defaults, e.g. a test Airflow that trains the tiny configuration.
DEFAULTS_ENV = "DETECTOPS_LEVEL1_DEFAULTS"

#: The demo's own model: the synthetic shapes (``detectops.data.synthetic.SHAPES``), beside level 0's COCO detector.
DEFAULT_MODEL = "shapes-detector"
DEFAULT_LABEL_MAP = {"1": "circle", "2": "square", "3": "triangle", "4": "cross", "5": "ring", "6": "diamond"}


def level1_params(Param: Any) -> dict[str, Any]:
    """``Param`` is ``airflow.sdk.Param`` (passed in so this module imports nothing from Airflow)."""
    return with_env_defaults(_params(Param), Param, DEFAULTS_ENV)


def with_env_defaults(params: dict[str, Any], Param: Any, env_var: str) -> dict[str, Any]:
    """``params`` with the defaults the JSON object in ``env_var`` overrides (unknown names are an error)."""
    overrides = json.loads(os.environ.get(env_var) or "{}")
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ValueError(f"{env_var} names unknown Params {unknown}; known: {sorted(params)}")
    for name, value in overrides.items():
        params[name] = Param(value, **params[name].schema)
    return params


def _params(Param: Any) -> dict[str, Any]:
    return {
        "model_name": Param(DEFAULT_MODEL, type="string", title="Registered model name",
                            description="The model this pipeline trains; events for other models are ignored."),
        "label_map": Param(DEFAULT_LABEL_MAP, type="object", title="Label map",
                           description="{category id: name}. A batch with another class is rejected: a new class means a new model."),
        "namespace": Param("detectops-shapes", type="string", title="Kubernetes namespace of the model's service"),
        "deployment": Param("shapes-detector", type="string", title="Deployment (and Service) name"),
        "champion_alias": Param("champion", type="string", title="Alias that serves: the gate's baseline and the warm start"),
        "promote_alias": Param("", type="string", title="Alias a deployed candidate takes (empty: the champion alias)",
                               description="Moves only after the smoke test. Level 2's staging runs set `staging`."),
        "candidate_alias": Param("challenger", type="string", title="Alias of a candidate that passed the gate"),
        "previous_alias": Param("previous", type="string", title="Alias the replaced champion keeps, for rollback"),
        "train_config": Param("demo", type="string", title="Training configuration",
                              description="demo (about 5 minutes on 2 cores, a step budget that stays flat as the data grows), tiny (seconds, for tests) or a JSON object"),
        "pipeline_image": Param("", type="string", title="Pipeline image (empty: the Variable, else this code's image)"),
        "warm_start": Param(True, type="boolean", title="Warm-start from the champion when it can be",
                            description="Only from a champion this pipeline trained with the same label map and network shape."),
        "ingest_new_batches": Param(True, type="boolean", title="Ingest landed batches",
                                    description="False: leave the landing area alone and train on the current dataset version (level 2's staging runs)."),
        "retrain_unchanged": Param(False, type="boolean", title="Retrain even if the data did not change"),
        # 0.9: a new domain (darker photos, smaller objects) measures 0.6-0.85 and should be
        # trained on; above 0.9 the distributions barely overlap, which is more often a broken
        # export (wrong units, wrong images) than a new domain.
        "max_skew": Param(0.9, type="number", minimum=0, maximum=1, title="Skew that stops the run",
                          description="Largest L-inf / Jensen-Shannon distance of a batch to the current version before the run stops."),
        # Both models are scored on the same stratified sample of the test split (every batch keeps
        # its share): evaluation time stays flat as the dataset grows (detectops.data.sampling).
        "eval_max_images": Param(400, type="integer", minimum=0, title="Evaluate on at most this many test images (0: all)"),
        "map_margin": Param(0.0, type="number", minimum=-1, maximum=1, title="Gate: candidate AP >= champion AP + margin"),
        "max_class_ap_drop": Param(0.1, type="number", minimum=0, maximum=1, title="Gate: largest per-class AP drop"),
        "max_slice_ap_drop": Param(0.1, type="number", minimum=0, maximum=1, title="Gate: largest per-slice AP drop"),
        "p95_latency_ms_budget": Param(500.0, type="number", minimum=1, title="Gate: p95 latency budget (ms)"),
        "min_ap": Param(0.2, type="number", minimum=0, maximum=1, title="Gate without a champion: minimum AP"),
        "min_ap50": Param(0.4, type="number", minimum=0, maximum=1, title="Gate without a champion: minimum AP50"),
        "score_threshold": Param(0.3, type="number", minimum=0, maximum=1, title="Serving score threshold"),
        "replicas": Param(1, type="integer", minimum=1, maximum=4, title="Serving replicas"),
    }
