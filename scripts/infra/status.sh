#!/usr/bin/env bash
# What of the local infrastructure is running (exit 0 when everything up.sh starts is up).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rc=0
printf '%-24s %-8s %s\n' COMPONENT PID STATE
for name in dockerd registry etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet \
            kube-proxy bridge-fwd-6443 kube-pod-sd alertmanager prometheus; do
  if pid_alive "$name"; then
    printf '%-24s %-8s %s\n' "$name" "$(cat "$PIDS/$name.pid")" running
  elif [ -s "$PIDS/$name.pid" ]; then
    printf '%-24s %-8s %s\n' "$name" "$(cat "$PIDS/$name.pid")" "DEAD (log: $LOGS/$name.log)"; rc=1
  else
    printf '%-24s %-8s %s\n' "$name" - "not started"; rc=1
  fi
done
echo
if [ -s "$STATE/env.sh" ]; then
  . "$STATE/env.sh"
  echo "env: . $STATE/env.sh"
  docker version --format 'docker:   server {{.Server.Version}} at {{.Server.Os}} ('"$DOCKER_HOST"')' 2>/dev/null || echo "docker:   not answering"
  curl -fsS -o /dev/null "http://$DETECTOPS_REGISTRY/v2/" && echo "registry: http://$DETECTOPS_REGISTRY/v2/ answers" || echo "registry: not answering"
  if [ "$(kubectl --request-timeout=5s get --raw /readyz 2>/dev/null)" = ok ]; then
    echo "cluster:  $KUBECONFIG ${DETECTOPS_KUBE_EXTERNAL:+(external)}"
    kubectl get nodes -o wide 2>/dev/null
    kubectl get pods -A 2>/dev/null | head -20
  else
    echo "cluster:  not answering ($KUBECONFIG)"
  fi
  echo
  "$INFRA_SCRIPTS/prometheus.sh" status || true
  if [ -n "${DETECTOPS_KUBE_EXTERNAL:-}" ]; then rc=0; fi
else
  echo "not up: no $STATE/env.sh (run scripts/infra/up.sh)"
fi
exit $rc
