#!/usr/bin/env bash
# Stop exactly what up.sh started, in reverse order: SIGTERM by recorded PID, SIGKILL after a
# timeout; then the containerd shims of *our* containerd/dockerd (found by our socket paths),
# the mounts under our state dir, and the network bridges we created. Safe to run twice.
# Keeps caches (binaries, rootfs tarball, images, registry data, etcd data, certificates).
# `down.sh --wipe-cluster` also deletes the cluster's state (etcd data, kubelet and containerd
# roots) so the next up.sh starts an empty cluster; certificates and images stay.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root

WIPE=0
[ "${1:-}" = "--wipe-cluster" ] && WIPE=1
TIMEOUT="${DOWN_TIMEOUT:-20}"

stop() {  # NAME... : SIGTERM them all, wait, SIGKILL what is left after $TIMEOUT s
  local name pid live=()
  for name in "$@"; do
    [ -s "$PIDS/$name.pid" ] || continue
    pid="$(cat "$PIDS/$name.pid")"
    if pid_alive "$name"; then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      live+=("$pid")
    fi
  done
  local start=$SECONDS p
  for p in "${live[@]}"; do
    while kill -0 "$p" 2>/dev/null; do
      if (( SECONDS - start >= TIMEOUT )); then
        log "pid $p did not exit in ${TIMEOUT}s: SIGKILL"
        kill -KILL "$p" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  done
  for name in "$@"; do rm -f "$PIDS/$name.pid" "$PIDS/$name.cmd"; done
}

# Processes whose command line names one of our sockets: containerd shims (the kubelet's
# containerd in namespace k8s.io, dockerd's containerd in namespace moby).
our_shims() {
  local pid cmd
  for pid in $(pgrep -f 'containerd-shim' || true); do
    cmd="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)"
    case "$cmd" in *"$STATE/"*) echo "$pid" ;; esac
  done
}

# Prometheus, its pod discovery and Alertmanager first: they only watch the rest.
"$INFRA_SCRIPTS/prometheus.sh" stop

# kube-proxy first: then its iptables rules and ipsets go (`--cleanup` needs ipset in
# iptables mode) and route_localnet gets the machine's own value back.
K="$STATE/k8s"
ours_ran=0   # did our kubelet or kube-proxy run? Then the KUBE-* iptables chains are ours too.
{ [ -s "$PIDS/kubelet.pid" ] || [ -s "$PIDS/kube-proxy.pid" ]; } && ours_ran=1
stop kube-proxy
if [ -x "$K8S_BIN/kube-proxy" ] && [ -e "$K/net/route_localnet.orig" ]; then
  "$K8S_BIN/kube-proxy" --cleanup --proxy-mode=iptables >>"$LOGS/kube-proxy.log" 2>&1 \
    && log "kube-proxy --cleanup: Service rules removed" \
    || log "kube-proxy --cleanup failed (see $LOGS/kube-proxy.log)"
fi
if [ -s "$K/net/route_localnet.orig" ]; then
  cat "$K/net/route_localnet.orig" > /proc/sys/net/ipv4/conf/all/route_localnet
  log "net.ipv4.conf.all.route_localnet restored to $(cat "$K/net/route_localnet.orig")"
  rm -f "$K/net/route_localnet.orig"
fi
# The forwarders from the bridge address to host services (apiserver, MLflow, ...).
for f in "$PIDS"/bridge-fwd-*.pid; do
  [ -e "$f" ] || continue
  n="$(basename "$f" .pid)"; stop "$n"
done
# Stop the kubelet first so it does not restart containers while the rest goes away.
stop kubelet
# Stop the pod sandboxes/containers cleanly through CRI while containerd still runs.
CTR_SOCK="$STATE/k8s/containerd/containerd.sock"
if pid_alive containerd && [ -S "$CTR_SOCK" ]; then
  for id in $(ctr --address "$CTR_SOCK" -n k8s.io tasks list -q 2>/dev/null || true); do
    ctr --address "$CTR_SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
fi
# Running containers of our dockerd.
if pid_alive dockerd; then
  ids="$(docker ps -q 2>/dev/null || true)"
  [ -n "$ids" ] && { log "stopping containers of our dockerd"; docker stop -t 5 $ids >/dev/null 2>&1 || true; }
fi
stop containerd
stop kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd
stop registry dockerd

shims="$(our_shims)"
if [ -n "$shims" ]; then
  log "killing leftover containerd shims of ours: $(echo $shims)"
  kill -TERM $shims 2>/dev/null || true; sleep 1
  shims="$(our_shims)"; [ -n "$shims" ] && kill -KILL $shims 2>/dev/null || true
fi

# What `kube-proxy --cleanup` leaves: the chains the kubelet makes (KUBE-FIREWALL, KUBE-MARK-*,
# KUBE-POSTROUTING) and both canaries. Jumps from the built-in chains first, then the chains.
remove_kube_chains() {
  local t chain n
  for t in filter nat mangle; do
    for chain in INPUT OUTPUT FORWARD PREROUTING POSTROUTING; do
      for n in $(iptables -t "$t" -L "$chain" -n --line-numbers 2>/dev/null | awk '$2 ~ /^KUBE-/ {print $1}' | sort -rn); do
        iptables -t "$t" -D "$chain" "$n"
      done
    done
    for chain in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
      iptables -t "$t" -F "$chain"
    done
    for chain in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
      iptables -t "$t" -X "$chain" || log "could not delete iptables chain $t/$chain"
    done
  done
}
if [ "$ours_ran" = 1 ] && command -v iptables >/dev/null; then
  remove_kube_chains && log "removed the KUBE-* iptables chains of our kubelet and kube-proxy"
fi

# Unmount everything under the state dir, deepest first (kubelet volume tmpfs, containerd
# and docker overlay mounts, sandbox shm, netns bind mounts).
if [ -d "$STATE" ]; then
  mapfile -t mnts < <(awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r)
  for m in "${mnts[@]}"; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
  [ "${#mnts[@]}" -gt 0 ] && log "unmounted ${#mnts[@]} mounts under $STATE"
fi
# Pod network namespaces were mounted under our state dir (netns_mounts_under_state_dir) and
# unmounted above; with their processes gone the kernel frees them and their veths.
# The Service range's route (it would also go with the bridge; not when the bridge is not ours).
if [ -e "$K/net/route-$BRIDGE" ]; then
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null && log "removed route $SERVICE_CIDR dev $BRIDGE" || true
  rm -f "$K/net/route-$BRIDGE"
fi
# shellcheck disable=SC2043  # one bridge today; the list is where a second would go
for br in "$BRIDGE"; do
  if [ -e "$STATE/k8s/cni/created-$br" ] && ip link show "$br" >/dev/null 2>&1; then
    ip link delete "$br" && log "removed bridge $br"
  fi
  rm -f "$STATE/k8s/cni/created-$br"
done
if [ -e "$STATE/docker/created-docker0" ] && ip link show docker0 >/dev/null 2>&1; then
  ip link delete docker0 && log "removed bridge docker0"
  rm -f "$STATE/docker/created-docker0"
fi

# libcni's result cache (fixed path /var/lib/cni/results): only entries of our network.
rm -f /var/lib/cni/results/detectops-* 2>/dev/null || true

if [ "$WIPE" = 1 ]; then
  log "wiping cluster state (etcd, kubelet, containerd, CNI IPAM)"
  rm -rf "$STATE/k8s/etcd" "$STATE/k8s/kubelet" "$STATE/k8s/containerd/root" \
         "$STATE/k8s/containerd/state" "$STATE/k8s/cni/ipam"
fi
rm -f "$STATE/env.sh"
log "down"
