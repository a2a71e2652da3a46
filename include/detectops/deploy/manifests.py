"""Kubernetes manifests for the detector service, rendered from ``include/k8s/serving/*.yaml``.

The YAML files are the readable source of truth (``kubectl apply``-able once the ``${field}``
fields are filled); this module only substitutes scalars and adds lists (extra env) in Python,
so no templating language is needed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any

from detectops import settings
from detectops.deploy.spec import DEFAULT_PORT, DeploySpec
from detectops.deploy.spec import check_name as _check_name
from detectops.errors import DeployError

TEMPLATE_DIR = settings.INCLUDE_DIR / "k8s" / "serving"


def render(template: str, values: Mapping[str, Any], template_dir: Path | None = None) -> list[dict[str, Any]]:
    """Fill ``${field}`` in ``<template_dir>/<template>`` and parse every YAML document in it."""
    import yaml

    path = Path(template_dir or TEMPLATE_DIR) / template
    text = path.read_text()
    try:
        filled = Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise DeployError(f"{path} needs a value for {exc.args[0]!r}") from exc
    return [doc for doc in yaml.safe_load_all(filled) if doc]


def image_digest_of(image: str) -> str:
    """``repo@sha256:...`` -> ``sha256:...``; a tag-only reference has no digest (``""``)."""
    return image.split("@", 1)[1] if "@" in image else ""


#: Annotation of a serving Deployment holding its ``DeploySpec`` as JSON.
SPEC_ANNOTATION = "detectops.io/spec"


def serving_manifests(spec: DeploySpec, *, progress_deadline_s: int = 300) -> tuple[dict[str, Any], dict[str, Any]]:
    """The serving (Deployment, Service) of ``spec``."""
    r = spec.resources
    values = dict(
        image=spec.image, namespace=spec.namespace, name=spec.deployment, service=spec.service, track=spec.track,
        replicas=spec.replicas, model_name=spec.model_name, model_version=spec.model_version,
        serving_name=spec.serving_name, port=spec.port, image_digest=image_digest_of(spec.image),
        cpu_request=r.cpu_request, cpu_limit=r.cpu_limit, memory_request=r.memory_request,
        memory_limit=r.memory_limit, progress_deadline_s=progress_deadline_s,
    )
    (deployment,) = render("deployment.yaml", values)
    (service,) = render("service.yaml", values)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    known = {e["name"]: e for e in container["env"]}
    for key, value in spec.container_env().items():
        known[key] = {"name": key, "value": str(value)}
    container["env"] = list(known.values())
    # The whole spec on the Deployment (not on its pods: changing it must not restart them), so a
    # canary or a promotion can start from exactly what serves (``detectops.cicd.steps.stable_spec``).
    deployment["metadata"].setdefault("annotations", {})[SPEC_ANNOTATION] = spec.to_json()
    return deployment, service


def namespace_manifest(namespace: str) -> dict[str, Any]:
    _check_name("namespace", namespace)
    (ns,) = render("namespace.yaml", {"namespace": namespace})
    return ns


def rbac_manifests(namespace: str) -> list[dict[str, Any]]:
    """ServiceAccount ``detectops-deployer`` + Role + RoleBinding, limited to ``namespace``."""
    _check_name("namespace", namespace)
    return render("rbac.yaml", {"namespace": namespace})


def deployer_pod_manifest(*, deployer_image: str, spec: DeploySpec) -> dict[str, Any]:
    """A pod running ``detectops deploy --spec JSON`` as ``detectops-deployer`` in ``spec.namespace``."""
    (pod,) = render("deployer-pod.yaml", dict(deployer_image=deployer_image, namespace=spec.namespace))
    pod["spec"]["containers"][0]["args"] = deployer_args(spec)
    return pod


def deployer_args(spec: DeploySpec, *, xcom_file: str | None = None) -> list[str]:
    """The image entrypoint's arguments that deploy ``spec`` (the spec travels as one JSON argument)."""
    args = ["deploy", "--spec", spec.to_json()]
    return args + ["--xcom-file", xcom_file] if xcom_file else args


def pod_template_without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    """A ReplicaSet's pod template as a Deployment template (the controller adds pod-template-hash)."""
    template = copy.deepcopy(dict(template))
    labels = template.get("metadata", {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    return template
