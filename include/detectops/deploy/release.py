"""The release decision after a deploy: promote the version, or reject it and say why.

Plain functions (no Airflow) for the last steps of ``detectops.dagkit.deploy_group``:

- ``verdict_of(deployed)``: the deployer's result -> why the version failed, or ``None``.
- ``promote_version``: move the alias (``champion``) to the version, the old one to ``previous``.
- ``reject_version``: put the cluster back on what served before (if the new version is still
  serving) and record the reason on the version; the alias is not touched.

Both check first that the caller still holds the model's deploy lock (``detectops.deploy.lock``):
a change is made only by the one run allowed to make it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from detectops.deploy.spec import DeploySpec

log_ = logging.getLogger(__name__)


def verdict_of(deployed: Mapping[str, Any] | None) -> str | None:
    """Why the deployer rolled the version back (its ``--record-rollback`` result), else ``None``."""
    if deployed and deployed.get("rolled_back"):
        return f"deploy rolled back ({deployed.get('reason')}): {deployed.get('message')}"
    return None


def _fence(kube: Any, spec: DeploySpec, holder: str | None) -> None:
    if holder:
        from detectops.deploy.lock import renew

        renew(kube, spec.model_name, holder)


def promote_version(
    spec: DeploySpec | Mapping[str, Any], *, alias: str, previous_alias: str = "previous",
    tracking_uri: str | None, kube_config: str | None = None, holder: str | None = None,
) -> dict[str, Any]:
    """Move ``alias`` to the deployed, smoke-tested version (``detectops.registry.promote``)."""
    from detectops import registry
    from detectops.deploy.kube import connect

    spec = DeploySpec.from_dict(spec)
    _fence(connect(kube_config) if holder else None, spec, holder)
    result = registry.promote(spec.model_name, spec.model_version, alias=alias, previous_alias=previous_alias,
                              tracking_uri=tracking_uri)
    return {"model_name": spec.model_name, "model_version": spec.model_version, "alias": alias,
            "previous_alias": previous_alias, "registry": _plain(result)}


def reject_version(
    spec: DeploySpec | Mapping[str, Any], reason: str, *, deployed: Mapping[str, Any] | None, stage: str,
    tracking_uri: str | None, kube_config: str | None = None, holder: str | None = None,
    log: Callable[[str], None] = log_.info,
) -> dict[str, Any]:
    """Serve what served before, and record ``reason`` on the version (``detectops.registry.reject``).

    The deployer already rolled back a failed rollout or in-cluster smoke test; a version that
    failed later (the smoke test from outside) still serves, so it is rolled back here to the
    revision the deployer replaced. The alias stays where it is.
    """
    from detectops import registry
    from detectops.deploy import undo
    from detectops.deploy.kube import connect

    spec = DeploySpec.from_dict(spec)
    kube = connect(kube_config)
    _fence(kube, spec, holder)
    serving = None
    if deployed and not deployed.get("rolled_back"):
        back = undo(spec, deployed.get("previous_revision"), kube=kube, log=log)
        serving = back.image if back else None
    elif deployed:
        serving = deployed.get("serving_image")
    registry.reject(spec.model_name, spec.model_version, reason, stage=stage, tracking_uri=tracking_uri)
    log(f"{spec.model_name} version {spec.model_version} rejected at {stage}: {reason}")
    return {"model_name": spec.model_name, "model_version": spec.model_version, "stage": stage,
            "reason": reason, "serving_image": serving}


def _plain(value: Any) -> Any:
    """An XCom-safe form of whatever the registry returned."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    import dataclasses

    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)
