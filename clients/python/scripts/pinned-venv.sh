# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/generate.sh (and run by tests/test_generated_stubs.py):
# defines `ensure_pinned_venv NAME REQUIREMENTS` for the venvs that test the two ends of the
# dependency ranges declared in pyproject.toml:
#   min     requirements-min.txt     every runtime dependency at its declared floor, plus the
#                                    pinned stub generator (grpcio-tools)
#   newest  requirements-newest.txt  the newest releases
export PIP_DISABLE_PIP_VERSION_CHECK=1

# ensure_pinned_venv NAME REQUIREMENTS
#   Creates or reuses <repo>/target/python-venvs/NAME with the requirements file REQUIREMENTS (a
#   path) and the package (editable, so it always runs the current source), reinstalled only when
#   that file or pyproject.toml changed; `pip check` must pass. Messages go to stderr; prints the
#   venv's interpreter on stdout.
ensure_pinned_venv() {
    local name="$1" requirements="$2"
    local client_root repo_root dir python stamp want
    client_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    repo_root="$(cd "$client_root/../.." && pwd)"
    dir="$repo_root/target/python-venvs/$name"
    python="$dir/bin/python"
    stamp="$dir/.checkpointd-venv-stamp"
    want="$(cat "$requirements" "$client_root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [[ ! -x "$python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        echo "==> (re)creating $dir from $(basename "$requirements")" >&2
        # Each step checked explicitly: callers use $(...), where `set -e` does not reach.
        rm -rf "$dir" && mkdir -p "$(dirname "$dir")" || return 1
        "${PYTHON:-python3}" -m venv "$dir" || return 1
        "$python" -m pip install --quiet -r "$requirements" >&2 || return 1
        "$python" -m pip install --quiet --no-deps -e "$client_root" >&2 || return 1
        "$python" -m pip check >&2 || return 1
        echo "$want" > "$stamp" || return 1
    fi
    echo "$python"
}
