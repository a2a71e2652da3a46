#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine (as root): install everything, start the local
# infrastructure (Docker engine, registry, Kubernetes), MLflow and Airflow, then trigger the
# level-0 DAG through the REST API, land a labelled batch for level 1 (scripts/level1_demo.py),
# and print where to look.
#   DETECTOPS_DEPLOY=0 scripts/demo.sh       # level 0, stopped after registration: no Docker or cluster
#   DETECTOPS_DEMO_LEVEL1=0 scripts/demo.sh  # level 0 only
set -euo pipefail
. "$(dirname "$0")/lib.sh"

DEPLOY="${DETECTOPS_DEPLOY:-1}"
"$REPO/scripts/install.sh"
if [ "$DEPLOY" = "1" ]; then
  "$REPO/scripts/infra/up.sh"
  . "$DETECTOPS_HOME/infra/env.sh"
fi
"$REPO/scripts/services/mlflow.sh" start
"$REPO/scripts/services/airflow.sh" start
. "$REPO/scripts/services/airflow-env.sh"

log "fetching the CenterNet detector once (npm registry -> SavedModel, cached)"
"$VENV/bin/detectops" fetch-model centernet >/dev/null

log "triggering detectops_level0_manual through the REST API"
conf="{\"deploy\": $([ "$DEPLOY" = "1" ] && echo true || echo false)}"
status=0
"$PY" "$REPO/scripts/run_dag.py" detectops_level0_manual --conf "$conf" | tee "$DETECTOPS_HOME/last-run.json" || status=$?

if [ "$DEPLOY" = "1" ] && [ "${DETECTOPS_DEMO_LEVEL1:-1}" = "1" ]; then
  log "level 1: landing a labelled batch; its Asset event trains, gates, deploys and promotes the shapes detector"
  "$PY" "$REPO/scripts/level1_demo.py" --out "$DETECTOPS_HOME/last-level1-run.json" || status=$?
fi

cat <<MSG

  Airflow UI   $AIRFLOW_URL   (user: admin, password: $(python3 -c "import json;print(json.load(open('$AIRFLOW_HOME/passwords.json'))['admin'])"))
  MLflow UI    $MLFLOW_TRACKING_URI   (experiment detectops-level0, model 'detector')
  Run summary  $DETECTOPS_HOME/last-run.json (level 0), $DETECTOPS_HOME/last-level1-run.json (level 1)
  Stop it all  scripts/stop.sh

MSG
exit $status
