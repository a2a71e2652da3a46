# Shared settings for DetectOps scripts. Source it: `. "$(dirname "$0")/lib.sh"`.
# Everything a script starts listens on 127.0.0.1 and keeps its state under $DETECTOPS_HOME.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DETECTOPS_HOME="${DETECTOPS_HOME:-$REPO/.state}"
VENV="${DETECTOPS_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"

export MLFLOW_PORT="${MLFLOW_PORT:-5500}"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-http://127.0.0.1:$MLFLOW_PORT}"
export AIRFLOW_PORT="${AIRFLOW_PORT:-8080}"
export AIRFLOW_URL="http://127.0.0.1:$AIRFLOW_PORT"

log() { printf '\033[1m[detectops]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[detectops] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

# wait_http URL SECONDS: poll until URL answers 2xx/3xx, or fail with a message.
wait_http() {
  local url="$1" limit="${2:-60}" i
  for ((i = 0; i < limit; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
    sleep 1
  done
  return 1
}

# stop_pidfile FILE: SIGTERM the recorded process (only if it is still ours), then SIGKILL after 20 s.
stop_pidfile() {
  local file="$1" pid i
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}
