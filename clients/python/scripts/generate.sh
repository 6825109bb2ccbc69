#!/usr/bin/env bash
# Regenerate the gRPC stubs in src/checkpointd_client/_proto from <repo>/proto with grpcio-tools.
# Uses clients/python/.venv when it exists (scripts/test.sh creates it), else $PYTHON or python3;
# that interpreter needs grpcio-tools (see requirements-test.txt).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
client_root="$(dirname "$here")"
if [[ -n "${PYTHON:-}" ]]; then
  py="$PYTHON"
elif [[ -x "$client_root/.venv/bin/python" ]]; then
  py="$client_root/.venv/bin/python"
else
  py=python3
fi
exec "$py" "$here/generate.py" "$@"
