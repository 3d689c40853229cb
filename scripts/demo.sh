#!/usr/bin/env bash
# README command one: the whole pipeline on a local broker and embedded SQLite
# (PostgreSQL when DATABASE_URL points at one), with the KPI report at the end.
# Extra arguments go to `installments demo` (e.g. --accounts 200 --days 30).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec installments demo "$@"
