#!/usr/bin/env bash
# Start or stop Airflow 3 (api-server, scheduler, dag-processor, triggerer) on SQLite + LocalExecutor.
# Each component is its own process: after SIGINT, `airflow standalone` can hang on an idle worker.
# Usage: scripts/services/airflow.sh start|stop|status
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/airflow-env.sh"

COMPONENTS=(api-server scheduler dag-processor triggerer)
PIDS="$AIRFLOW_HOME/pids"
mkdir -p "$PIDS" "$AIRFLOW_HOME/logs"

# Connections: every endpoint the DAGs use is an Airflow Connection, so the same DAG targets
# this machine's services or production ones.
add_connections() {
  local infra_env="$DETECTOPS_HOME/infra/env.sh"
  local kubeconfig="${KUBECONFIG:-$DETECTOPS_HOME/infra/kubeconfig}" registry="${DETECTOPS_REGISTRY:-127.0.0.1:5000}" docker_host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  if [ -f "$infra_env" ]; then . "$infra_env"; kubeconfig="${KUBECONFIG:-$kubeconfig}"; registry="${DETECTOPS_REGISTRY:-$registry}"; docker_host="${DOCKER_HOST:-$docker_host}"; fi
  local mlflow_host="${MLFLOW_TRACKING_URI#http://}"
  airflow connections delete mlflow_default >/dev/null 2>&1 || true
  airflow connections add mlflow_default --conn-type http --conn-host "${mlflow_host%%:*}" --conn-port "${mlflow_host##*:}" \
    --conn-description "MLflow tracking server and Model Registry" >/dev/null
  airflow connections delete detectops_registry >/dev/null 2>&1 || true
  airflow connections add detectops_registry --conn-type generic --conn-host "${registry%%:*}" --conn-port "${registry##*:}" \
    --conn-extra "{\"docker_host\": \"$docker_host\", \"repository\": \"detectops/detector\", \"base_image\": \"${DETECTOPS_BASE_IMAGE:-}\"}" \
    --conn-description "Container registry the serving image is pushed to (and the Docker engine that builds it)" >/dev/null
  airflow connections delete kubernetes_default >/dev/null 2>&1 || true
  airflow connections add kubernetes_default --conn-type kubernetes \
    --conn-extra "{\"kube_config_path\": \"$kubeconfig\", \"namespace\": \"detectops\", \"xcom_sidecar_container_image\": \"$registry/detectops/base:bookworm\"}" \
    --conn-description "The Kubernetes cluster that runs the deployer pods and the serving Deployment" >/dev/null
  local prometheus="${DETECTOPS_PROMETHEUS_URL:-http://127.0.0.1:9090}"
  prometheus="${prometheus#http://}"
  airflow connections delete detectops_prometheus >/dev/null 2>&1 || true
  airflow connections add detectops_prometheus --conn-type http --conn-host "${prometheus%%:*}" --conn-port "${prometheus##*:}" \
    --conn-description "Prometheus' HTTP API: the monitoring DAG reads the live service from it" >/dev/null
  # Failed DAG runs are POSTed to the same webhook receiver Alertmanager routes alerts to.
  local webhook="${DETECTOPS_ALERT_WEBHOOK_URL:-http://127.0.0.1:9095/alerts}" hook_path
  webhook="${webhook#http://}"; hook_path="/${webhook#*/}"; webhook="${webhook%%/*}"
  airflow connections delete detectops_alert_webhook >/dev/null 2>&1 || true
  airflow connections add detectops_alert_webhook --conn-type http --conn-host "${webhook%%:*}" --conn-port "${webhook##*:}" \
    --conn-extra "{\"path\": \"$hook_path\"}" \
    --conn-description "Webhook receiver told about failed DAG runs (detectops.notify)" >/dev/null
  local admin_password
  admin_password="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$AIRFLOW_HOME/passwords.json")"
  airflow connections delete detectops_airflow_api >/dev/null 2>&1 || true
  airflow connections add detectops_airflow_api --conn-type http --conn-host 127.0.0.1 --conn-port "$AIRFLOW_PORT" \
    --conn-login admin --conn-password "$admin_password" \
    --conn-description "This Airflow's REST API: tasks write their run's note through it" >/dev/null
}

case "${1:-start}" in
  start)
    log "migrating the Airflow metadata DB ($AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)"
    airflow db migrate >"$AIRFLOW_HOME/logs/migrate.log" 2>&1 || { tail -30 "$AIRFLOW_HOME/logs/migrate.log"; die "airflow db migrate failed (log above)"; }
    add_connections
    for c in "${COMPONENTS[@]}"; do
      if [ -f "$PIDS/$c.pid" ] && kill -0 "$(cat "$PIDS/$c.pid")" 2>/dev/null; then log "airflow $c already running"; continue; fi
      setsid airflow "$c" >"$AIRFLOW_HOME/logs/$c.log" 2>&1 < /dev/null &
      echo $! > "$PIDS/$c.pid"
    done
    wait_http "$AIRFLOW_URL/api/v2/monitor/health" 120 || { tail -30 "$AIRFLOW_HOME/logs/api-server.log"; die "the Airflow api-server did not answer within 120 s (log above)"; }
    log "Airflow ready: $AIRFLOW_URL (user admin, password in $AIRFLOW_HOME/passwords.json)"
    ;;
  stop)
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
      c="${COMPONENTS[$i]}"
      [ -f "$PIDS/$c.pid" ] || continue
      log "stopping airflow $c"
      pgid="$(cat "$PIDS/$c.pid")"
      kill -TERM -- "-$pgid" 2>/dev/null || true
      stop_pidfile "$PIDS/$c.pid"
      # Idle LocalExecutor workers can ignore SIGTERM and outlive the scheduler: end the
      # rest of the component's process group (setsid made it ours alone).
      kill -KILL -- "-$pgid" 2>/dev/null || true
    done
    ;;
  status)
    for c in "${COMPONENTS[@]}"; do
      if [ -f "$PIDS/$c.pid" ] && kill -0 "$(cat "$PIDS/$c.pid")" 2>/dev/null; then echo "airflow $c: running (pid $(cat "$PIDS/$c.pid"))"; else echo "airflow $c: stopped"; fi
    done
    ;;
  *) die "usage: $0 start|stop|status" ;;
esac
