"""Kubernetes API access: configuration and idempotent create-or-replace of manifests."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from detectops.errors import DeployError, ServiceUnavailableError

log_ = logging.getLogger(__name__)


@dataclass
class Kube:
    """The typed API groups detectops.deploy uses, from one ApiClient."""

    api_client: Any
    core: Any
    apps: Any
    rbac: Any
    coordination: Any = None  # Leases (detectops.deploy.lock)


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """In-cluster config inside a pod (service account), else ``kubeconfig`` / ``$KUBECONFIG``."""
    from kubernetes import client, config

    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
        else:
            config.load_kube_config(config_file=kubeconfig, context=context)
    except Exception as exc:
        raise ServiceUnavailableError(
            f"no Kubernetes configuration ({exc}). Inside a pod it comes from the service account; "
            "outside, export KUBECONFIG (`. .state/infra/env.sh` after scripts/infra/up.sh)."
        ) from exc
    api = client.ApiClient()
    return Kube(api_client=api, core=client.CoreV1Api(api), apps=client.AppsV1Api(api),
                rbac=client.RbacAuthorizationV1Api(api), coordination=client.CoordinationV1Api(api))


def api_error_message(exc: Exception) -> str:
    """The API server's own message from an ApiException body, else str(exc)."""
    import json

    body = getattr(exc, "body", None)
    if body:
        try:
            return json.loads(body).get("message", str(exc))
        except (ValueError, AttributeError):
            pass
    return str(exc)


def _ops(kube: Kube, kind: str) -> tuple[Callable, Callable, Callable, bool]:
    """(read, create, replace, namespaced) for a kind."""
    table = {
        "Namespace": (kube.core.read_namespace, kube.core.create_namespace, kube.core.replace_namespace, False),
        "ServiceAccount": (kube.core.read_namespaced_service_account, kube.core.create_namespaced_service_account,
                           kube.core.replace_namespaced_service_account, True),
        "Service": (kube.core.read_namespaced_service, kube.core.create_namespaced_service,
                    kube.core.replace_namespaced_service, True),
        "Deployment": (kube.apps.read_namespaced_deployment, kube.apps.create_namespaced_deployment,
                       kube.apps.replace_namespaced_deployment, True),
        "Role": (kube.rbac.read_namespaced_role, kube.rbac.create_namespaced_role,
                 kube.rbac.replace_namespaced_role, True),
        "RoleBinding": (kube.rbac.read_namespaced_role_binding, kube.rbac.create_namespaced_role_binding,
                        kube.rbac.replace_namespaced_role_binding, True),
    }
    if kind not in table:
        raise DeployError(f"detectops.deploy does not know how to apply a {kind}")
    return table[kind]


def apply(kube: Kube, obj: dict[str, Any]) -> Any:
    """Create ``obj``, or replace the live object with it (keeping what the server owns).

    Replace rather than patch: a field removed from the manifest (an env var, a probe) is then
    removed from the cluster too. Kept from the live object: ``resourceVersion`` (optimistic
    concurrency), a Service's ``clusterIP`` (immutable) and its ``nodePort``s (a replace without
    them would allocate new ones: clients of the old port would lose the service). Returns the API's object.
    """
    from kubernetes.client.rest import ApiException

    kind = obj["kind"]
    meta = obj["metadata"]
    read, create, replace, namespaced = _ops(kube, kind)
    where = dict(namespace=meta["namespace"]) if namespaced else {}
    try:
        try:
            live = read(meta["name"], **where)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return create(body=obj, **where)
        if kind == "Namespace":
            return live  # nothing in it we manage beyond its existence
        body = dict(obj)
        body["metadata"] = dict(meta, resourceVersion=live.metadata.resource_version)
        if kind == "Service":
            body["spec"] = dict(obj["spec"], clusterIP=live.spec.cluster_ip, ports=_keep_node_ports(obj, live))
        return replace(meta["name"], body=body, **where)
    except ApiException as exc:
        raise DeployError(
            f"could not apply {kind} {meta.get('namespace', '')}/{meta['name']}: HTTP {exc.status} "
            f"{api_error_message(exc)}"
            + (" — the deployer's ServiceAccount lacks this permission (see include/k8s/serving/rbac.yaml)."
               if exc.status == 403 else "")
        ) from exc


def _keep_node_ports(obj: dict[str, Any], live: Any) -> list[dict[str, Any]]:
    """The manifest's Service ports, each with the live port's nodePort unless the manifest sets one."""
    live_ports = {p.name: p.node_port for p in live.spec.ports or [] if p.node_port}
    ports = []
    for port in obj["spec"].get("ports", []):
        port = dict(port)
        if not port.get("nodePort") and port.get("name") in live_ports and obj["spec"].get("type") == "NodePort":
            port["nodePort"] = live_ports[port["name"]]
        ports.append(port)
    return ports


def apply_all(kube: Kube, objs: Iterable[dict[str, Any]]) -> list[Any]:
    return [apply(kube, obj) for obj in objs]
