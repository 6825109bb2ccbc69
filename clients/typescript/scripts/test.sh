#!/usr/bin/env bash
# Runs the TypeScript client's whole suite, as CI does: installs the pinned dependencies when
# node_modules is missing or stale (npm ci), builds, type-checks, and runs `npm test`.
# The exit code is the result.
#
# Needs Node 20+ and npm, PostgreSQL on 127.0.0.1:5432 (trust auth for user postgres; override with
# CHECKPOINTD_TEST_PG_URL), the server binary (CHECKPOINTD_BIN, default <repo>/target/debug/checkpointd),
# and python3 with venv/pip for the interop test (or CHECKPOINTD_INTEROP_PYTHON; see test/python-env.ts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root="$(cd ../.. && pwd)"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [[ -x "$repo_root/scripts/ensure-postgres" ]]; then
    step "PostgreSQL"
    "$repo_root/scripts/ensure-postgres"
fi

bin="${CHECKPOINTD_BIN:-$repo_root/target/debug/checkpointd}"
if [[ ! -x "$bin" ]]; then
    echo "checkpointd binary not found at $bin: build it (cargo build) or set CHECKPOINTD_BIN" >&2
    exit 1
fi
export CHECKPOINTD_BIN="$bin"

# npm's download cache, kept under target/ (gitignored) so that CI re-runs, and the package test's
# installs into fresh projects, do not download again.
export npm_config_cache="${npm_config_cache:-$repo_root/target/npm-cache}"

# npm ci when node_modules is missing or was installed from another package-lock.json.
stamp=node_modules/.checkpointd-lock-stamp
if [[ ! -d node_modules ]] || ! cmp -s package-lock.json "$stamp"; then
    step "npm ci"
    npm ci --no-audit --no-fund
    cp package-lock.json "$stamp"
fi

step "build (tsc)"
npm run build

step "typecheck tests and examples"
npm run typecheck

step "npm test"
mkdir -p .cache
rm -f .cache/test-results.json
set +e
npm test -- --reporter=default --reporter=json --outputFile.json=.cache/test-results.json
rc=$?
set -e
node scripts/summarize-results.mjs .cache/test-results.json "$rc" || rc=1
exit "$rc"
