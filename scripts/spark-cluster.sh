#!/usr/bin/env bash
# A local Spark standalone cluster on 127.0.0.1: one master and two workers (one
# core, 1 GiB each), from the pyspark that scripts/setup.sh installs. For running
# the aggregation on a real cluster manager without a real cluster:
#
#   scripts/spark-cluster.sh up
#   ridectl aggregate --engine spark --master spark://127.0.0.1:7077 --bounded
#   scripts/spark-cluster.sh down
#
#   up      start the master and the workers; return once both workers registered
#   status  what runs, as the master sees it
#   down    stop exactly the processes `up` started (pid files)
#
# Environment: SPARK_MASTER_PORT (7077), SPARK_MASTER_WEBUI_PORT (8080),
# SPARK_WORKER_WEBUI_PORT (8081, the second worker the next port; 0: any free port),
# SPARK_WORKER_CORES (1), SPARK_WORKER_MEMORY (1g), SPARK_CLUSTER_STATE (state and
# logs; .ridectl/state/spark-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=$ROOT/.ridectl/cache/venv
STATE=${SPARK_CLUSTER_STATE:-$ROOT/.ridectl/state/spark-cluster}
MASTER_PORT=${SPARK_MASTER_PORT:-7077}
WEBUI_PORT=${SPARK_MASTER_WEBUI_PORT:-8080}
WORKER_WEBUI_PORT=${SPARK_WORKER_WEBUI_PORT:-$((WEBUI_PORT + 1))}
CORES=${SPARK_WORKER_CORES:-1}
MEMORY=${SPARK_WORKER_MEMORY:-1g}
MASTER_URL=spark://127.0.0.1:$MASTER_PORT

SPARK_HOME=$(ls -d "$VENV"/lib/python3.*/site-packages/pyspark 2>/dev/null | tail -n 1)
if [ -z "$SPARK_HOME" ] || [ ! -x "$SPARK_HOME/bin/spark-class" ]; then
  echo "error: pyspark is not installed in $VENV: run scripts/setup.sh" >&2
  exit 69
fi
export SPARK_HOME
export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOG_DIR=$STATE/logs SPARK_PID_DIR=$STATE/pids
export PYSPARK_PYTHON=$VENV/bin/python

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# start NAME CLASS ARGS...: runs spark-class in the background, records its pid.
start() {
  local name=$1; shift
  local pid=$STATE/pids/$name.pid
  if running "$pid"; then echo "$name: already running (pid $(cat "$pid"))"; return; fi
  nohup "$SPARK_HOME/bin/spark-class" "$@" >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$pid"
  echo "$name: started (pid $!, log $STATE/logs/$name.log)"
}

alive_workers() {
  curl -s -m 2 "http://127.0.0.1:$WEBUI_PORT/json/" |
    sed -n 's/.*"aliveworkers" *: *\([0-9]*\).*/\1/p'
}

up() {
  mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/work"
  start master org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$MASTER_PORT" --webui-port "$WEBUI_PORT"
  for i in 1 2; do
    local ui=0
    [ "$WORKER_WEBUI_PORT" = 0 ] || ui=$((WORKER_WEBUI_PORT + i - 1))
    start "worker-$i" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --cores "$CORES" --memory "$MEMORY" \
      --webui-port "$ui" --work-dir "$STATE/work/worker-$i" "$MASTER_URL"
  done
  for _ in $(seq 1 120); do
    if [ "$(alive_workers)" = 2 ]; then
      echo "Spark standalone cluster up: $MASTER_URL (web UI http://127.0.0.1:$WEBUI_PORT), 2 workers"
      return
    fi
    sleep 1
  done
  echo "error: the workers did not register within 120 s; see $STATE/logs" >&2
  exit 1
}

down() {
  for name in worker-2 worker-1 master; do
    local pid=$STATE/pids/$name.pid
    if running "$pid"; then
      # spark-class execs java: the recorded pid is the JVM.
      kill "$(cat "$pid")" && echo "$name: stopped"
    fi
    rm -f "$pid"
  done
}

status() {
  for name in master worker-1 worker-2; do
    if running "$STATE/pids/$name.pid"; then
      echo "$name: running (pid $(cat "$STATE/pids/$name.pid"))"
    else
      echo "$name: down"
    fi
  done
  local n; n=$(alive_workers)
  echo "master $MASTER_URL: ${n:-not answering} alive workers"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|status|down" >&2; exit 2 ;;
esac
