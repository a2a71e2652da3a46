#!/usr/bin/env bash
# Run the whole test suite against real services: the local infrastructure (Docker engine,
# registry, Kubernetes) is started first if it is not up; MLflow and Airflow are started by
# the tests themselves. Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ -x "$PY" ] || die "no Python environment: run scripts/install.sh first"

if [ "${DETECTOPS_SKIP_INFRA:-0}" != "1" ] && [ -x "$REPO/scripts/infra/up.sh" ]; then
  # The test stack's Prometheus scrapes and evaluates every 5 s (the demo's: 15 s), so canary
  # windows and alerts in the e2e tests take a third of the time (tests/support/live_airflow.py
  # sizes the windows from the interval the running Prometheus was given).
  DETECTOPS_PROMETHEUS_SCRAPE_INTERVAL="${DETECTOPS_PROMETHEUS_SCRAPE_INTERVAL:-5s}" \
  DETECTOPS_PROMETHEUS_EVAL_INTERVAL="${DETECTOPS_PROMETHEUS_EVAL_INTERVAL:-5s}" \
    "$REPO/scripts/infra/up.sh"
fi
if [ -f "$DETECTOPS_HOME/infra/env.sh" ]; then . "$DETECTOPS_HOME/infra/env.sh"; fi

cd "$REPO"
# --durations: where the suite's time goes, printed at the end of every run (CI included).
exec "$PY" -m pytest -p no:cacheprovider --timeout 1800 --durations=25 "${@:-tests}"
