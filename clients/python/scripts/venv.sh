# shellcheck shell=bash
# Sourced by scripts/test.sh and benchmarks/run.sh: creates or reuses clients/python/.venv and
# installs the pinned test requirements and the package (editable) when requirements-test.txt or
# pyproject.toml changed since the last install. Messages go to stderr. Sets `venv` (the venv
# directory) and `venv_python` (its interpreter). PYTHON picks the interpreter that creates it.
_venv_client_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PIP_DISABLE_PIP_VERSION_CHECK=1
venv="$_venv_client_root/.venv"
venv_python="$venv/bin/python"
if [[ ! -x "$venv_python" ]]; then
    echo "==> creating $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv"
fi

# Reinstall only when the requirements or the package metadata changed.
_venv_stamp="$venv/.checkpointd-test-stamp"
_venv_want="$(cat "$_venv_client_root/requirements-test.txt" "$_venv_client_root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$_venv_stamp" || "$(cat "$_venv_stamp")" != "$_venv_want" ]]; then
    echo "==> installing the pinned test requirements and the package (editable)" >&2
    "$venv_python" -m pip install --quiet -r "$_venv_client_root/requirements-test.txt" >&2
    "$venv_python" -m pip install --quiet --no-deps -e "$_venv_client_root" >&2
    echo "$_venv_want" > "$_venv_stamp"
fi
unset _venv_client_root _venv_stamp _venv_want
