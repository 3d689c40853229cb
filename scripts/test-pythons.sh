#!/usr/bin/env bash
# The unit suite on the other supported interpreters (#15: Python 3.11-3.13; the main
# venv, scripts/setup.sh, runs the whole suite on one of them).
#
#   bash scripts/test-pythons.sh            # 3.12 and 3.13
#   bash scripts/test-pythons.sh 3.13       # only these minor versions
#   bash scripts/test-pythons.sh 3.12 -- -x # arguments after -- go to pytest
#
# For each version it takes pyenv's newest installed 3.X.* (`pyenv root`/versions, or
# $PYENV_ROOT, or ~/.pyenv; PYTHON3_12=/path/to/python overrides the search), keeps a venv
# OUTSIDE the clone in ${INSTALLMENTS_PY_VENVS:-${XDG_CACHE_HOME:-~/.cache}/card-installments/venvs}/py3.X,
# installs the project with its dev dependencies there (`pip install -e .[dev]`, as
# scripts/setup.sh does) once, and again when pyproject.toml or the interpreter changes
# (a hash stamp); another clone only re-links the editable install (`--no-deps`).
# Then it runs `python -m pytest tests/unit -q`.
#
# Exit status: 0 when every suite that ran passed; 1 when one failed (or its venv could not
# be built). An interpreter that is not installed is skipped with a loud warning, not a
# failure (INSTALLMENTS_REQUIRE_PYTHONS=1 makes it a failure, for CI images that have them).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1

versions=()
pytest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; pytest_args=("$@"); break ;;
    *) versions+=("$1"); shift ;;
  esac
done
[ ${#versions[@]} -gt 0 ] || versions=(3.12 3.13)

venvs="${INSTALLMENTS_PY_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/card-installments/venvs}"
pyenv_root="${PYENV_ROOT:-}"
if [ -z "$pyenv_root" ] && command -v pyenv >/dev/null 2>&1; then
  pyenv_root="$(pyenv root 2>/dev/null || true)"
fi
[ -n "$pyenv_root" ] || pyenv_root="$HOME/.pyenv"

say() { printf '%s\n' "test-pythons: $*" >&2; }
loud() {
  printf '%s\n' "" "##########################################################################" \
    "### test-pythons: $*" \
    "##########################################################################" "" >&2
}

# The newest pyenv interpreter of minor version $1 (3.12 -> .../versions/3.12.7/bin/python):
# final releases only (3.12.1, 3.12.10; not 3.12.0rc1 or 3.12-dev), highest patch number.
find_python() {
  local version="$1" var override
  var="PYTHON${version//./_}"
  override="${!var:-}"
  if [ -n "$override" ]; then
    if [ -x "$override" ]; then printf '%s\n' "$override"; fi
    return 0
  fi
  printf '%s\n' "$pyenv_root"/versions/"$version".*/bin/python \
    | grep -E "/versions/${version//./\\.}\.[0-9]+/bin/python\$" \
    | while read -r candidate; do [ -x "$candidate" ] && printf '%s\n' "$candidate"; done \
    | sort -V | tail -n 1
}

# Create or refresh the venv of interpreter $2 at $1; print nothing, return non-zero on failure.
ensure_venv() {
  local venv="$1" python="$2" stamp want
  want="$( { cat "$root/pyproject.toml"; "$python" -c 'import sys; print(sys.version)'; \
    printf '%s\n' "$python"; } | sha256sum | cut -d' ' -f1)"
  stamp="$venv/.installed-sha256"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    # Dependencies up to date; the editable install must point at this clone (CI clones
    # afresh each run): re-linking it alone takes seconds, not a whole resolve.
    if [ "$(cat "$venv/.clone" 2>/dev/null)" != "$root" ]; then
      say "venv $venv: linking the project at $root (dependencies up to date)"
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root" \
        || return 1
      printf '%s\n' "$root" >"$venv/.clone"
    else
      say "venv $venv is up to date"
    fi
    return 0
  fi
  if [ -e "$venv" ] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "venv $venv is broken: recreating it"
    rm -rf "$venv"
  fi
  if [ ! -x "$venv/bin/python" ]; then
    say "creating venv $venv"
    mkdir -p "$(dirname "$venv")" && "$python" -m venv "$venv" || return 1
  fi
  say "installing the project and its dev dependencies into $venv (pyproject.toml changed or first run)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip || return 1
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[dev]" || return 1
  printf '%s\n' "$want" >"$stamp"
  printf '%s\n' "$root" >"$venv/.clone"
}

failed=()
skipped=()
passed=()
for version in "${versions[@]}"; do
  python="$(find_python "$version")"
  if [ -z "$python" ]; then
    loud "Python $version NOT FOUND under $pyenv_root/versions (nor \$PYTHON${version//./_}): SKIPPED"
    skipped+=("$version")
    continue
  fi
  venv="$venvs/py$version"
  loud "Python $version: $python ($("$python" --version 2>&1)), venv $venv"
  started=$SECONDS
  if ! ensure_venv "$venv" "$python"; then
    loud "Python $version: could not build the venv $venv: FAILED"
    failed+=("$version (venv)")
    continue
  fi
  say "running: $venv/bin/python -m pytest tests/unit -q -p no:cacheprovider ${pytest_args[*]:-}"
  "$venv/bin/python" -c 'import sys; print("test-pythons: interpreter", sys.executable, sys.version.split()[0])' >&2
  if "$venv/bin/python" -m pytest tests/unit -q -p no:cacheprovider "${pytest_args[@]}"; then
    loud "Python $version: unit suite PASSED in $((SECONDS - started)) s"
    passed+=("$version")
  else
    loud "Python $version: unit suite FAILED after $((SECONDS - started)) s"
    failed+=("$version")
  fi
done

say "passed: ${passed[*]:-none}; failed: ${failed[*]:-none}; skipped (not installed): ${skipped[*]:-none}"
if [ ${#skipped[@]} -gt 0 ] && [ "${INSTALLMENTS_REQUIRE_PYTHONS:-0}" = "1" ]; then
  say "INSTALLMENTS_REQUIRE_PYTHONS=1: a missing interpreter is a failure"
  exit 1
fi
[ ${#failed[@]} -eq 0 ]
