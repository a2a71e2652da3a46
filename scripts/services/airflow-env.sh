# Airflow settings shared by the services, the CLI and the tests. Source after scripts/lib.sh.
export AIRFLOW_HOME="${AIRFLOW_HOME:-$DETECTOPS_HOME/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
# 2 cores: the default parallelism (32) forks 32 workers and ~2.9 GB for nothing.
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
export AIRFLOW__API__BASE_URL="$AIRFLOW_URL"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="$AIRFLOW_URL/execution/"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=20
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=60
# Every process (api-server, scheduler, workers) must sign and check task tokens with the same secret.
mkdir -p "$AIRFLOW_HOME"
[ -f "$AIRFLOW_HOME/jwt_secret" ] || head -c 32 /dev/urandom | base64 > "$AIRFLOW_HOME/jwt_secret"
export AIRFLOW__API_AUTH__JWT_SECRET="$(cat "$AIRFLOW_HOME/jwt_secret")"
[ -f "$AIRFLOW_HOME/passwords.json" ] || printf '{"admin": "%s"}\n' "$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16)" > "$AIRFLOW_HOME/passwords.json"
# The local infrastructure (scripts/infra/up.sh), when it runs: its Docker engine, registry and
# cluster (with kube-proxy: pods are ordinary pods and reach the API through its Service).
if [ -f "$DETECTOPS_HOME/infra/env.sh" ]; then
  . "$DETECTOPS_HOME/infra/env.sh"
fi
