#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy v1.20.2 from Debian
# bookworm's source package `kubernetes` (1.20.5+really1.20.2) with Debian's golang-go (1.19),
# into OUT_DIR. Used by k8s-binaries.sh only when no prebuilt copy exists.
# What works (docs/ENVIRONMENT.md): `make gen_openapi` first, then GOPATH mode
# (GO111MODULE=off CGO_ENABLED=0, the tree linked at $GOPATH/src/k8s.io/kubernetes);
# module mode with -mod=vendor fails. Cold build about 8 min on 2 cores.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
OUT="${1:?usage: k8s-build-from-source.sh OUT_DIR}"
SRC="$STATE/cache/k8s-src"
mkdir -p "$OUT" "$SRC"

# deb-src for bookworm, in a file of our own.
if ! apt-get indextargets --format '$(IDENTIFIER)' 2>/dev/null | grep -qx 'Sources'; then
  log "adding a deb-src line for bookworm"
  cat > /etc/apt/sources.list.d/detectops-src.sources <<SRC
Types: deb-src
URIs: $(apt_mirror)
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=900 --no-install-recommends \
  golang-go dpkg-dev make rsync git

cd "$SRC"
tree="$(find "$SRC" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
if [ -z "$tree" ]; then
  log "apt-get source kubernetes"
  apt-get source --download-only kubernetes
  dpkg-source --no-check -x ./kubernetes_*.dsc
  tree="$(find "$SRC" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
fi

export GOPATH="$SRC/gopath" GO111MODULE=off CGO_ENABLED=0 GOFLAGS='' GOCACHE="$SRC/gocache"
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$tree" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"

log "make gen_openapi"
make gen_openapi

V="$K8S_VERSION"
X="-X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitVersion=$V"
X="$X -X k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version.gitVersion=$V"
X="$X -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitMajor=1"
X="$X -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitMinor=20"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  log "go build ./cmd/$b"
  go build -ldflags "-s -w $X" -o "$OUT/.$b.tmp" "./cmd/$b"
  mv "$OUT/.$b.tmp" "$OUT/$b"
done
log "built into $OUT"
