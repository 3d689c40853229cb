#!/usr/bin/env bash
# README command two: the whole test suite on the real stack.
# Installs what is missing, brings up the local Kafka broker and PostgreSQL
# (unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL point elsewhere), runs pytest.
# Lint and type checks (scripts/lint.sh) run first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
bash scripts/lint.sh
installments stack up
python -m pytest -p no:cacheprovider "$@"
