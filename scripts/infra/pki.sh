#!/usr/bin/env bash
# Certificates, keys, tokens and kubeconfigs for the local cluster, made once with openssl
# into $STATE/k8s/pki (kept across restarts so kubeconfigs stay valid).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

P="$STATE/k8s/pki"
mkdir -p "$P"
chmod 700 "$P"
cd "$P"

# sign NAME CN O SAN... : key + cert signed by the local CA (SAN list may be empty).
sign() {
  local name="$1" cn="$2" org="$3"; shift 3
  [ -s "$name.crt" ] && return 0
  local san="" ext="$name.ext"
  if [ $# -gt 0 ]; then san="subjectAltName=$(IFS=,; echo "$*")"; fi
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -n "$san" ] && echo "$san"
  } > "$ext"
  openssl genrsa -out "$name.key" 2048 2>/dev/null
  openssl req -new -key "$name.key" -subj "/CN=$cn${org:+/O=$org}" -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$ext"
  log "issued $name.crt (CN=$cn)"
}

if [ ! -s ca.crt ]; then
  openssl genrsa -out ca.key 2048 2>/dev/null
  openssl req -x509 -new -key ca.key -days 3650 -sha256 -subj "/CN=detectops-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out ca.crt
  log "created the cluster CA"
fi
# The apiserver is reached as 127.0.0.1 (host), as 10.244.0.1 (the bridge address, where a
# forwarder listens for pods: the `kubernetes` Service's endpoint), as 10.0.0.1 (that Service's
# ClusterIP, what in-cluster config uses) and by the in-cluster names.
APISERVER_SANS=(IP:127.0.0.1 IP:10.244.0.1 IP:10.0.0.1 DNS:localhost DNS:kubernetes DNS:kubernetes.default
                DNS:kubernetes.default.svc DNS:kubernetes.default.svc.cluster.local)
# A certificate from an older up.sh may lack a SAN added since: issue it again (same CA, so
# kubeconfigs and ServiceAccount tokens stay valid; cluster.sh restarts the apiserver on it).
if [ -s apiserver.crt ]; then
  have="$(openssl x509 -in apiserver.crt -noout -ext subjectAltName 2>/dev/null | tr -d ' ' | tr ',' '\n' \
          | sed 's/^IPAddress:/IP:/')"
  for san in "${APISERVER_SANS[@]}"; do
    if ! grep -qxF "$san" <<<"$have"; then
      log "apiserver.crt lacks $san: issuing it again"
      rm -f apiserver.crt apiserver.key
      break
    fi
  done
fi
sign apiserver kube-apiserver "" "${APISERVER_SANS[@]}"
sign apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
sign kubelet localhost "" IP:127.0.0.1 DNS:localhost
if [ ! -s sa.key ]; then
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  log "created the service-account signing key"
fi

# Static bearer tokens (--token-auth-file): token,user,uid,"groups".
if [ ! -s tokens.csv ]; then
  t() { openssl rand -hex 16; }
  {
    echo "$(t),admin,admin,\"system:masters\""
    echo "$(t),system:node:localhost,kubelet,\"system:nodes\""
    echo "$(t),system:kube-controller-manager,kube-controller-manager,\"system:masters\""
    echo "$(t),system:kube-scheduler,kube-scheduler,\"system:masters\""
  } > tokens.csv.tmp
  mv tokens.csv.tmp tokens.csv
  log "created bearer tokens"
fi
# kube-proxy's user: the built-in ClusterRoleBinding system:node-proxier grants it what it needs.
# Appended, so tokens.csv from an older up.sh gains it (cluster.sh restarts the apiserver).
if ! awk -F, '$2=="system:kube-proxy" {found=1} END {exit !found}' tokens.csv; then
  echo "$(openssl rand -hex 16),system:kube-proxy,kube-proxy" >> tokens.csv
  log "added the kube-proxy bearer token"
fi

# kubeconfig FILE USER
kubeconfig() {
  local file="$1" user="$2" token
  token="$(awk -F, -v u="$user" '$2==u {print $1}' tokens.csv)"
  cat > "$file.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: detectops-local
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: $user
  user:
    token: $token
contexts:
- name: detectops-local
  context: {cluster: detectops-local, user: $user, namespace: default}
current-context: detectops-local
KC
  chmod 600 "$file.tmp"; mv "$file.tmp" "$file"
}
kubeconfig "$STATE/kubeconfig" admin
kubeconfig "$P/kubelet.kubeconfig" system:node:localhost
kubeconfig "$P/controller-manager.kubeconfig" system:kube-controller-manager
kubeconfig "$P/scheduler.kubeconfig" system:kube-scheduler
kubeconfig "$P/kube-proxy.kubeconfig" system:kube-proxy
