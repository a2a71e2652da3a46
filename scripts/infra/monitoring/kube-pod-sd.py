#!/usr/bin/env python3
"""Pod discovery for Debian's Prometheus, which is built without ``kubernetes_sd_configs``
(Debian removed it for the Kubernetes client's dependencies).

Watches the apiserver's pods (list, then watch; relist on expiry or error) and writes them as a
Prometheus ``file_sd`` file, one target group per pod and declared container port, with the very
labels the ``kubernetes_sd_configs`` pod role gives (``__meta_kubernetes_namespace``,
``__meta_kubernetes_pod_name``, ``__meta_kubernetes_pod_ip``, ``__meta_kubernetes_pod_phase``,
``__meta_kubernetes_pod_label_<name>``, ``__meta_kubernetes_pod_annotation_<name>``,
``__meta_kubernetes_pod_container_port_number`` ...). So the ``relabel_configs`` in
include/monitoring/prometheus.yml are those of a pod-role job, and an upstream Prometheus can use
``kubernetes_sd_configs`` instead with the same relabelling.

Only pods with an IP inside ``--pod-cidr`` are written: nothing off this machine gets scraped.
Standard library only (it runs with the system's python3, before any virtualenv exists).

    kube-pod-sd.py --apiserver https://127.0.0.1:6443 --ca ca.crt --cert client.crt --key client.key \
        --pod-cidr 10.244.0.0/24 --out pods.json
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import re
import signal
import ssl
import sys
import time
from urllib.parse import urlsplit

WATCH_TIMEOUT_S = 300


def log(msg: str) -> None:
    print(f"[kube-pod-sd {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def target_groups(pods: dict[str, dict], network: ipaddress.IPv4Network) -> list[dict]:
    """The file_sd content for ``pods`` (uid -> pod object), in a stable order."""
    groups = []
    for pod in sorted(pods.values(), key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        meta, status, spec = pod["metadata"], pod.get("status") or {}, pod.get("spec") or {}
        ip = status.get("podIP")
        if not ip or ipaddress.ip_address(ip) not in network:
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        base = {
            "__meta_kubernetes_namespace": meta["namespace"],
            "__meta_kubernetes_pod_name": meta["name"],
            "__meta_kubernetes_pod_uid": meta.get("uid", ""),
            "__meta_kubernetes_pod_ip": ip,
            "__meta_kubernetes_pod_phase": status.get("phase", ""),
            "__meta_kubernetes_pod_ready": "true" if ready else "false",
            "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
        }
        for key, value in (meta.get("labels") or {}).items():
            base[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
            base[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
        for key, value in (meta.get("annotations") or {}).items():
            base[f"__meta_kubernetes_pod_annotation_{sanitize(key)}"] = value
            base[f"__meta_kubernetes_pod_annotationpresent_{sanitize(key)}"] = "true"
        ports = [(c, p) for c in spec.get("containers") or [] for p in c.get("ports") or []]
        if not ports:  # like the pod role: one target at the bare pod IP
            groups.append({"targets": [ip], "labels": base})
        for container, port in ports:
            groups.append({"targets": [f"{ip}:{port['containerPort']}"], "labels": {
                **base,
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_image": container.get("image", ""),
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP"),
            }})
    return groups


class Discovery:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.apiserver)
        self.host, self.port = url.hostname, url.port or 443
        self.ctx = ssl.create_default_context(cafile=args.ca)
        self.ctx.load_cert_chain(args.cert, args.key)
        self.network = ipaddress.ip_network(args.pod_cidr)
        self.out = args.out
        self.pods: dict[str, dict] = {}
        self.written: str | None = None

    def _get(self, path: str, timeout: float) -> http.client.HTTPResponse:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read(500).decode(errors="replace")
            conn.close()
            raise RuntimeError(f"GET {path}: HTTP {resp.status} {body}")
        return resp

    def write(self) -> None:
        text = json.dumps(target_groups(self.pods, self.network), indent=1, sort_keys=True)
        if text == self.written:
            return
        tmp = f"{self.out}.tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, self.out)  # Prometheus' file watcher sees one complete file
        self.written = text
        log(f"wrote {self.out}: {len(self.pods)} pods")

    def list_pods(self) -> str:
        data = json.load(self._get("/api/v1/pods", timeout=30))
        self.pods = {p["metadata"]["uid"]: p for p in data["items"]}
        self.write()
        return data["metadata"]["resourceVersion"]

    def watch(self, version: str) -> None:
        """Apply watch events until the server ends the watch or the version expires (410)."""
        resp = self._get(f"/api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion={version}"
                         f"&timeoutSeconds={WATCH_TIMEOUT_S}", timeout=WATCH_TIMEOUT_S + 30)
        while line := resp.readline():
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                log(f"watch ended: {obj.get('message')}")
                return
            version = obj["metadata"].get("resourceVersion", version)
            if kind == "DELETED":
                self.pods.pop(obj["metadata"]["uid"], None)
            elif kind in ("ADDED", "MODIFIED"):
                self.pods[obj["metadata"]["uid"]] = obj
            self.write()

    def run(self) -> None:
        while True:
            try:
                self.watch(self.list_pods())
            except (OSError, RuntimeError, ValueError, KeyError, http.client.HTTPException) as exc:
                log(f"{type(exc).__name__}: {exc}; again in 2 s")
                time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apiserver", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if not os.path.exists(args.out):  # Prometheus reads an empty list until the first listing
        with open(args.out, "w") as f:
            f.write("[]\n")
    Discovery(args).run()


if __name__ == "__main__":
    main()
