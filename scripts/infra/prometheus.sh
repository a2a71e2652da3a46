#!/usr/bin/env bash
# Prometheus and Alertmanager for the local stack (Debian's prometheus 2.42 and
# prometheus-alertmanager 0.25; no init system: run here in the background, by recorded PID).
#
#   scripts/infra/prometheus.sh start    start both, or apply changed settings to running ones
#   scripts/infra/prometheus.sh stop     stop both (SIGTERM by PID, SIGKILL after a timeout)
#   scripts/infra/prometheus.sh status   PIDs, readiness, scrape targets and firing alerts
#
# Prometheus: http://127.0.0.1:$DETECTOPS_PROMETHEUS_PORT (classic UI at /classic/graph, API at
# /api/v1/...), data in $STATE/prometheus/data. It scrapes the local cluster's pods annotated
# prometheus.io/scrape and the kubelet's cAdvisor, with a client certificate of its own (CN
# detectops:prometheus, signed by the cluster CA, RBAC from include/monitoring/rbac.yaml).
# Debian builds Prometheus without kubernetes_sd_configs: a third process, kube-pod-sd
# (scripts/infra/monitoring/kube-pod-sd.py, python3 stdlib), watches the apiserver's pods with
# that certificate and writes them, with the pod role's labels, into $STATE/prometheus/sd/pods.json.
# Alertmanager: http://127.0.0.1:$DETECTOPS_ALERTMANAGER_PORT, one webhook receiver; its HA
# gossip port is switched off (it would listen on all interfaces).
# Configuration: the templates include/monitoring/prometheus.yml, rules/*.yml and
# alertmanager.yml, filled in and checked (promtool, amtool) into $STATE/prometheus/ and
# $STATE/alertmanager/. A running instance whose configuration changed is reloaded (SIGHUP;
# no data is lost); a changed port or retention restarts it.
#
# Settings (environment; defaults in brackets). Short intervals are for the test stack only:
#   DETECTOPS_PROMETHEUS_PORT               [9090]
#   DETECTOPS_ALERTMANAGER_PORT             [9093]
#   DETECTOPS_PROMETHEUS_SCRAPE_INTERVAL    [15s]  tests: 5s
#   DETECTOPS_PROMETHEUS_EVAL_INTERVAL      [15s]  rule evaluation; tests: 5s
#   DETECTOPS_PROMETHEUS_RETENTION          [7d]
#   DETECTOPS_ALERT_WEBHOOK_URL             [http://127.0.0.1:9095/alerts]  where alerts are POSTed
#   DETECTOPS_ALERTMANAGER_GROUP_WAIT       [30s]  tests: 1s
#   DETECTOPS_ALERTMANAGER_GROUP_INTERVAL   [5m]
#   DETECTOPS_ALERTMANAGER_REPEAT_INTERVAL  [4h]
#   DETECTOPS_KUBE_EXTERNAL                 [from $STATE/env.sh] 1: an external cluster, whose pods
#                                           are not on this machine's bridge: no Kubernetes jobs
# The effective values are written to $STATE/prometheus/settings.env.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
shopt -u patsub_replacement 2>/dev/null || true  # bash 5.2: '&' in ${var//pat/rep} is literal

PROM_PORT="$PROMETHEUS_PORT"   # lib.sh: DETECTOPS_PROMETHEUS_PORT, default 9090
AM_PORT="$ALERTMANAGER_PORT"   # lib.sh: DETECTOPS_ALERTMANAGER_PORT, default 9093
SCRAPE_INTERVAL="${DETECTOPS_PROMETHEUS_SCRAPE_INTERVAL:-15s}"
EVAL_INTERVAL="${DETECTOPS_PROMETHEUS_EVAL_INTERVAL:-15s}"
RETENTION="${DETECTOPS_PROMETHEUS_RETENTION:-7d}"
WEBHOOK_URL="${DETECTOPS_ALERT_WEBHOOK_URL:-http://127.0.0.1:9095/alerts}"
GROUP_WAIT="${DETECTOPS_ALERTMANAGER_GROUP_WAIT:-30s}"
GROUP_INTERVAL="${DETECTOPS_ALERTMANAGER_GROUP_INTERVAL:-5m}"
REPEAT_INTERVAL="${DETECTOPS_ALERTMANAGER_REPEAT_INTERVAL:-4h}"
if [ -z "${DETECTOPS_KUBE_EXTERNAL+set}" ] && [ -s "$STATE/env.sh" ]; then
  DETECTOPS_KUBE_EXTERNAL="$(sed -n 's/^export DETECTOPS_KUBE_EXTERNAL="\(.*\)"$/\1/p' "$STATE/env.sh")"
fi
EXTERNAL="${DETECTOPS_KUBE_EXTERNAL:-}"

TEMPLATES="$REPO/include/monitoring"
PD="$STATE/prometheus"
AD="$STATE/alertmanager"
K8S_PKI="$STATE/k8s/pki"
PROM_URL="http://127.0.0.1:$PROM_PORT"
AM_URL="http://127.0.0.1:$AM_PORT"

# render TEMPLATE OUT KEY=VALUE... : replace each @KEY@; fail on a placeholder left over.
render() {
  local src="$1" out="$2" text kv left; shift 2
  text="$(cat "$src")"
  for kv in "$@"; do text="${text//@${kv%%=*}@/"${kv#*=}"}"; done
  left="$(grep -oE '@[A-Z_]+@' <<<"$text" | sort -u | tr '\n' ' ' || true)"
  [ -z "$left" ] || die "$src: no value for $left"
  printf '%s\n' "$text" > "$out"
}

# The pod range as a regex for the scrape address (keep-relabelling: only local pod IPs).
pod_cidr_regex() {
  [ "${POD_CIDR#*/}" = 24 ] || die "pod_cidr_regex handles a /24 pod range only (POD_CIDR=$POD_CIDR)"
  local net="${POD_CIDR%/*}"
  printf '%s' "${net%.*}" | sed 's/\./\\\\./g'
  printf '%s' '\\.[0-9]+:[0-9]+'
}

# Prometheus' own client certificate for the apiserver and the kubelet, from the cluster CA.
client_cert() {
  mkdir -p "$PD/pki"; chmod 700 "$PD/pki"
  if [ -s "$PD/pki/client.crt" ] && openssl verify -CAfile "$K8S_PKI/ca.crt" "$PD/pki/client.crt" >/dev/null 2>&1; then
    return 0
  fi
  openssl genrsa -out "$PD/pki/client.key" 2048 2>/dev/null
  openssl req -new -key "$PD/pki/client.key" -subj "/CN=detectops:prometheus" -out "$PD/pki/client.csr"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
    > "$PD/pki/client.ext"
  openssl x509 -req -in "$PD/pki/client.csr" -CA "$K8S_PKI/ca.crt" -CAkey "$K8S_PKI/ca.key" -CAcreateserial \
    -CAserial "$PD/pki/ca.srl" -days 3650 -sha256 -extfile "$PD/pki/client.ext" -out "$PD/pki/client.crt" 2>/dev/null
  rm -f "$PD/pki/client.csr" "$PD/pki/client.ext"
  log "issued Prometheus' client certificate (CN=detectops:prometheus)"
}

local_cluster() { [ "$EXTERNAL" != 1 ] && [ -s "$K8S_PKI/ca.key" ]; }

# Write both configurations; check them with promtool / amtool.
write_configs() {
  mkdir -p "$PD/rules" "$PD/data" "$PD/sd" "$AD/data"
  local tmp="$PD/prometheus.yml.tmp" rule name
  render "$TEMPLATES/prometheus.yml" "$tmp" \
    SCRAPE_INTERVAL="$SCRAPE_INTERVAL" EVAL_INTERVAL="$EVAL_INTERVAL" \
    ALERTMANAGER="127.0.0.1:$AM_PORT" PROMETHEUS="127.0.0.1:$PROM_PORT" RULES_DIR="$PD/rules" \
    PODS_FILE="$PD/sd/pods.json" CA="$K8S_PKI/ca.crt" CERT="$PD/pki/client.crt" KEY="$PD/pki/client.key" \
    POD_CIDR_REGEX="$(pod_cidr_regex)"
  if ! local_cluster; then
    sed -i '/# BEGIN kubernetes/,/# END kubernetes/d' "$tmp"
    log "no local cluster (external: ${EXTERNAL:-no}): Prometheus scrapes no pods"
  fi
  rm -f "$PD/rules/"*.yml
  for rule in "$TEMPLATES"/rules/*.yml; do
    name="$(basename "$rule")"
    render "$rule" "$PD/rules/$name"
  done
  promtool check config "$tmp" >"$LOGS/promtool.log" 2>&1 \
    || { cat "$LOGS/promtool.log" >&2; die "the generated Prometheus configuration does not check out"; }
  mv "$tmp" "$PD/prometheus.yml"
  render "$TEMPLATES/alertmanager.yml" "$AD/alertmanager.yml.tmp" WEBHOOK_URL="$WEBHOOK_URL" \
    GROUP_WAIT="$GROUP_WAIT" GROUP_INTERVAL="$GROUP_INTERVAL" REPEAT_INTERVAL="$REPEAT_INTERVAL"
  amtool check-config "$AD/alertmanager.yml.tmp" >"$LOGS/amtool.log" 2>&1 \
    || { cat "$LOGS/amtool.log" >&2; die "the generated Alertmanager configuration does not check out"; }
  mv "$AD/alertmanager.yml.tmp" "$AD/alertmanager.yml"
  cat > "$PD/settings.env" <<ENV
# Written by scripts/infra/prometheus.sh: the settings the running instances were given.
DETECTOPS_PROMETHEUS_PORT=$PROM_PORT
DETECTOPS_ALERTMANAGER_PORT=$AM_PORT
DETECTOPS_PROMETHEUS_SCRAPE_INTERVAL=$SCRAPE_INTERVAL
DETECTOPS_PROMETHEUS_EVAL_INTERVAL=$EVAL_INTERVAL
DETECTOPS_PROMETHEUS_RETENTION=$RETENTION
DETECTOPS_ALERT_WEBHOOK_URL=$WEBHOOK_URL
DETECTOPS_ALERTMANAGER_GROUP_WAIT=$GROUP_WAIT
DETECTOPS_ALERTMANAGER_GROUP_INTERVAL=$GROUP_INTERVAL
DETECTOPS_ALERTMANAGER_REPEAT_INTERVAL=$REPEAT_INTERVAL
ENV
}

# metric URL NAME: the value of an unlabelled metric on URL/metrics (empty when absent).
metric() { curl -fsS --max-time 5 "$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m {print $2}'; }

# reload NAME URL METRIC_PREFIX: SIGHUP a running daemon, wait for a successful reload newer than now.
reload() {
  local name="$1" url="$2" prefix="$3" before
  before="$(metric "$url" "${prefix}_config_last_reload_success_timestamp_seconds")"
  kill -HUP "$(cat "$PIDS/$name.pid")"
  reloaded() {
    local ts ok
    ts="$(metric "$url" "${prefix}_config_last_reload_success_timestamp_seconds")"
    ok="$(metric "$url" "${prefix}_config_last_reload_successful")"
    [ -n "$ts" ] && [ "$ok" = 1 ] && awk -v a="$ts" -v b="${before:-0}" 'BEGIN {exit !(a + 0 > b + 0)}'
  }
  wait_for "$name configuration reload" 30 reloaded \
    || { tail -n 20 "$LOGS/$name.log" >&2; die "$name did not reload its configuration"; }
}

port_taken_by_other() {  # NAME PORT
  ! pid_alive "$1" && ss -ltnH "sport = :$2" | grep -q .
}

# start_or_reload NAME CONFIG_FINGERPRINT URL METRIC_PREFIX CMD... : start NAME, or reload it
# when its configuration files changed since it last (re)loaded; restart it when CMD changed.
start_or_reload() {
  local name="$1" conf_fp="$2" url="$3" prefix="$4"; shift 4
  restart_if_changed "$name" "$(fingerprint -- "$@")"
  if pid_alive "$name"; then
    if [ "$(cat "$PIDS/$name.config" 2>/dev/null)" != "$conf_fp" ]; then
      reload "$name" "$url" "$prefix"
    fi
  else
    port_taken_by_other "$name" "${url##*:}" && die "port ${url##*:} is taken by a process up.sh did not start"
    start_daemon "$name" "$@"
  fi
  printf '%s' "$conf_fp" > "$PIDS/$name.config"
  ready() { curl -fsS --max-time 3 "$url/-/ready" >/dev/null; }
  wait_for "$name on $url" 90 ready || { check_daemon "$name" || true; die "$name is not ready"; }
}

start() {
  need_root
  mkdir -p "$PD" "$AD" "$PIDS" "$LOGS"
  if local_cluster; then
    client_cert
    if kubectl --kubeconfig "$STATE/kubeconfig" --request-timeout=10s apply -f "$TEMPLATES/rbac.yaml" >/dev/null; then
      log "RBAC for detectops:prometheus applied (read pods and nodes, nodes/metrics)"
    else
      log "could not apply $TEMPLATES/rbac.yaml (cluster down?): pod discovery fails until it is"
    fi
  fi
  write_configs
  if local_cluster; then
    # Pod discovery (Debian's Prometheus has no kubernetes_sd_configs): restarted on new flags.
    local sd=(/usr/bin/python3 "$INFRA_SCRIPTS/monitoring/kube-pod-sd.py" --apiserver https://127.0.0.1:6443
              --ca "$K8S_PKI/ca.crt" --cert "$PD/pki/client.crt" --key "$PD/pki/client.key"
              --pod-cidr "$POD_CIDR" --out "$PD/sd/pods.json")
    restart_if_changed kube-pod-sd "$(fingerprint "$INFRA_SCRIPTS/monitoring/kube-pod-sd.py" -- "${sd[@]}")"
    start_daemon kube-pod-sd "${sd[@]}"
  else
    stop_daemon kube-pod-sd
  fi
  start_or_reload alertmanager "$(fingerprint "$AD/alertmanager.yml" --)" "$AM_URL" alertmanager \
    /usr/bin/prometheus-alertmanager --config.file="$AD/alertmanager.yml" --storage.path="$AD/data" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address=
  start_or_reload prometheus "$(fingerprint "$PD/prometheus.yml" "$PD"/rules/*.yml --)" "$PROM_URL" prometheus \
    /usr/bin/prometheus --config.file="$PD/prometheus.yml" --storage.tsdb.path="$PD/data" \
    --storage.tsdb.retention.time="$RETENTION" --web.listen-address="127.0.0.1:$PROM_PORT"
  if local_cluster; then check_daemon kube-pod-sd || die "the pod discovery (kube-pod-sd) exited"; fi
  log "Prometheus $PROM_URL (UI $PROM_URL/classic/graph), Alertmanager $AM_URL -> $WEBHOOK_URL"
}

stop() {
  need_root
  stop_daemon prometheus 30
  stop_daemon kube-pod-sd 10
  stop_daemon alertmanager 20
  rm -f "$PIDS/prometheus.config" "$PIDS/alertmanager.config"
}

status() {
  local rc=0 name url
  for name in prometheus alertmanager; do
    url="$PROM_URL"; [ "$name" = alertmanager ] && url="$AM_URL"
    if pid_alive "$name" && curl -fsS --max-time 3 "$url/-/ready" >/dev/null 2>&1; then
      echo "$name: running (pid $(cat "$PIDS/$name.pid")), ready at $url"
    else
      echo "$name: not running or not ready ($url; log: $LOGS/$name.log)"; rc=1
    fi
  done
  [ "$rc" = 0 ] || return "$rc"
  curl -fsS --max-time 5 "$PROM_URL/api/v1/targets?state=active" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    l = t["labels"]
    print("  target", l.get("job"), t["scrapeUrl"], l.get("namespace", ""), l.get("pod", ""), t["health"], t["lastError"])'
  curl -fsS --max-time 5 "$PROM_URL/api/v1/alerts" | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
print("  alerts:", len(alerts))
for a in alerts:
    l = a["labels"]
    print("  ", a["state"], l["alertname"], l.get("namespace", ""), l.get("pod", ""), l.get("model", ""))'
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
