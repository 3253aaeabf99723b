#!/usr/bin/env bash
# The main job on the local stack: installs what is needed, starts Kafka and the
# ClickHouse endpoint, provisions topics and tables, then runs the whole pipeline —
# the generator at 50,000 events/min with a surge and a cancellation spike
# scheduled, the aggregation worker, the ingest worker, alert evaluation (dry run:
# PagerDuty events are printed to .ridectl/demo-logs/alerts.log) — the live web
# dashboard (`ridectl dashboard`, http://127.0.0.1:3000/ or RIDECTL_DASHBOARD_LISTEN)
# and a live `query city-stats` view, until Ctrl-C, which stops everything this
# script started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
RIDECTL=target/release/ridectl
LOGS=.ridectl/demo-logs
mkdir -p "$LOGS"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping the pipeline..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  $RIDECTL local down
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

$RIDECTL local up
$RIDECTL topics create
$RIDECTL schema apply

start() { # name, then the ridectl arguments
  local name=$1; shift
  $RIDECTL "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
  echo "started $name (pid $!, log $LOGS/$name.log)"
}
start ingest ingest
start aggregate aggregate
start generate generate --rate 50000/min --duration 24h \
  --surge berlin:x2@2m+5m --cancel-spike prague:0.5@1m+7m
start alerts alerts watch --every 30s --dry-run
DASH_LISTEN=${RIDECTL_DASHBOARD_LISTEN:-127.0.0.1:3000}
start dashboard dashboard --listen "$DASH_LISTEN"
DASH_URL="http://$DASH_LISTEN/"
for _ in $(seq 50); do curl -fs -o /dev/null "${DASH_URL}api/dashboard" && break; sleep 0.2; done
echo
echo "live dashboard: $DASH_URL  (the Grafana dashboard, rendered by ridectl; new data within a second)"

sleep 5
# The live view runs in the foreground, the dashboard's URL above it; Ctrl-C ends it
# and the trap stops the rest.
while :; do
  printf '\033[2J\033[H'
  echo "ridectl query city-stats — every 10s (Ctrl-C to stop) · dashboard: $DASH_URL"
  $RIDECTL query city-stats --since 15m || true
  sleep 10
done
