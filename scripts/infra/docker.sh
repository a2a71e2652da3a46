#!/usr/bin/env bash
# Start a private Docker engine (dockerd 20.10) whose data, exec root, pidfile and socket all
# live under $STATE/docker. Users reach it with DOCKER_HOST=unix://$STATE/docker.sock
# (written to $STATE/env.sh by up.sh). No iptables/ip-forward changes to the host.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root

D="$STATE/docker"
mkdir -p "$D/data" "$D/exec" "$PIDS"

docker_ready() { docker -H "unix://$DOCKER_SOCK" version --format '{{.Server.Version}}'; }

if pid_alive dockerd && docker_ready >/dev/null 2>&1; then
  log "dockerd already running (pid $(cat "$PIDS/dockerd.pid")), $DOCKER_HOST"
  exit 0
fi

# overlay2 needs a filesystem that supports overlay upper dirs (ext4/xfs do, overlay/tmpfs
# on some kernels do not); try a real overlay mount in the data root, else fall back to vfs.
driver="$(cat "$D/storage-driver" 2>/dev/null || true)"
if [ -z "$driver" ]; then
  t="$(mktemp -d "$D/ovl-probe.XXXXXX")"
  mkdir -p "$t/lower" "$t/upper" "$t/work" "$t/merged"
  if mount -t overlay overlay -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work" "$t/merged" 2>/dev/null; then
    umount "$t/merged"; driver=overlay2
  else
    driver=vfs
    log "overlay mounts do not work on $(stat -fc %T "$D"); using the slow vfs storage driver"
  fi
  rm -rf "$t"
  echo "$driver" > "$D/storage-driver"
fi

# Remember whether docker0 existed before we started, so down.sh removes only ours.
if ! ip link show docker0 >/dev/null 2>&1 && [ ! -e "$D/created-docker0" ]; then
  touch "$D/created-docker0"
fi

rm -f "$DOCKER_SOCK"
start_daemon dockerd dockerd \
  --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/dockerd.pid" \
  -H "unix://$DOCKER_SOCK" --iptables=false --ip-forward=false --ip-masq=false \
  --storage-driver="$driver"
wait_for "dockerd ($driver)" 60 docker_ready || { check_daemon dockerd || true; exit 1; }
