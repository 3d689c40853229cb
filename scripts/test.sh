#!/usr/bin/env bash
# README command two: the whole test suite on the real stack.
# Installs what is missing (Chromium and its driver for the browser tests too), brings
# up the local Kafka broker and PostgreSQL (unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL
# point elsewhere), runs pytest.
# Lint and type checks (scripts/lint.sh) run first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The console's browser tests (tests/integration/test_console_browser.py) drive Debian's
# headless Chromium through its chromedriver; install both when missing (as root, like CI).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "test: installing chromium and chromium-driver (browser tests)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# The alert rules are checked and unit-tested with promtool (tests/unit/test_alerts.py);
# Debian's prometheus package ships it.
if ! command -v promtool >/dev/null; then
  echo "test: installing prometheus (promtool, alert rule tests)" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
bash scripts/lint.sh
installments stack up
python -m pytest -p no:cacheprovider "$@"
