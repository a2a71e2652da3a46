#!/usr/bin/env bash
# Make the images nothing can pull here:
#  - local/bookworm:base (= 127.0.0.1:5000/detectops/base:bookworm): Debian 12 minbase from the
#    apt mirror + python3 (3.11), python3-venv (venv with pip), ca-certificates, procps
#    (pgrep/kill for KubernetesPodOperator's xcom sidecar). The project's Dockerfile builds on it.
#  - 127.0.0.1:5000/detectops/pause:3.2: a static pause binary in a scratch image, containerd's
#    sandbox_image.
# Cached three ways: skipped when the image exists; the rootfs tarball is kept in
# $STATE/cache so a fresh data-root re-imports it in seconds; pushes skip existing blobs.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root

BASE_TAG="local/bookworm:base"
BASE_PUSH="$REGISTRY_ADDR/detectops/base:bookworm"
PAUSE_PUSH="$REGISTRY_ADDR/detectops/pause:3.2"
PACKAGES="python3,python3-venv,ca-certificates,procps"
CACHE="$STATE/cache"
TARBALL="$CACHE/bookworm-base.tar"
mkdir -p "$CACHE"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }
in_registry() {  # REPO TAG -> 0 when the registry has that manifest
  curl -fs -o /dev/null -I \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY_ADDR/v2/$1/manifests/$2"
}

# ---- base image -------------------------------------------------------------------------
if have_image "$BASE_TAG"; then
  log "$BASE_TAG already present"
else
  # The package list is part of the cache key: change it and the tarball is rebuilt.
  key="$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-12)"
  if [ ! -s "$TARBALL" ] || [ "$(cat "$TARBALL.key" 2>/dev/null)" != "$key" ]; then
    mirror="$(apt_mirror)"
    rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'rm -rf "$rootfs" "$TARBALL.tmp"' EXIT
    log "debootstrap minbase bookworm from $mirror with $PACKAGES (about a minute)"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$mirror" \
      > "$LOGS/debootstrap.log" 2>&1 || { tail -n 30 "$LOGS/debootstrap.log" >&2; die "debootstrap failed (log: $LOGS/debootstrap.log)"; }
    # Smaller image; `apt-get update` inside a build brings the lists back when needed.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
           "$rootfs"/var/log/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
    tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    echo "$key" > "$TARBALL.key"
    rm -rf "$rootfs"; trap - EXIT
    log "rootfs tarball cached: $TARBALL ($(du -h "$TARBALL" | cut -f1))"
  fi
  log "importing $TARBALL as $BASE_TAG"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$BASE_TAG" >/dev/null
fi
docker tag "$BASE_TAG" "$BASE_PUSH"
if in_registry detectops/base bookworm && [ -z "${FORCE_PUSH:-}" ] \
   && docker image inspect -f '{{join .RepoDigests " "}}' "$BASE_PUSH" | grep -q "$REGISTRY_ADDR/detectops/base@"; then
  log "$BASE_PUSH already in the registry"
else
  log "pushing $BASE_PUSH"
  docker push -q "$BASE_PUSH" >/dev/null
fi

# ---- pause image ------------------------------------------------------------------------
if have_image "$PAUSE_PUSH"; then
  log "$PAUSE_PUSH already present"
else
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  gcc -static -Os -s -o "$ctx/pause" "$REPO/include/k8s/cluster/pause.c"
  log "importing $PAUSE_PUSH (static C binary, single-file image)"
  tar --owner=0 --group=0 -C "$ctx" -cf - pause | docker import \
    --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' - "$PAUSE_PUSH" >/dev/null
  rm -rf "$ctx"; trap - EXIT
fi
if in_registry detectops/pause 3.2 && [ -z "${FORCE_PUSH:-}" ] \
   && docker image inspect -f '{{join .RepoDigests " "}}' "$PAUSE_PUSH" | grep -q "$REGISTRY_ADDR/detectops/pause@"; then
  log "$PAUSE_PUSH already in the registry"
else
  log "pushing $PAUSE_PUSH"
  docker push -q "$PAUSE_PUSH" >/dev/null
fi
