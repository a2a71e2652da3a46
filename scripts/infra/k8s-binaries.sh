#!/usr/bin/env bash
# Put kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy v1.20.2 into
# $STATE/cache/kubernetes-v1.20.2/bin, once. Source: the prebuilt xz copies in
# ../shared/cache/kubernetes-v1.20.2 (checked against SHA256SUMS) when present, else a build
# from Debian's `kubernetes` source package (k8s-build-from-source.sh, ~8 min on 2 cores).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

all_present() { for b in "${BINS[@]}"; do [ -x "$K8S_BIN/$b" ] || return 1; done; }

if all_present; then
  log "kubernetes $K8S_VERSION binaries cached in $K8S_BIN"
  exit 0
fi

mkdir -p "$K8S_BIN"
prebuilt_complete() {  # every binary we need is in the prebuilt folder's SHA256SUMS
  local b
  [ -f "$K8S_PREBUILT/SHA256SUMS" ] || return 1
  for b in "${BINS[@]}"; do grep -q " $b.xz\$" "$K8S_PREBUILT/SHA256SUMS" || return 1; done
}
if prebuilt_complete; then
  log "verifying $K8S_PREBUILT/SHA256SUMS"
  (cd "$K8S_PREBUILT" && sha256sum --quiet -c SHA256SUMS) \
    || die "checksum mismatch in $K8S_PREBUILT; remove the folder to build from source instead"
  for b in "${BINS[@]}"; do
    [ -x "$K8S_BIN/$b" ] && continue
    log "decompressing $b"
    xz -dc "$K8S_PREBUILT/$b.xz" > "$K8S_BIN/.$b.tmp"
    chmod 0755 "$K8S_BIN/.$b.tmp"
    mv "$K8S_BIN/.$b.tmp" "$K8S_BIN/$b"   # atomic: never a half-written binary
  done
else
  log "no prebuilt copy of all of ${BINS[*]} at $K8S_PREBUILT: building from Debian's source package"
  "$INFRA_SCRIPTS/k8s-build-from-source.sh" "$K8S_BIN"
fi
"$K8S_BIN/kube-apiserver" --version
