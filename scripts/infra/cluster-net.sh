#!/usr/bin/env bash
# Services that route, and pods that reach the platform. Run by cluster.sh once the apiserver
# answers (before the kubelet, so restarted pods find Services routed):
#  1. the bridge detectops0 with its own address 10.244.0.1 (CNI would create it only with the
#     first pod; the forwarders below need the address now);
#  2. the Service range 10.0.0.0/24 routed onto that bridge: if kube-proxy is down, a packet for
#     a ClusterIP stays on the cluster's own L2 segment instead of following the default route
#     out of the machine;
#  3. the apiserver for pods: a forwarder 10.244.0.1:6443 -> 127.0.0.1:6443 (the apiserver
#     binds one address, and must not bind an outside one) and the `kubernetes` Service's
#     Endpoints pointing at it (--endpoint-reconciler-type=none: nobody else writes them), so
#     in-cluster config (KUBERNETES_SERVICE_HOST=10.0.0.1) works without hostNetwork;
#  4. kube-proxy (iptables mode, NodePorts on 127.0.0.1 only).
# down.sh undoes all of it (kube-proxy --cleanup, route_localnet restored, route removed).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root

K="$STATE/k8s"
P="$K/pki"
export KUBECONFIG="$STATE/kubeconfig"
mkdir -p "$K/cni" "$K/net"

# ---- 1. the bridge and its address ----------------------------------------------------------
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  touch "$K/cni/created-$BRIDGE"
  ip link add "$BRIDGE" type bridge
  log "created bridge $BRIDGE"
fi
# The CNI bridge plugin (isGateway) finds this address and keeps it.
ip addr replace "$BRIDGE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up

# ---- 2. the Service range stays on the machine -------------------------------------------------
ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$BRIDGE_IP"
touch "$K/net/route-$BRIDGE"

# ---- 3. the apiserver, reachable from pods -------------------------------------------------------
"$INFRA_SCRIPTS/bridge-forward.sh" start 6443
api_via_bridge() {  # the CA and the serving cert's SAN 10.244.0.1 must both check out
  curl -fsS --max-time 3 --cacert "$P/ca.crt" "https://$BRIDGE_IP:6443/readyz" \
    -H "Authorization: Bearer $(awk -F, '$2=="admin" {print $1}' "$P/tokens.csv")"
}
wait_for "apiserver at https://$BRIDGE_IP:6443" 20 api_via_bridge || { check_daemon bridge-fwd-6443; exit 1; }
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Endpoints
metadata:
  name: kubernetes
  namespace: default
  labels: {app.kubernetes.io/managed-by: detectops-infra}
subsets:
- addresses: [{ip: "$BRIDGE_IP"}]
  ports: [{name: https, port: 6443, protocol: TCP}]
YAML
log "Service default/kubernetes -> $BRIDGE_IP:6443"

# ---- 4. kube-proxy -------------------------------------------------------------------------------
# kube-proxy turns on net.ipv4.conf.all.route_localnet (NodePorts on 127.0.0.1 need it); keep
# the machine's own value once, for down.sh to put back.
[ -s "$K/net/route_localnet.orig" ] || cat /proc/sys/net/ipv4/conf/all/route_localnet > "$K/net/route_localnet.orig"
PROXY_ARGS=(
  --kubeconfig="$P/kube-proxy.kubeconfig" --hostname-override=localhost
  --cluster-cidr="$POD_CIDR" --proxy-mode=iptables
  --bind-address=127.0.0.1 --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256
  --nodeport-addresses=127.0.0.1/32 --conntrack-max-per-core=0 --v=1
)
restart_if_changed kube-proxy "$(fingerprint "$K8S_BIN/kube-proxy" "$P/kube-proxy.kubeconfig" -- "${PROXY_ARGS[@]}")"
start_daemon kube-proxy "$K8S_BIN/kube-proxy" "${PROXY_ARGS[@]}"
wait_for kube-proxy 30 curl -fsS --max-time 2 http://127.0.0.1:10256/healthz || { check_daemon kube-proxy; exit 1; }
