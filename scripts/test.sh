#!/usr/bin/env bash
# Runs every test of ridectl: Rust unit and integration tests, the Python tests of
# the ClickHouse endpoint, and the driver matrix (tests/drivers: clickhouse-go,
# clickhouse-connect, @clickhouse/client, JDBC; the Rust crate's part is in
# tests/clickhouse.rs). Integration tests talk to a real local stack (Kafka in
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
# The endpoint's users: `default` (no password) and a read-only `grafana`, the
# Grafana data source's user (docs/grafana.md).
mkdir -p "$RIDECTL_STATE_DIR"
readonly_password=grafana-test-pw
printf '{"users": {"default": {"password": ""}, "grafana": {"password": "%s", "readonly": true}}}\n' \
  "$readonly_password" > "$RIDECTL_STATE_DIR/clickhouse-users.json"
trap '$RIDECTL local down >/dev/null || true' EXIT
$RIDECTL local up

status=0
# tests/grafana.rs writes the dashboard's queries, expanded, for the Go driver below.
export RIDECTL_DRIVER_QUERIES=$PWD/target/driver-matrix/grafana-queries.json
rm -f "$RIDECTL_DRIVER_QUERIES"
cargo test --release --no-fail-fast || status=$?
.ridectl/cache/venv/bin/python -m pytest tests/python -q -p no:cacheprovider || status=$?

# The driver matrix: each client library against the same endpoint; one failing
# driver fails the run.
export RIDECTL_TEST_CLICKHOUSE_URL=$RIDECTL_CLICKHOUSE_URL
export RIDECTL_TEST_CLICKHOUSE_ADDR=127.0.0.1:$clickhouse_port
export RIDECTL_TEST_READONLY_USER=grafana RIDECTL_TEST_READONLY_PASSWORD=$readonly_password
driver() { printf '\033[1m==> driver matrix: %s\033[0m\n' "$1" >&2; }
driver "clickhouse-go v2 (HTTP), with the Grafana queries"
(export GOMODCACHE=$PWD/.ridectl/cache/go/mod GOFLAGS=-mod=mod && cd tests/drivers/go && go test -count=1 -v ./...) || status=$?
driver "clickhouse-connect"
.ridectl/cache/venv/bin/python -m pytest tests/drivers/python -q -p no:cacheprovider || status=$?
driver "@clickhouse/client"
(cd tests/drivers/node && node --test) || status=$?
driver "ClickHouse JDBC (jdbc-v2)"
mvn -B -ntp -f tests/drivers/jdbc/pom.xml test || status=$?
# The fault-injection suite, reduced to one 30-second run of each fault (about 7
# minutes; the full suite and its results: docs/faults.md), on a stack of its own.
FAULTS_KAFKA_PORT=$((kafka_port + 100)) FAULTS_CLICKHOUSE_PORT=$((clickhouse_port + 100)) FAULTS_STATE_DIR=.ridectl/test-faults-state \
  RIDECTL_BIN=$RIDECTL scripts/faults.sh --runs 1 --duration 30s --out .ridectl/test-faults || status=$?
exit $status
