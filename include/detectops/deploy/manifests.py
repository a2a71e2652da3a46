"""Kubernetes manifests for the detector service, rendered from ``include/k8s/serving/*.yaml``.

The YAML files are the readable source of truth (``kubectl apply``-able once the ``${field}``
fields are filled); this module only substitutes scalars and adds lists (extra env) in Python,
so no templating language is needed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any

from detectops import settings
from detectops.errors import DeployError

TEMPLATE_DIR = settings.INCLUDE_DIR / "k8s" / "serving"
DEFAULT_PORT = 8080
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _check_name(kind: str, value: str) -> None:
    if not _DNS_LABEL.match(value):
        raise DeployError(
            f"{kind} {value!r} is not a valid Kubernetes name: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters."
        )


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


def serving_manifests(
    *,
    image: str,
    namespace: str,
    name: str,
    replicas: int = 1,
    model_version: str = "",
    model_name: str = "detector",
    port: int = DEFAULT_PORT,
    env: Mapping[str, str] | None = None,
    cpu_request: str = "250m",
    cpu_limit: str = "2",
    memory_request: str = "512Mi",
    memory_limit: str = "2Gi",
    progress_deadline_s: int = 300,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The serving (Deployment, Service) for ``image``."""
    _check_name("namespace", namespace)
    _check_name("name", name)
    if replicas < 0:
        raise DeployError(f"replicas must be >= 0 (got {replicas})")
    values = dict(
        image=image, namespace=namespace, name=name, replicas=replicas, model_version=model_version,
        model_name=model_name, port=port, image_digest=image_digest_of(image), cpu_request=cpu_request,
        cpu_limit=cpu_limit, memory_request=memory_request, memory_limit=memory_limit,
        progress_deadline_s=progress_deadline_s,
    )
    (deployment,) = render("deployment.yaml", values)
    (service,) = render("service.yaml", values)
    if env:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        known = {e["name"]: e for e in container["env"]}
        for key, value in env.items():
            known[key] = {"name": key, "value": str(value)}
        container["env"] = list(known.values())
    return deployment, service


def namespace_manifest(namespace: str) -> dict[str, Any]:
    _check_name("namespace", namespace)
    (ns,) = render("namespace.yaml", {"namespace": namespace})
    return ns


def rbac_manifests(namespace: str) -> list[dict[str, Any]]:
    """ServiceAccount ``detectops-deployer`` + Role + RoleBinding, limited to ``namespace``."""
    _check_name("namespace", namespace)
    return render("rbac.yaml", {"namespace": namespace})


def deployer_pod_manifest(
    *, deployer_image: str, image: str, namespace: str, name: str, timeout_s: int = 300
) -> dict[str, Any]:
    """A pod running ``detectops deploy`` as ``detectops-deployer`` (the local cluster's variant)."""
    (pod,) = render("deployer-pod.yaml", dict(deployer_image=deployer_image, image=image,
                                              namespace=namespace, name=name, timeout_s=timeout_s))
    return pod


def pod_template_without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    """A ReplicaSet's pod template as a Deployment template (the controller adds pod-template-hash)."""
    template = copy.deepcopy(dict(template))
    labels = template.get("metadata", {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    return template
