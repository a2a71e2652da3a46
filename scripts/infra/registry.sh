#!/usr/bin/env bash
# Start Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1:5000 with no auth and its
# storage under $STATE/registry/data. Loopback registries need no TLS for docker or containerd.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root

R="$STATE/registry"
mkdir -p "$R/data"
cat > "$R/config.yml" <<YAML
version: 0.1
log:
  level: info
  fields: {service: registry}
storage:
  filesystem:
    rootdirectory: $R/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver: {enabled: true, interval: 10s, threshold: 3}
YAML

registry_ready() { curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null; }

if pid_alive registry; then
  wait_for "registry on $REGISTRY_ADDR" 20 registry_ready
  exit 0
fi
if registry_ready 2>/dev/null || ss -ltnH "sport = :${REGISTRY_ADDR##*:}" | grep -q .; then
  die "$REGISTRY_ADDR is already taken by a process up.sh did not start; stop it or free the port"
fi
start_daemon registry docker-registry serve "$R/config.yml"
wait_for "registry on $REGISTRY_ADDR" 30 registry_ready || { check_daemon registry || true; exit 1; }
