#!/usr/bin/env bash
# Start or stop the MLflow tracking server + Model Registry (SQLite backend, local artifacts).
# Usage: scripts/services/mlflow.sh start|stop|status
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

DIR="$DETECTOPS_HOME/mlflow"
PIDFILE="$DIR/mlflow.pid"
mkdir -p "$DIR/artifacts"

case "${1:-start}" in
  start)
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      log "MLflow already running (pid $(cat "$PIDFILE")) at $MLFLOW_TRACKING_URI"; exit 0
    fi
    log "starting MLflow on 127.0.0.1:$MLFLOW_PORT (log: $DIR/mlflow.log)"
    # --workers 1: the default 4 uvicorn workers are wasted on a 2-core machine.
    setsid "$VENV/bin/mlflow" server \
      --backend-store-uri "sqlite:///$DIR/mlflow.db" \
      --artifacts-destination "$DIR/artifacts" \
      --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
      >"$DIR/mlflow.log" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
    wait_http "$MLFLOW_TRACKING_URI/health" 120 || { tail -20 "$DIR/mlflow.log"; die "MLflow did not answer $MLFLOW_TRACKING_URI/health within 120 s (log above)"; }
    log "MLflow ready: $MLFLOW_TRACKING_URI"
    ;;
  stop)
    log "stopping MLflow"
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
