#!/usr/bin/env bash
# Stop everything the demo started (each by its recorded PID).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
"$REPO/scripts/services/airflow.sh" stop
"$REPO/scripts/services/mlflow.sh" stop
[ -x "$REPO/scripts/infra/down.sh" ] && "$REPO/scripts/infra/down.sh"
exit 0
