#!/usr/bin/env bash
# The whole fault matrix with one command (issue 8): the full seeded fault suite
# (`installments faults`: calm vs faulted run of a 30-account, 45-day story, invariants,
# offsets watched), then the reliability tests at full size: 10,000 hostile inputs, the
# three-node cluster (leader kills, two of three nodes down), crashes between the commit
# steps, fencing, the Kafka client workarounds, SASL_SSL and ACLs.
# Extra arguments go to `installments faults` (e.g. --seed 7 --every 1.0).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
installments stack up
installments faults "$@"
INSTALLMENTS_FAULTS_FULL=1 python -m pytest -p no:cacheprovider -q \
  tests/integration/test_faults.py \
  tests/integration/test_hostile.py \
  tests/integration/test_cluster.py \
  tests/integration/test_purchases.py \
  tests/integration/test_stored_offsets.py \
  tests/integration/test_kafka_compat.py \
  tests/integration/test_security.py
