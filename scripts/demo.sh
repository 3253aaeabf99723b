#!/usr/bin/env bash
# The main job on the local stack: installs what is needed, starts Kafka and the
# ClickHouse endpoint, provisions topics and tables, then runs the pipeline until
# Ctrl-C, which stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
RIDECTL=target/release/ridectl

$RIDECTL local up
$RIDECTL topics create
$RIDECTL schema apply
$RIDECTL local status
