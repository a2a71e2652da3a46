#!/usr/bin/env bash
# Start or stop the MLflow tracking server + Model Registry (SQLite backend, local artifacts).
# Usage: scripts/services/mlflow.sh start|stop|status
# It listens on 127.0.0.1 only. When the local cluster runs (scripts/infra/up.sh), pods reach it at
# the cluster bridge's address, http://10.244.0.1:$MLFLOW_PORT, through a forwarder bound there
# (scripts/infra/bridge-forward.sh); artifacts are served by the server (--serve-artifacts), so
# pods download mlflow-artifacts:/ and runs:/ URIs through it.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

DIR="$DETECTOPS_HOME/mlflow"
PIDFILE="$DIR/mlflow.pid"
FORWARD="$REPO/scripts/infra/bridge-forward.sh"
# The forwarder for pods, when the local cluster's bridge is there (not with an external cluster).
forward_for_pods() {
  if ip -4 -o addr show dev detectops0 2>/dev/null | grep -q ' 10\.244\.0\.1/'; then
    "$FORWARD" start "$MLFLOW_PORT" && log "pods reach MLflow at $("$FORWARD" url "$MLFLOW_TRACKING_URI")"
  else
    log "no local cluster bridge (scripts/infra/up.sh not run): MLflow is reachable from this host only"
  fi
}
mkdir -p "$DIR/artifacts"

case "${1:-start}" in
  start)
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      log "MLflow already running (pid $(cat "$PIDFILE")) at $MLFLOW_TRACKING_URI"; forward_for_pods; exit 0
    fi
    log "starting MLflow on 127.0.0.1:$MLFLOW_PORT (log: $DIR/mlflow.log)"
    # --workers 1: the default 4 uvicorn workers are wasted on a 2-core machine.
    setsid "$VENV/bin/mlflow" server \
      --backend-store-uri "sqlite:///$DIR/mlflow.db" \
      --artifacts-destination "$DIR/artifacts" --serve-artifacts \
      --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
      >"$DIR/mlflow.log" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
    wait_http "$MLFLOW_TRACKING_URI/health" 120 || { tail -20 "$DIR/mlflow.log"; die "MLflow did not answer $MLFLOW_TRACKING_URI/health within 120 s (log above)"; }
    log "MLflow ready: $MLFLOW_TRACKING_URI"
    forward_for_pods
    ;;
  stop)
    log "stopping MLflow"
    "$FORWARD" stop "$MLFLOW_PORT" || true
    # setsid made the server a process-group leader: stop the group (gunicorn/uvicorn workers too).
    if [ -f "$PIDFILE" ]; then
      pgid="$(cat "$PIDFILE")"
      kill -TERM -- "-$pgid" 2>/dev/null || true
      stop_pidfile "$PIDFILE"
      kill -KILL -- "-$pgid" 2>/dev/null || true   # workers that outlived the server
    fi
    ;;
  status)
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then echo "mlflow: running (pid $(cat "$PIDFILE")) $MLFLOW_TRACKING_URI"; else echo "mlflow: stopped"; fi
    ;;
  *) die "usage: $0 start|stop|status" ;;
esac
