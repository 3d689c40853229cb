#!/usr/bin/env bash
# Creates .venv and installs the project with its dev dependencies (once; again when
# pyproject.toml changes), then puts .venv/bin first on PATH. Sourced by demo.sh and
# test.sh, and by hand (`source scripts/setup.sh`): it never changes the caller's shell
# options and never exits the caller's shell (it returns non-zero on failure).
_installments_setup() {
  local root py stamp
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  py="${PYTHON:-python3}"
  if ! "$py" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)'; then
    echo "Python 3.11 to 3.13 is required (found: $("$py" --version 2>&1));" \
      "set PYTHON=/path/to/python3.11" >&2
    return 1
  fi
  if [ ! -x "$root/.venv/bin/python" ]; then
    echo "setup: creating .venv" >&2
    "$py" -m venv "$root/.venv" || return 1
  fi
  stamp="$root/.venv/.installed"
  if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    echo "setup: installing the project and its dependencies into .venv" >&2
    "$root/.venv/bin/python" -m pip install --quiet --upgrade pip || return 1
    "$root/.venv/bin/python" -m pip install --quiet -e "$root[dev]" || return 1
    touch "$stamp"
  fi
  export PATH="$root/.venv/bin:$PATH"
}
_installments_setup
_installments_setup_status=$?
unset -f _installments_setup
if [ "$_installments_setup_status" -ne 0 ]; then
  unset _installments_setup_status
  return 1 2>/dev/null || exit 1
fi
unset _installments_setup_status
