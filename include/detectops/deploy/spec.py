"""``DeploySpec``: what to run where, in one small typed record.

Every DAG deploys through the same path (``detectops.dagkit.deploy_group``), and every step of
that path (manifests, rollout, smoke test, promotion, the lock) reads this one record instead
of a long parameter list. It crosses XCom and the deployer pod's command line as a plain dict
(``to_dict`` / ``from_dict`` / ``to_json``), and is checked when it is built, so a bad value
fails in the first task with a message, not in the middle of a rollout.

    spec = DeploySpec(model_name="detector", model_version="7",
                      image="127.0.0.1:5000/detectops/detector@sha256:...", namespace="detectops")
    detectops deploy --spec "$(python -c 'print(spec.to_json())')"
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from detectops.errors import DeployError

TRACKS = ("stable", "canary")
DEFAULT_PORT = 8080
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


def check_name(kind: str, value: str) -> None:
    """Raise ``DeployError`` unless ``value`` is a valid Kubernetes object name (DNS label)."""
    if not isinstance(value, str) or not _DNS_LABEL.match(value):
        raise DeployError(
            f"{kind} {value!r} is not a valid Kubernetes name: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters."
        )


@dataclass(frozen=True)
class Resources:
    """Requests and limits of the serving container (Kubernetes quantities)."""

    cpu_request: str = "250m"
    cpu_limit: str = "2"
    memory_request: str = "512Mi"
    memory_limit: str = "2Gi"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str) or not _QUANTITY.match(value):
                raise DeployError(f"resources.{f.name} {value!r} is not a Kubernetes quantity (e.g. 500m, 1, 512Mi)")


@dataclass(frozen=True)
class DeploySpec:
    """One model version to serve: which image, where, how many, and what counts as healthy.

    - ``model_name`` / ``model_version``: the registered model version (MLflow); recorded on the
      Deployment, and the version the promotion moves the alias to.
    - ``image``: the serving image, pinned by digest (``repo@sha256:...``): tags are mutable.
    - ``namespace``, ``deployment``, ``service``: where it runs. ``service`` defaults to
      ``deployment``; a canary's Deployment shares the stable track's Service.
    - ``track``: ``stable`` or ``canary`` (a pod label; the Service selects both tracks).
    - ``replicas``, ``resources``, ``env`` (extra container environment), ``score_threshold``
      (the service's ``DETECTOPS_MIN_SCORE``).
    - ``serving_name``: the TF-Serving model name in the URL (``/v1/models/<serving_name>:predict``).
    - ``expect_label`` / ``min_detections``: what the smoke photo (the astronaut) must yield.
    - ``rollout_timeout_s``: how long a rollout may take before it is rolled back.
    """

    model_name: str
    model_version: str
    image: str
    namespace: str = "detectops"
    deployment: str = "detector"
    service: str = ""
    track: str = "stable"
    replicas: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    score_threshold: float = 0.3
    resources: Resources = field(default_factory=Resources)
    serving_name: str = "detector"
    port: int = DEFAULT_PORT
    expect_label: str | None = None
    min_detections: int = 1
    rollout_timeout_s: float = 300

    def __post_init__(self) -> None:
        # Normalise what JSON and Airflow Params hand over (numbers as str, dicts for records).
        object.__setattr__(self, "model_version", str(self.model_version))
        object.__setattr__(self, "service", self.service or self.deployment)
        object.__setattr__(self, "env", {str(k): str(v) for k, v in dict(self.env or {}).items()})
        if isinstance(self.resources, Mapping):
            object.__setattr__(self, "resources", Resources(**self.resources))
        check_name("namespace", self.namespace)
        check_name("deployment name", self.deployment)
        check_name("service name", self.service)
        problems = []
        if not self.model_name:
            problems.append("model_name is empty")
        if not self.model_version:
            problems.append("model_version is empty")
        if "@sha256:" not in self.image:
            problems.append(f"image {self.image!r} is not pinned by digest (repo@sha256:...): tags can move, "
                            "digests cannot. Deploy the digest that detectops build printed")
        if self.track not in TRACKS:
            problems.append(f"track must be one of {', '.join(TRACKS)} (got {self.track!r})")
        if not isinstance(self.replicas, int) or self.replicas < 0:
            problems.append(f"replicas must be an integer >= 0 (got {self.replicas!r})")
        if not 0 <= float(self.score_threshold) <= 1:
            problems.append(f"score_threshold must be within [0, 1] (got {self.score_threshold})")
        if not self.serving_name or "/" in self.serving_name or ":" in self.serving_name:
            problems.append(f"serving_name {self.serving_name!r} must be non-empty without '/' or ':'")
        if self.min_detections < 0 or self.rollout_timeout_s <= 0:
            problems.append("min_detections must be >= 0 and rollout_timeout_s > 0")
        if problems:
            raise DeployError("invalid deploy spec: " + "; ".join(problems) + ".")

    @property
    def image_digest(self) -> str:
        """``sha256:...`` of ``image``."""
        return self.image.split("@", 1)[1]

    def container_env(self) -> dict[str, str]:
        """Environment added to the template's (port, serving name): the threshold, then ``env`` on top.

        The model version is not set here: the image carries it (``DETECTOPS_MODEL_VERSION``).
        """
        return {"DETECTOPS_MIN_SCORE": str(self.score_threshold), **self.env}

    def with_changes(self, **changes: Any) -> DeploySpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["env"] = dict(self.env)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeploySpec:
        """Build from a dict (XCom, JSON); unknown keys are an error, not silently dropped."""
        if isinstance(data, DeploySpec):
            return data
        if not isinstance(data, Mapping):
            raise DeployError(f"a deploy spec is a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DeployError(f"unknown deploy spec field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**dict(data))
        except TypeError as exc:  # a required field is missing
            raise DeployError(f"invalid deploy spec: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> DeploySpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DeployError(f"--spec is not valid JSON ({exc}): pass the spec as one JSON object") from exc
        return cls.from_dict(data)
