"""Recognise a training run that would only repeat one the gate already rejected.

Training is seeded, so the same dataset version, trained the same way in the same code and
judged against the same champion by the same gate, gives the same candidate and the same
verdict. Without this check a rejected candidate was trained again on every cron tick for as
long as the champion's data stayed older than the newest version: minutes of compute a day
for a known answer.

An *attempt* is identified by tags on the candidate's model version (``identity``): the
dataset version, the recipe (training configuration, warm start, label map, evaluation
sample, gate thresholds: one hash), the champion it was judged against, and the code it
trained in (the pinned pipeline image, or this code's version when the image is built from
it). Any change there (new labelled data, another configuration or threshold, a new
champion, new code) makes a new attempt. ``retrain_unchanged`` trains regardless.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

RECIPE_TAG = "detectops.recipe_sha256"
JUDGED_AGAINST_TAG = "detectops.judged_against"  # the champion version the gate compared with ("" for none)
PIPELINE_PIN_TAG = "detectops.pipeline_pin"  # the pinned pipeline image (Param or Variable), "" when built from the code
#: Params that change what is trained or how it is judged (the gate's thresholds are added).
RECIPE_PARAMS = ("train_config", "warm_start", "label_map", "eval_max_images")


def recipe_sha256(params: Mapping[str, Any]) -> str:
    """One hash of everything in ``params`` that decides the candidate and its verdict."""
    from detectops.gate import GateThresholds

    def canonical(value: Any) -> Any:
        if isinstance(value, str):
            try:  # a JSON Param (train_config, label_map) given as text or as an object: the same recipe
                return json.loads(value)
            except ValueError:
                return value
        return value

    recipe = {name: canonical(params.get(name)) for name in RECIPE_PARAMS}
    recipe["gate"] = asdict(GateThresholds.from_params(params))
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def identity(*, dataset_sha256: str, params: Mapping[str, Any], champion_version: str | None,
             pipeline_image: str | None, code_version: str) -> dict[str, str]:
    """The tags that identify an attempt. ``pipeline_image``: the pinned image, or None when built from this code."""
    tags = {"dataset_sha256": dataset_sha256, RECIPE_TAG: recipe_sha256(params),
            JUDGED_AGAINST_TAG: str(champion_version or ""), PIPELINE_PIN_TAG: pipeline_image or ""}
    if not pipeline_image:  # built from the code that runs the DAG: that code is the identity
        tags["code_version"] = code_version
    return tags


def rejected_attempt(versions: Iterable[tuple[str, Mapping[str, str]]],
                     attempt: Mapping[str, str]) -> tuple[str, Mapping[str, str]] | None:
    """The newest ``(version, tags)`` the gate rejected whose tags match ``attempt``, if any.

    Only a gate rejection counts: a candidate that failed its smoke test or its canary, or was
    rolled back, says something about the rollout, not about training it again.
    """
    matches = [(version, tags) for version, tags in versions
               if tags.get("rejected_stage") == "gate" and all(tags.get(k) == v for k, v in attempt.items())]
    return max(matches, key=lambda m: int(m[0])) if matches else None


def find_rejected_attempt(model: str, attempt: Mapping[str, str], *,
                          tracking_uri: str) -> tuple[str, Mapping[str, str]] | None:
    """``rejected_attempt`` over the registered versions of ``model`` in MLflow."""
    from detectops.registry import all_version_tags

    return rejected_attempt(all_version_tags(model, tracking_uri=tracking_uri), attempt)


def skip_reason(model: str, version: str, tags: Mapping[str, str], dataset_sha256: str) -> str:
    """What the run's note says when it skips training."""
    reason = tags.get("rejected_reason") or "no reason recorded"
    when = tags.get("rejected_at", "")
    return (f"nothing to retrain: v{version}, trained on dataset version {dataset_sha256[:12]} in this code and "
            f"configuration against this champion, was rejected by the gate{' at ' + when if when else ''} ({reason}); "
            "training again would repeat it. Land new labelled data, change the configuration or the gate's "
            "thresholds, or set retrain_unchanged=true.")
