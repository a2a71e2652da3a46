"""DeploySpec: the one record every deploy step reads; it must survive XCom and the pod's command line."""

from __future__ import annotations

import json

import pytest

from detectops.deploy.spec import DeploySpec, Resources
from detectops.errors import DeployError

IMAGE = "127.0.0.1:5000/detectops/detector@sha256:" + "cd" * 32


def test_round_trips_through_json_and_fills_defaults() -> None:
    spec = DeploySpec(model_name="shapes", model_version=3, image=IMAGE, namespace="prod", replicas=2,
                      env={"DETECTOPS_MAX_QUEUE": 8}, resources={"cpu_limit": "1"})
    assert spec.model_version == "3" and spec.service == "detector" == spec.deployment
    assert spec.env == {"DETECTOPS_MAX_QUEUE": "8"} and spec.resources == Resources(cpu_limit="1")
    data = json.loads(json.dumps(spec.to_dict()))  # what XCom stores
    assert DeploySpec.from_dict(data) == spec
    assert DeploySpec.from_json(spec.to_json()) == spec
    assert spec.image_digest == "sha256:" + "cd" * 32


def test_container_env_sets_the_threshold_and_lets_env_override() -> None:
    spec = DeploySpec(model_name="m", model_version="1", image=IMAGE, score_threshold=0.45)
    assert spec.container_env() == {"DETECTOPS_MIN_SCORE": "0.45"}
    assert spec.with_changes(env={"DETECTOPS_MIN_SCORE": "0.5"}).container_env()["DETECTOPS_MIN_SCORE"] == "0.5"


@pytest.mark.parametrize("change, message", [
    ({"image": "127.0.0.1:5000/detectops/detector:latest"}, "not pinned by digest"),
    ({"track": "blue"}, "track must be one of stable, canary"),
    ({"namespace": "Prod"}, "not a valid Kubernetes name"),
    ({"deployment": "a" * 64}, "not a valid Kubernetes name"),
    ({"replicas": -1}, "replicas must be"),
    ({"score_threshold": 1.5}, "score_threshold must be within"),
    ({"model_version": ""}, "model_version is empty"),
    ({"resources": {"memory_limit": "lots"}}, "not a Kubernetes quantity"),
])
def test_bad_values_are_refused_with_what_to_do(change, message) -> None:
    with pytest.raises(DeployError, match=message):
        DeploySpec(**{"model_name": "m", "model_version": "1", "image": IMAGE, **change})


def test_unknown_or_missing_fields_are_errors_not_silently_dropped() -> None:
    with pytest.raises(DeployError, match="unknown deploy spec field.*replica\\b"):
        DeploySpec.from_dict({"model_name": "m", "model_version": "1", "image": IMAGE, "replica": 2})
    with pytest.raises(DeployError, match="image"):
        DeploySpec.from_dict({"model_name": "m", "model_version": "1"})
    with pytest.raises(DeployError, match="JSON object"):
        DeploySpec.from_dict(["m"])
