#!/usr/bin/env bash
# Runs every test of ridectl: Rust unit and integration tests, and the Python tests
# of the ClickHouse endpoint. Integration tests talk to a real local stack (Kafka in
# KRaft mode + the chDB ClickHouse endpoint) that this script starts on its own
# ports and state directory, and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# A test stack apart from the demo's (ports 9092/8123, .ridectl/state). Other ports
# with RIDECTL_TEST_KAFKA_PORT / RIDECTL_TEST_CLICKHOUSE_PORT (a second checkout
# testing beside a running one).
kafka_port=${RIDECTL_TEST_KAFKA_PORT:-19092}
clickhouse_port=${RIDECTL_TEST_CLICKHOUSE_PORT:-18123}
export RIDECTL_STATE_DIR=.ridectl/test-state
export RIDECTL_KAFKA_PORT=$kafka_port
export RIDECTL_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$kafka_port
export RIDECTL_CLICKHOUSE_PORT=$clickhouse_port
export RIDECTL_CLICKHOUSE_URL=http://127.0.0.1:$clickhouse_port
RIDECTL=target/release/ridectl

$RIDECTL local down --purge >/dev/null
trap '$RIDECTL local down >/dev/null || true' EXIT
$RIDECTL local up

status=0
cargo test --release --no-fail-fast || status=$?
.ridectl/cache/venv/bin/python -m pytest tests/python -q -p no:cacheprovider || status=$?
# The fault-injection suite, reduced to one 30-second run of each fault (about 7
# minutes; the full suite and its results: docs/faults.md), on a stack of its own.
FAULTS_KAFKA_PORT=$((kafka_port + 100)) FAULTS_CLICKHOUSE_PORT=$((clickhouse_port + 100)) FAULTS_STATE_DIR=.ridectl/test-faults-state \
  RIDECTL_BIN=$RIDECTL scripts/faults.sh --runs 1 --duration 30s --out .ridectl/test-faults || status=$?
exit $status
