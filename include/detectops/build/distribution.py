"""The registry's own HTTP API (Docker Registry HTTP API V2 / CNCF distribution).

Used to verify a push independently of the Docker daemon: the digest the daemon reported must be
the digest the registry serves for that tag. Handles plain HTTP for loopback registries, basic
auth, and the bearer-token challenge of registries like Docker Hub / Harbor.
"""

from __future__ import annotations

import re

from detectops.errors import ServiceUnavailableError

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


def registry_base_url(registry: str) -> str:
    """``host:port`` -> URL; loopback registries speak plain HTTP (as Docker allows), others HTTPS."""
    if registry.startswith(("http://", "https://")):
        return registry.rstrip("/")
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    insecure = host in ("localhost", "::1") or host.startswith("127.")
    return f"{'http' if insecure else 'https'}://{registry}"


def _bearer_token(challenge: str, auth: tuple[str, str] | None, session) -> str | None:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", None)
    if not realm:
        return None
    resp = session.get(realm, params=params, auth=auth, timeout=30)
    resp.raise_for_status()
    body = resp.json()
    return body.get("token") or body.get("access_token")


def _request(registry: str, method: str, path: str, *, accept: str, auth: tuple[str, str] | None, timeout: float):
    """One request to the registry's API, answering a bearer-token challenge if there is one."""
    import requests

    url = f"{registry_base_url(registry)}/v2/{path}"
    headers = {"Accept": accept}
    with requests.Session() as session:
        try:
            resp = session.request(method, url, headers=headers, auth=auth, timeout=timeout)
            challenge = resp.headers.get("WWW-Authenticate", "")
            if resp.status_code == 401 and challenge.lower().startswith("bearer"):
                token = _bearer_token(challenge, auth, session)
                headers["Authorization"] = f"Bearer {token}"
                resp = session.request(method, url, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            raise ServiceUnavailableError(
                f"the registry at {registry} did not answer ({exc}); is it running and is "
                "DETECTOPS_REGISTRY / the registry connection right?"
            ) from exc
    if resp.status_code in (401, 403):
        raise ServiceUnavailableError(
            f"the registry at {registry} refused access to {path} (HTTP {resp.status_code}): "
            "check the registry credentials in the Airflow connection."
        )
    return resp


def manifest_digest(
    registry: str, repository: str, reference: str, *, auth: tuple[str, str] | None = None, timeout: float = 30
) -> str | None:
    """``Docker-Content-Digest`` of ``repository:reference`` in the registry; ``None`` if it has none.

    ``repository`` is the name inside the registry (``detectops/detector``, no host).
    """
    resp = _request(registry, "HEAD", f"{repository}/manifests/{reference}", accept=MANIFEST_TYPES, auth=auth,
                    timeout=timeout)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return resp.headers.get("Docker-Content-Digest")


def image_labels(
    registry: str, repository: str, reference: str, *, auth: tuple[str, str] | None = None, timeout: float = 30
) -> dict[str, str] | None:
    """The labels of the image ``repository:reference`` in the registry (its config blob); ``None`` if absent.

    A multi-platform index has no single config: its labels are reported as empty.
    """
    resp = _request(registry, "GET", f"{repository}/manifests/{reference}", accept=MANIFEST_TYPES, auth=auth,
                    timeout=timeout)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    config = (resp.json().get("config") or {}).get("digest")
    if not config:
        return {}
    blob = _request(registry, "GET", f"{repository}/blobs/{config}", accept="*/*", auth=auth, timeout=timeout)
    blob.raise_for_status()
    return dict((blob.json().get("config") or {}).get("Labels") or {})
