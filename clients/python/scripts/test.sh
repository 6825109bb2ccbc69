#!/usr/bin/env bash
# Runs the whole Python client suite: conformance (81 tests), real graphs, interop and differential
# tests against LangGraph's own Postgres saver, channel behaviour, generated-stub freshness and a
# fresh-venv install of the package.
#
# Needs: python3 (3.10+), PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres; override with
# CHECKPOINTD_TEST_PG_URL) and a checkpointd binary (CHECKPOINTD_BIN, default
# <repo>/target/debug/checkpointd). Creates or reuses clients/python/.venv, installs the package
# (editable) and the pinned test requirements, then runs pytest; the exit code is pytest's.
#
#   clients/python/scripts/test.sh                 everything
#   clients/python/scripts/test.sh -k conformance  any pytest arguments
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
client_root="$(dirname "$here")"
repo_root="$(cd "$client_root/../.." && pwd)"
cd "$client_root"

# shellcheck source=venv.sh
source "$here/venv.sh"

export CHECKPOINTD_BIN="${CHECKPOINTD_BIN:-$repo_root/target/debug/checkpointd}"
if [[ ! -x "$CHECKPOINTD_BIN" ]]; then
    echo "checkpointd binary not found at $CHECKPOINTD_BIN (build it, or set CHECKPOINTD_BIN)" >&2
    exit 1
fi
echo "==> pytest (server: $CHECKPOINTD_BIN)"
exec "$venv_python" -m pytest "$@"
