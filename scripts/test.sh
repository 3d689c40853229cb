#!/usr/bin/env bash
# README command two: the whole test suite on the real stack.
# Installs what is missing (Chromium and its driver for the browser tests too), brings
# up the local Kafka broker and PostgreSQL (unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL
# point elsewhere), runs pytest. Lint and type checks (scripts/lint.sh) run first.
# Then, unless tests were selected by argument: the unit suite on Python 3.12 and 3.13,
# the purchases-to-offers tests again with the broker and database as containers
# (testcontainers), and the docker-compose system with a story through it. A Docker
# engine is started for those when none answers (and stopped again); images that cannot
# be pulled are built locally (scripts/docker.sh; slow parts cached outside the clone).
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

# Arguments that select tests (anything not starting with "-") run just those; with none,
# the other stages run too (INSTALLMENTS_TEST_EXTRAS=0 skips them).
extras=${INSTALLMENTS_TEST_EXTRAS:-1}
for arg in "$@"; do case "$arg" in -*) ;; *) extras=0 ;; esac; done
stage() { echo; echo "test: == $* ==" >&2; }
started=$SECONDS

stage "1/4 the whole suite on Python $(python -c 'import platform; print(platform.python_version())'), local Kafka + PostgreSQL"
python -m pytest -p no:cacheprovider "$@"
[ "$extras" = 1 ] || exit 0

stage "2/4 the unit suite on Python 3.12 and 3.13 (scripts/test-pythons.sh)"
bash scripts/test-pythons.sh 3.12 3.13 -- "$@"

stage "3/4 the purchases-to-offers tests on containers (testcontainers; scripts/docker.sh images)"
bash scripts/docker.sh engine
trap 'bash scripts/docker.sh stop-engine' EXIT
eval "$(bash scripts/docker.sh images | sed 's/^/export /')"
INSTALLMENTS_TEST_STACK=containers python -m pytest -p no:cacheprovider "$@" \
  tests/integration/test_suite_stack.py tests/integration/test_purchases.py tests/integration/test_offers.py

stage "4/4 docker compose: the whole system, a story through it, lag 0, invariants, down -v"
bash scripts/docker.sh story
echo "test: every stage passed in $((SECONDS - started)) s" >&2
