"""One change at a time per registered model: a Kubernetes Lease held by the DAG run that deploys.

Why a Lease and not an Airflow pool: a pool is fixed when the DAG is parsed, so it cannot be
"one slot per model" when the model is a Param, and a pool slot covers one task, not the
sequence deploy -> smoke test -> promote (another run's deploy could slip in between). A Lease
per model (``coordination.k8s.io/v1``, written with the API server's optimistic concurrency:
create fails if it exists, replace fails if the resourceVersion moved) is an atomic
compare-and-set that every DAG and the CLI can share, whatever the namespace they deploy to.
If a holder dies without releasing, the Lease expires after ``lease_s`` and the next one may
take it; a holder that lost its Lease is told so (``LockLost``) before it moves an alias.

The Leases live in ``LOCK_NAMESPACE`` (created on first use, admin credentials), one per
registered model, named from the model's name (``lease_name``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from detectops.deploy.kube import Kube, api_error_message, apply
from detectops.deploy.manifests import namespace_manifest
from detectops.errors import DeployError

log_ = logging.getLogger(__name__)

LOCK_NAMESPACE = "detectops-system"
#: How long a Lease outlives its last renewal: longer than a deploy's slowest step (rollout
#: timeout + smoke test), short enough that a crashed run does not block the model for long.
DEFAULT_LEASE_S = 1800


class LockLost(DeployError):
    """This holder does not hold the model's Lease (it expired and someone else took it)."""


@dataclass(frozen=True)
class LockStatus:
    """The Lease as read: who holds it and until when (``holder`` None: free)."""

    model_name: str
    lease: str
    holder: str | None
    expires_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "lease": self.lease, "holder": self.holder,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}


def lease_name(model_name: str) -> str:
    """A valid, stable Lease name for any registered model name (a slug plus a hash: no collisions)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")[:40].strip("-") or "model"
    return f"deploy-{slug}-{hashlib.sha256(model_name.encode()).hexdigest()[:8]}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _expires_at(lease: Any) -> datetime | None:
    spec = lease.spec
    last = spec.renew_time or spec.acquire_time
    if last is None or not spec.lease_duration_seconds:
        return None
    return last + timedelta(seconds=spec.lease_duration_seconds)


def _body(name: str, model_name: str, holder: str, lease_s: int, acquired: datetime, now: datetime,
          namespace: str, resource_version: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace,
                            "labels": {"app.kubernetes.io/part-of": "detectops"},
                            "annotations": {"detectops.io/model-name": model_name}}
    if resource_version:
        meta["resourceVersion"] = resource_version
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"  # MicroTime
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": int(lease_s),
                     "acquireTime": acquired.strftime(fmt), "renewTime": now.strftime(fmt)}}


def status(kube: Kube, model_name: str, *, namespace: str = LOCK_NAMESPACE) -> LockStatus:
    """Who holds the model's Lease now (an expired Lease counts as free)."""
    from kubernetes.client.rest import ApiException

    name = lease_name(model_name)
    try:
        lease = kube.coordination.read_namespaced_lease(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return LockStatus(model_name, name, None, None)
        raise DeployError(f"cannot read Lease {namespace}/{name}: {api_error_message(exc)}") from exc
    expires = _expires_at(lease)
    holder = lease.spec.holder_identity or None
    if holder and expires is not None and expires <= _now():
        holder = None
    return LockStatus(model_name, name, holder, expires)


def try_acquire(kube: Kube, model_name: str, holder: str, *, lease_s: int = DEFAULT_LEASE_S,
                namespace: str = LOCK_NAMESPACE) -> LockStatus:
    """Take (or renew) the model's Lease for ``holder`` if it is free, expired or already ours.

    Returns the Lease's status afterwards: ``status.holder == holder`` means acquired. Never
    waits: callers poll (a reschedule-mode sensor in the DAGs).
    """
    from kubernetes.client.rest import ApiException

    name = lease_name(model_name)
    now = _now()
    try:
        try:
            lease = kube.coordination.read_namespaced_lease(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            apply(kube, namespace_manifest(namespace))
            try:
                kube.coordination.create_namespaced_lease(
                    namespace, _body(name, model_name, holder, lease_s, now, now, namespace))
            except ApiException as race:
                if race.status != 409:  # 409: another holder created it first
                    raise
                return status(kube, model_name, namespace=namespace)
            return LockStatus(model_name, name, holder, now + timedelta(seconds=lease_s))
        current = lease.spec.holder_identity or None
        expires = _expires_at(lease)
        if current and current != holder and expires is not None and expires > now:
            return LockStatus(model_name, name, current, expires)
        acquired = lease.spec.acquire_time if current == holder and lease.spec.acquire_time else now
        try:
            kube.coordination.replace_namespaced_lease(
                name, namespace,
                _body(name, model_name, holder, lease_s, acquired, now, namespace, lease.metadata.resource_version))
        except ApiException as race:
            if race.status != 409:  # 409: someone else wrote it since we read it
                raise
            return status(kube, model_name, namespace=namespace)
        return LockStatus(model_name, name, holder, now + timedelta(seconds=lease_s))
    except ApiException as exc:
        raise DeployError(f"cannot take Lease {namespace}/{name} for {model_name!r}: HTTP {exc.status} "
                          f"{api_error_message(exc)}") from exc


def renew(kube: Kube, model_name: str, holder: str, *, lease_s: int = DEFAULT_LEASE_S,
          namespace: str = LOCK_NAMESPACE) -> LockStatus:
    """Extend ``holder``'s Lease; raise ``LockLost`` if it is someone else's now (fencing before a change)."""
    now_held = try_acquire(kube, model_name, holder, lease_s=lease_s, namespace=namespace)
    if now_held.holder != holder:
        raise LockLost(
            f"{holder} no longer holds the deploy lock of model {model_name!r} (Lease {namespace}/{now_held.lease} "
            f"is held by {now_held.holder}): its Lease expired while it worked. Nothing was changed; "
            "trigger the run again.")
    return now_held


def release(kube: Kube, model_name: str, holder: str, *, namespace: str = LOCK_NAMESPACE) -> bool:
    """Delete the Lease if ``holder`` holds it (never someone else's); True if released."""
    from kubernetes.client import V1DeleteOptions, V1Preconditions
    from kubernetes.client.rest import ApiException

    name = lease_name(model_name)
    try:
        lease = kube.coordination.read_namespaced_lease(name, namespace)
        if lease.spec.holder_identity != holder:
            return False
        kube.coordination.delete_namespaced_lease(
            name, namespace,
            body=V1DeleteOptions(preconditions=V1Preconditions(resource_version=lease.metadata.resource_version)))
    except ApiException as exc:
        if exc.status in (404, 409):  # gone already, or changed hands since we read it
            return False
        raise DeployError(f"cannot release Lease {namespace}/{name}: {api_error_message(exc)}") from exc
    return True
