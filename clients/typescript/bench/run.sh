#!/usr/bin/env bash
# Runs bench/compare-savers.mjs (LangGraph.js's PostgresSaver against GrpcCheckpointSaver) with node;
# every argument is passed through. Installs the locked dependencies (npm ci) when node_modules is
# missing, and builds dist/ (npm run build) when it is missing or older than src/.
#
#   clients/typescript/bench/run.sh --database-url postgres://postgres@127.0.0.1:5432/db \
#       --target 127.0.0.1:50051 --json results.json
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
package="$(cd "$here/.." && pwd)"
repo_root="$(cd "$package/../.." && pwd)"
# npm's download cache under target/ (gitignored), as clients/typescript/scripts/test.sh keeps it.
export npm_config_cache="${npm_config_cache:-$repo_root/target/npm-cache}"

cd "$package"
# npm's output goes to stderr: stdout is the benchmark's Markdown.
if [[ ! -d node_modules/@langchain/langgraph-checkpoint-postgres || ! -d node_modules/pg ]]; then
    echo "clients/typescript: npm ci" >&2
    npm ci --no-audit --no-fund >&2
fi
if [[ ! -f dist/index.js ]] || [[ -n "$(find src -newer dist/index.js -type f -print -quit)" ]]; then
    echo "clients/typescript: npm run build" >&2
    npm run build >&2
fi
cd - > /dev/null
exec node "$here/compare-savers.mjs" "$@"
