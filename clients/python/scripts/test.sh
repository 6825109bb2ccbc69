#!/usr/bin/env bash
# Runs the whole Python client suite:
#   1. in clients/python/.venv (pinned requirements-test.txt): conformance (81 tests), real graphs,
#      interop and differential tests against LangGraph's own Postgres saver, channel behaviour,
#      generated-stub freshness, packaging (fresh-venv install, sdist contents, declared floors) and
#      LangGraph Agent Server (`langgraph dev` with examples/langgraph-server against checkpointd,
#      its venv cached in <repo>/target/python-venvs/agent-server);
#   2. the conformance suite and the stub tests again at both ends of the declared dependency
#      ranges: <repo>/target/python-venvs/min (requirements-min.txt, every floor) and
#      <repo>/target/python-venvs/newest (requirements-newest.txt).
# Each venv is reinstalled only when its requirements file or pyproject.toml changes.
#
# Needs: python3 (3.11+ for the Agent Server test), PostgreSQL on 127.0.0.1:5432 (trust auth, user
# postgres; override with CHECKPOINTD_TEST_PG_URL) and a checkpointd binary (CHECKPOINTD_BIN,
# default <repo>/target/debug/checkpointd). The exit code is the first failing step's.
#
#   clients/python/scripts/test.sh                 everything
#   clients/python/scripts/test.sh -k conformance  only step 1, with these pytest arguments
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
client_root="$(dirname "$here")"
repo_root="$(cd "$client_root/../.." && pwd)"
cd "$client_root"

# shellcheck source=venv.sh
source "$here/venv.sh"
# shellcheck source=pinned-venv.sh
source "$here/pinned-venv.sh"

export CHECKPOINTD_BIN="${CHECKPOINTD_BIN:-$repo_root/target/debug/checkpointd}"
if [[ ! -x "$CHECKPOINTD_BIN" ]]; then
    echo "checkpointd binary not found at $CHECKPOINTD_BIN (build it, or set CHECKPOINTD_BIN)" >&2
    exit 1
fi

timed() {  # timed LABEL COMMAND...: runs COMMAND, then prints how long it took
    local label="$1" started=$SECONDS
    shift
    echo "==> $label"
    "$@"
    echo "==> $label: passed in $((SECONDS - started))s"
}

if [[ $# -gt 0 ]]; then
    exec "$venv_python" -m pytest "$@"
fi

versions_code="import importlib.metadata as m; \
print(', '.join(f'{d} {m.version(d)}' for d in ('grpcio', 'protobuf', 'langgraph-checkpoint')))"

timed "pytest, pinned test venv (server: $CHECKPOINTD_BIN)" "$venv_python" -m pytest
for end in min newest; do
    started=$SECONDS
    end_python="$(ensure_pinned_venv "$end" "$client_root/requirements-$end.txt")"
    echo "==> $end venv ready in $((SECONDS - started))s: $("$end_python" -c "$versions_code")"
    timed "conformance and stubs at the $end versions" \
        "$end_python" -m pytest tests/test_conformance.py tests/test_generated_stubs.py
done
