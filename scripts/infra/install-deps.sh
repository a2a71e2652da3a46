#!/usr/bin/env bash
# Install the Debian packages the local infrastructure needs (Docker engine, registry,
# containerd, etcd, CNI plugins, debootstrap, kubectl, Prometheus and Alertmanager ...).
# Idempotent: packages already installed are skipped, so a second run takes a second or two.
set -euo pipefail
# shellcheck source=scripts/infra/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root

PKGS=(
  docker.io containerd runc            # Docker engine 20.10 + the CRI runtime the kubelet uses
  docker-registry                      # CNCF distribution 2.8 (the local image registry)
  etcd-server                          # etcd 3.4 for kube-apiserver
  containernetworking-plugins          # CNI bridge + host-local IPAM (/usr/lib/cni)
  debootstrap                          # builds the local bookworm base image (no pulls here)
  iproute2 iptables socat conntrack    # pod networking / port-forward helpers; socat also
                                       # forwards the bridge address to host services (bridge-forward.sh)
  ipset                                # kube-proxy --cleanup (iptables mode) needs it on down.sh
  xz-utils openssl ca-certificates curl
  gcc libc6-dev                        # the static pause binary for containerd's sandbox image
  util-linux mount
  prometheus prometheus-alertmanager   # Prometheus 2.42 + Alertmanager 0.25 (prometheus.sh runs them, no init system)
  python3                              # its pod discovery, scripts/infra/monitoring/kube-pod-sd.py (stdlib only)
)
# kubectl: keep one that is already on PATH (e.g. Google Cloud SDK's); otherwise Debian's.
if ! command -v kubectl >/dev/null 2>&1; then
  PKGS+=(kubernetes-client)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "all ${#PKGS[@]} packages already installed"
  exit 0
fi

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# apt lists may be missing on a fresh machine; refresh once.
if ! apt-get install -y -o DPkg::Lock::Timeout=900 --no-install-recommends "${missing[@]}"; then
  apt-get update
  apt-get install -y -o DPkg::Lock::Timeout=900 --no-install-recommends "${missing[@]}"
fi
# The packages try to start their services through an init system that is not there; make
# sure none of them is left running on the default ports/sockets (we start our own).
log "done"
