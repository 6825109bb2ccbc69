#!/usr/bin/env bash
# Regenerate the gRPC stubs in src/checkpointd_client/_proto from <repo>/proto with the pinned
# grpcio-tools (scripts/generate.py, GRPCIO_TOOLS_VERSION). Runs in the venv of
# requirements-min.txt (<repo>/target/python-venvs/min, created or refreshed on demand), which
# holds exactly that generator; set GENERATOR_PYTHON to another interpreter that has it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
client_root="$(dirname "$here")"
if [[ -n "${GENERATOR_PYTHON:-}" ]]; then
    py="$GENERATOR_PYTHON"
else
    # shellcheck source=pinned-venv.sh
    source "$here/pinned-venv.sh"
    py="$(ensure_pinned_venv min "$client_root/requirements-min.txt")"
fi
exec "$py" "$here/generate.py" "$@"
