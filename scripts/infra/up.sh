#!/usr/bin/env bash
# Bring up DetectOps' local infrastructure, all on 127.0.0.1, all state under
# $DETECTOPS_INFRA_DIR (default $REPO/.state/infra):
#   Docker engine (unix://$STATE/docker.sock), registry 127.0.0.1:5000, base + pause images,
#   and a single-node Kubernetes v1.20.2 cluster (apiserver 127.0.0.1:6443) with kube-proxy;
#   pods reach the apiserver (Service `kubernetes`) and host services at the bridge's 10.244.0.1;
#   Prometheus 127.0.0.1:9090 and Alertmanager 127.0.0.1:9093 (prometheus.sh).
# If KUBECONFIG already points at a reachable cluster, that cluster is used instead of ours.
# Idempotent: running pieces are left alone. Then: `. $STATE/env.sh`. Stop: down.sh.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
t0=$SECONDS
mkdir -p "$STATE" "$PIDS" "$LOGS"

"$INFRA_SCRIPTS/install-deps.sh"
"$INFRA_SCRIPTS/docker.sh"
"$INFRA_SCRIPTS/registry.sh"
"$INFRA_SCRIPTS/base-image.sh"

ours="$STATE/kubeconfig"
external=""
if [ -n "${KUBECONFIG:-}" ] && [ "$(realpath -m "$KUBECONFIG")" != "$(realpath -m "$ours")" ]; then
  # A real apiserver answers "ok" (anything else on localhost:8080, e.g. a web UI, must not count).
  if [ -f "${KUBECONFIG%%:*}" ] && [ "$(kubectl --request-timeout=5s get --raw /readyz 2>/dev/null)" = ok ]; then
    external="$KUBECONFIG"
    log "KUBECONFIG=$KUBECONFIG reaches a running cluster: using it, starting no cluster of our own"
    log "(that cluster must be able to pull from $REGISTRY_ADDR, or push images where it can)"
  else
    log "KUBECONFIG=$KUBECONFIG does not reach a cluster; starting the local one instead"
  fi
fi
if [ -z "$external" ]; then
  KUBECONFIG="$ours" "$INFRA_SCRIPTS/cluster.sh"
fi

local_bridge_ip="" local_pod_cidr="" local_service_cidr=""
if [ -z "$external" ]; then
  local_bridge_ip="$BRIDGE_IP" local_pod_cidr="$POD_CIDR" local_service_cidr="$SERVICE_CIDR"
fi
cat > "$STATE/env.sh.tmp" <<ENV
# Written by scripts/infra/up.sh; source it: . $STATE/env.sh
export DETECTOPS_INFRA_DIR="$STATE"
export DOCKER_HOST="unix://$DOCKER_SOCK"
export KUBECONFIG="${external:-$ours}"
export DETECTOPS_REGISTRY="$REGISTRY_ADDR"
export DETECTOPS_BASE_IMAGE="$REGISTRY_ADDR/detectops/base:bookworm"
export DETECTOPS_KUBE_EXTERNAL="${external:+1}"
# Pods reach host services (MLflow, the apiserver) only at the bridge's own address; empty with
# an external cluster. Service ClusterIPs: never from the host, use NodePorts on 127.0.0.1.
export DETECTOPS_BRIDGE_IP="$local_bridge_ip"
export DETECTOPS_POD_CIDR="$local_pod_cidr"
export DETECTOPS_SERVICE_CIDR="$local_service_cidr"
# Prometheus (classic UI at /classic/graph) and Alertmanager: scripts/infra/prometheus.sh.
export DETECTOPS_PROMETHEUS_URL="http://127.0.0.1:$PROMETHEUS_PORT"
export DETECTOPS_ALERTMANAGER_URL="http://127.0.0.1:$ALERTMANAGER_PORT"
ENV
mv "$STATE/env.sh.tmp" "$STATE/env.sh"
# Once the cluster is up: its pods and the kubelet's cAdvisor are what Prometheus scrapes.
DETECTOPS_KUBE_EXTERNAL="${external:+1}" "$INFRA_SCRIPTS/prometheus.sh" start
log "up in $((SECONDS - t0))s. Use it with:  . $STATE/env.sh   Stop it with: $INFRA_SCRIPTS/down.sh"
