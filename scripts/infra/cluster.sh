#!/usr/bin/env bash
# Start a single-node Kubernetes v1.20.2 cluster on loopback:
#   etcd 127.0.0.1:2379 -> kube-apiserver 127.0.0.1:6443 (token auth, RBAC, SA keys)
#   -> kube-controller-manager + kube-scheduler (no leader election)
#   -> containerd (own config/socket/root, CRI) -> kubelet (node "localhost", 127.0.0.1:10250)
#   -> CNI bridge "detectops0" (gateway 10.244.0.1) + host-local IPAM, pods in 10.244.0.0/24
#   -> kube-proxy (iptables; NodePorts on 127.0.0.1), the `kubernetes` Service reachable from
#      pods at 10.244.0.1:6443 (cluster-net.sh). No cluster DNS: use <NAME>_SERVICE_HOST.
# Admin kubeconfig: $STATE/kubeconfig. Needs the pause image in the registry (base-image.sh).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root

K="$STATE/k8s"
P="$K/pki"
CTR="$K/containerd"
CTR_SOCK="$CTR/containerd.sock"
CNI_CONF="$K/cni/net.d"
KUBELET_ROOT="$K/kubelet"
PAUSE_IMAGE="$REGISTRY_ADDR/detectops/pause:3.2"
export KUBECONFIG="$STATE/kubeconfig"

"$INFRA_SCRIPTS/k8s-binaries.sh"
"$INFRA_SCRIPTS/pki.sh"
mkdir -p "$K/etcd" "$CTR/root" "$CTR/state" "$CTR/certs.d/$REGISTRY_ADDR" "$CNI_CONF" \
         "$K/cni/ipam" "$KUBELET_ROOT" "$K/config"
chmod 700 "$K/etcd"

port_taken_by_other() {  # NAME PORT: the port is listening but NAME is not ours/running
  ! pid_alive "$1" && ss -ltnH "sport = :$2" | grep -q .
}
for np in etcd:2379 kube-apiserver:6443 kubelet:10250; do
  if port_taken_by_other "${np%%:*}" "${np##*:}"; then
    die "port ${np##*:} is in use by a process up.sh did not start (another cluster?). Stop it, or point KUBECONFIG at that cluster and rerun up.sh"
  fi
done

# ---- etcd ------------------------------------------------------------------------------
start_daemon etcd etcd --name detectops --data-dir "$K/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster detectops=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381
wait_for etcd 30 curl -fsS http://127.0.0.1:2379/health || { check_daemon etcd; exit 1; }

# ---- kube-apiserver ----------------------------------------------------------------------
APISERVER_ARGS=(
  --etcd-servers=http://127.0.0.1:2379
  --bind-address=127.0.0.1 --secure-port=6443 --advertise-address=127.0.0.1 --insecure-port=0
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key"
  --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv"
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key"
  --service-account-issuer=https://kubernetes.default.svc.cluster.local
  --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt"
  --kubelet-client-key="$P/apiserver-kubelet-client.key"
  --kubelet-preferred-address-types=Hostname --endpoint-reconciler-type=none
  --profiling=false --v=1
)
# Restarted when its certificate, tokens or flags changed (e.g. a SAN added by pki.sh).
restart_if_changed kube-apiserver "$(fingerprint "$P/apiserver.crt" "$P/tokens.csv" -- "${APISERVER_ARGS[@]}")"
start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" "${APISERVER_ARGS[@]}"
apiserver_ready() { kubectl get --raw /readyz; }
wait_for kube-apiserver 90 apiserver_ready || { check_daemon kube-apiserver; exit 1; }

# ---- controller-manager and scheduler ---------------------------------------------------
start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$P/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$P/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$P/controller-manager.kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --port=0 \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --use-service-account-credentials=false --cluster-name=detectops-local \
  --profiling=false --v=1
start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$P/scheduler.kubeconfig" \
  --authentication-kubeconfig="$P/scheduler.kubeconfig" \
  --authorization-kubeconfig="$P/scheduler.kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --port=0 --profiling=false --v=1

# ---- CNI: bridge + host-local IPAM -------------------------------------------------------
cat > "$CNI_CONF/10-detectops.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "detectops",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$K/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
JSON
# The bridge, the Service range's route, the apiserver for pods, kube-proxy.
"$INFRA_SCRIPTS/cluster-net.sh"

# ---- containerd (CRI) ---------------------------------------------------------------------
cat > "$CTR/certs.d/$REGISTRY_ADDR/hosts.toml" <<TOML
server = "http://$REGISTRY_ADDR"
[host."http://$REGISTRY_ADDR"]
  capabilities = ["pull", "resolve", "push"]
TOML
cat > "$CTR/config.toml" <<TOML
version = 2
root = "$CTR/root"
state = "$CTR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTR/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The VM lacks CAP_SYS_RESOURCE: without this, every sandbox fails with
  # "runc create failed: can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Pod network namespaces under our state dir (not /run/netns), so down.sh finds them.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$CTR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CNI_CONF"
  [plugins."io.containerd.grpc.v1.cri".registry]
    # hosts.toml per registry: 127.0.0.1:5000 is plain HTTP.
    config_path = "$CTR/certs.d"
TOML
start_daemon containerd containerd --config "$CTR/config.toml"
wait_for containerd 30 ctr --address "$CTR_SOCK" version || { check_daemon containerd; exit 1; }

# ---- kubelet -----------------------------------------------------------------------------
cat > "$K/config/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $P/kubelet.crt
tlsPrivateKeyFile: $P/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# A shared development VM: evict only when really out of space/memory.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
maxPods: 50
# The prediction log lives in the container log (about 600 bytes per image). The monitoring DAG
# reads it through the API, which serves only the current file: 100 MiB per file is ~175k
# predictions, hours of traffic, so a rotation inside a 15-minute window is rare (README).
containerLogMaxSize: 100Mi
containerLogMaxFiles: 5
YAML
# The Node object survives restarts in etcd and may still say Ready: only a heartbeat newer
# than this kubelet's start counts.
since="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
if pid_alive kubelet; then since="1970-01-01T00:00:00Z"; fi
# No --node-ip: kubelet 1.20 rejects a loopback node IP. The apiserver reaches the kubelet by
# Hostname (--kubelet-preferred-address-types=Hostname), i.e. localhost:10250.
start_daemon kubelet "$K8S_BIN/kubelet" \
  --config="$K/config/kubelet.yaml" --kubeconfig="$P/kubelet.kubeconfig" \
  --container-runtime=remote --container-runtime-endpoint="unix://$CTR_SOCK" \
  --image-service-endpoint="unix://$CTR_SOCK" --runtime-request-timeout=10m \
  --hostname-override=localhost \
  --root-dir="$KUBELET_ROOT" --cert-dir="$P/kubelet-certs" --v=1

node_ready() {
  local st hb
  read -r st hb < <(kubectl get node localhost -o \
    jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}')
  [ "$st" = True ] && [[ ! "$hb" < "$since" ]]
}
wait_for "node localhost Ready" 120 node_ready || { check_daemon kubelet; check_daemon containerd; exit 1; }
wait_for "ServiceAccount default/default" 60 kubectl -n default get serviceaccount default \
  || { check_daemon kube-controller-manager; exit 1; }
# The token controller fills the SA's secret (token + ca.crt) shortly after the SA appears.
wait_for "default SA token secret" 60 sh -c \
  "kubectl -n default get serviceaccount default -o jsonpath='{.secrets[0].name}' | grep -q ."
