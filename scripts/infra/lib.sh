#!/usr/bin/env bash
# Shared helpers for scripts/infra/*.sh (sourced, not run).
# shellcheck disable=SC2034  # variables are used by the scripts that source this file
# Everything lives under $STATE (DETECTOPS_INFRA_DIR, default $DETECTOPS_HOME/infra, i.e. $REPO/.state/infra).

INFRA_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$INFRA_SCRIPTS/../.." && pwd)"
STATE="${DETECTOPS_INFRA_DIR:-${DETECTOPS_HOME:-$REPO/.state}/infra}"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
REGISTRY_ADDR="127.0.0.1:5000"
# Prometheus and Alertmanager (prometheus.sh), on loopback.
PROMETHEUS_PORT="${DETECTOPS_PROMETHEUS_PORT:-9090}"
ALERTMANAGER_PORT="${DETECTOPS_ALERTMANAGER_PORT:-9093}"
DOCKER_SOCK="$STATE/docker.sock"
export DOCKER_HOST="unix://$DOCKER_SOCK"
# The k8s binaries' source (prebuilt, xz + SHA256SUMS) and version.
K8S_VERSION="v1.20.2"
K8S_PREBUILT="$(realpath -m "${DETECTOPS_K8S_PREBUILT:-$REPO/../shared/cache/kubernetes-$K8S_VERSION}")"
K8S_BIN="$STATE/cache/kubernetes-$K8S_VERSION/bin"

log()  { printf '[infra %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "run as root (it starts daemons and mounts)"; }

# pid_alive NAME -> 0 when $PIDS/NAME.pid names a live process.
pid_alive() {
  local f="$PIDS/$1.pid" pid
  [ -s "$f" ] || return 1
  pid="$(cat "$f")"
  kill -0 "$pid" 2>/dev/null || return 1
  # A recycled PID would belong to some other program: check the recorded command too.
  if [ -s "$PIDS/$1.cmd" ]; then
    [ "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | awk '{print $1}')" = "$(cat "$PIDS/$1.cmd")" ] || return 1
  fi
}

# start_daemon NAME CMD... : run CMD in the background (own session), log to $LOGS/NAME.log,
# record its PID and executable. Does nothing when NAME is already running.
start_daemon() {
  local name="$1"; shift
  mkdir -p "$PIDS" "$LOGS"
  if pid_alive "$name"; then
    log "$name already running (pid $(cat "$PIDS/$name.pid"))"
    return 0
  fi
  log "starting $name: $*"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
  printf '%s' "$1" > "$PIDS/$name.cmd"
}

# wait_for DESCRIPTION TIMEOUT_S CMD... : poll CMD every 0.5 s until it succeeds.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start >= timeout )); then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
  log "$what ready after $((SECONDS - start))s"
}

# check_daemon NAME: fail with the log tail when NAME died.
check_daemon() {
  pid_alive "$1" && return 0
  log "$1 is not running; last lines of $LOGS/$1.log:"
  tail -n 30 "$LOGS/$1.log" >&2 || true
  return 1
}

# The Debian mirror apt is configured with (deb822 or one-line format).
apt_mirror() {
  local m
  m="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)"
  if [ -z "$m" ]; then
    m="$(grep -hsE '^deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)"
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

# stop_daemon NAME [TIMEOUT_S]: SIGTERM the recorded process, SIGKILL after TIMEOUT_S (20);
# forget its PID. Does nothing when NAME is not running.
stop_daemon() {
  local name="$1" timeout="${2:-20}" pid start
  if pid_alive "$name"; then
    pid="$(cat "$PIDS/$name.pid")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    start=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
      if (( SECONDS - start >= timeout )); then
        log "$name (pid $pid) did not exit in ${timeout}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  fi
  rm -f "$PIDS/$name.pid" "$PIDS/$name.cmd"
}

# restart_if_changed NAME FINGERPRINT: a running NAME started with other inputs (flags,
# certificates, token files: whatever the caller hashes into FINGERPRINT) is stopped, so the
# next start_daemon starts it on the current ones. Records FINGERPRINT for the next run.
restart_if_changed() {
  local name="$1" fp="$2" file="$PIDS/$1.fingerprint"
  mkdir -p "$PIDS"
  if pid_alive "$name" && [ "$(cat "$file" 2>/dev/null)" != "$fp" ]; then
    log "$name was started with other flags or files: restarting it"
    # 5 s: the apiserver stops listening at once but then lingers on open watches for ~60 s.
    stop_daemon "$name" 5
  fi
  printf '%s' "$fp" > "$file"
}

# fingerprint FILE... -- ARG... : one hash of the files' contents and the arguments.
fingerprint() {
  local files=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  { cat "${files[@]}" 2>/dev/null; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

# The pod network: the CNI bridge, its own address (the pods' gateway, and the only address
# where host services listen for pods), the pod and Service ranges.
BRIDGE="detectops0"
BRIDGE_IP="10.244.0.1"
POD_CIDR="10.244.0.0/24"
SERVICE_CIDR="10.0.0.0/24"
