#!/usr/bin/env bash
# Lint and types, as configured in pyproject.toml. Run by scripts/test.sh (so by CI) and by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check schemas shared services
mypy schemas shared services
