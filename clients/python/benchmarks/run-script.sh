#!/usr/bin/env bash
# Runs one benchmark script of this directory with the project venv (clients/python/.venv, created
# and installed by scripts/venv.sh if missing or stale); the other arguments are passed through.
#
#   clients/python/benchmarks/run-script.sh scan_costs.py --database-url postgres://... --target 127.0.0.1:50051
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$1"
shift
# shellcheck source=../scripts/venv.sh
source "$here/../scripts/venv.sh"
exec "$venv_python" "$here/$script" "$@"
