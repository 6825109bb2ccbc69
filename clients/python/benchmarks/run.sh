#!/usr/bin/env bash
# Runs benchmarks/compare_savers.py with the project venv (clients/python/.venv, created and
# installed by scripts/venv.sh if missing or stale); every argument is passed through.
#
#   clients/python/benchmarks/run.sh --target 127.0.0.1:50051 --json results.json
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/venv.sh
source "$here/../scripts/venv.sh"
exec "$venv_python" "$here/compare_savers.py" "$@"
