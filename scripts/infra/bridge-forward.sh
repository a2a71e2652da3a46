#!/usr/bin/env bash
# Make a service that listens on 127.0.0.1 reachable from pods: a socat forwarder bound to the
# cluster bridge's own address (10.244.0.1, the pods' gateway) -> 127.0.0.1. Never bound to
# 0.0.0.0 or an outside interface, so only the pods of our cluster (and this host) reach it.
#
# Usage: bridge-forward.sh start PORT [TARGET_PORT]   10.244.0.1:PORT -> 127.0.0.1:TARGET_PORT
#        bridge-forward.sh stop PORT | status PORT
#        bridge-forward.sh url URL                    the URL a pod uses for a host URL
# The forwarder runs as daemon "bridge-fwd-PORT" ($STATE/pids, $STATE/logs); down.sh stops it.
# Python twin (tests, DAG tasks): detectops.platform_net.bridge_forward / pod_reachable_url.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: $0 start PORT [TARGET_PORT] | stop PORT | status PORT | url URL"; }
cmd="${1:-}"; arg="${2:-}"
[ -n "$cmd" ] && [ -n "$arg" ] || usage

bridge_up() { ip -4 -o addr show dev "$BRIDGE" 2>/dev/null | grep -q " $BRIDGE_IP/"; }
listening() { ss -ltnH "src $BRIDGE_IP and sport = :$1" | grep -q .; }

case "$cmd" in
  start)
    port="$arg"; target="${3:-$arg}"
    [[ "$port" =~ ^[0-9]+$ && "$target" =~ ^[0-9]+$ ]] || usage
    bridge_up || die "the cluster bridge $BRIDGE has no address $BRIDGE_IP: start the infrastructure first (scripts/infra/up.sh)"
    command -v socat >/dev/null || die "socat is missing: run scripts/infra/install-deps.sh"
    name="bridge-fwd-$port"
    if ! pid_alive "$name" && listening "$port"; then
      die "$BRIDGE_IP:$port is already taken by a process this script did not start"
    fi
    start_daemon "$name" socat "TCP-LISTEN:$port,bind=$BRIDGE_IP,reuseaddr,fork" "TCP:127.0.0.1:$target"
    wait_for "$name ($BRIDGE_IP:$port -> 127.0.0.1:$target)" 10 listening "$port" || { check_daemon "$name"; exit 1; }
    ;;
  stop)
    stop_daemon "bridge-fwd-$arg" 5
    ;;
  status)
    if pid_alive "bridge-fwd-$arg"; then echo "bridge-fwd-$arg: running (pid $(cat "$PIDS/bridge-fwd-$arg.pid")) $BRIDGE_IP:$arg"
    else echo "bridge-fwd-$arg: stopped"; exit 1; fi
    ;;
  url)
    # Only loopback hosts are rewritten; any other URL is already meant to be reachable.
    sed -E "s#^([a-z+]+://)(127\.[0-9.]+|localhost)([:/]|\$)#\1$BRIDGE_IP\3#" <<<"$arg"
    ;;
  *) usage ;;
esac
