#!/usr/bin/env bash
# Fault-injection suite (issue #8; docs/faults.md). Each run: fresh topics, consumer
# groups and ClickHouse database; `aggregate` and `ingest` streaming in the background;
# `generate --rate RATE --duration DURATION`; one fault injected at a random moment;
# then the workers are stopped (SIGTERM), drained with bounded runs, and the result is
# checked with `ridectl verify --expect-delivered N --max-late 0` (ride_events =
# delivered events, each once; city_window_metrics = oracle; no event judged late; no
# valid event dead-lettered).
#
#   scripts/faults.sh                                   every scenario (10 runs of each kill)
#   scripts/faults.sh kill-aggregate kill-ingest --runs 3
#   scripts/faults.sh --runs 1 --duration 30s           a reduced pass (one run of each)
#
# Scenarios: kill-aggregate kill-ingest broker-stop broker-pause clickhouse-stop broker-loss
# Options:   --runs N (SIGKILL runs per worker, default 10), --duration D (default 60s),
#            --rate R (default 50000/min), --seed S (fault moments), --out DIR, --keep-stack,
#            --wire full|seed|alternate (the generator's event form; default alternate:
#            every second run sends seed-design events, without event_id)
# Environment: RIDECTL_BIN (default $CARGO_TARGET_DIR/release/ridectl, else
#            target/release/ridectl), FAULTS_KAFKA_PORT (24092; 3 brokers: +0..2),
#            FAULTS_CLICKHOUSE_PORT (23123), FAULTS_STATE_DIR (.ridectl/faults-state).
# Exit code: 0 when every run verified, 1 otherwise, 2 for a usage error.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ALL_SCENARIOS=(kill-aggregate kill-ingest broker-stop broker-pause clickhouse-stop broker-loss)
RUNS=10
DURATION=60s
RATE=50000/min
SEED=""
OUT=""
KEEP_STACK=0
WIRE=alternate
RUN_COUNT=0
SCENARIOS=()
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --rate) RATE=${2:?}; shift 2 ;;
    --seed) SEED=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --keep-stack) KEEP_STACK=1; shift ;;
    --wire) WIRE=${2:?}; shift 2 ;;
    -h|--help) usage 0 ;;
    -*) echo "unknown option $1" >&2; usage 2 ;;
    *) if [[ " ${ALL_SCENARIOS[*]} " == *" $1 "* ]]; then SCENARIOS+=("$1"); shift
       else echo "unknown scenario $1 (one of: ${ALL_SCENARIOS[*]})" >&2; exit 2; fi ;;
  esac
done
[ ${#SCENARIOS[@]} -eq 0 ] && SCENARIOS=("${ALL_SCENARIOS[@]}")
case "$WIRE" in full|seed|alternate) ;; *) echo "--wire must be full, seed or alternate" >&2; exit 2 ;; esac
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "--runs must be a positive integer" >&2; exit 2; }
DUR_S=$(python3 -c "import re,sys; m=re.fullmatch(r'(\d+)(s|m)?', sys.argv[1]); print(int(m[1])*(60 if m[2]=='m' else 1) if m else '')" "$DURATION")
[ -n "$DUR_S" ] && [ "$DUR_S" -ge 20 ] || { echo "--duration must be like 60s or 2m, at least 20s" >&2; exit 2; }
[ -n "$SEED" ] && RANDOM=$SEED

BIN=${RIDECTL_BIN:-${CARGO_TARGET_DIR:-target}/release/ridectl}
[ -x "$BIN" ] || { echo "no ridectl binary at $BIN: cargo build --release (or set RIDECTL_BIN)" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

KPORT=${FAULTS_KAFKA_PORT:-24092}
CHPORT=${FAULTS_CLICKHOUSE_PORT:-23123}
STATE1=$(mkdir -p "${FAULTS_STATE_DIR:-.ridectl/faults-state}" && cd "${FAULTS_STATE_DIR:-.ridectl/faults-state}" && pwd)
STATE3=$STATE1-3brokers
mkdir -p "$STATE3"
OUT=${OUT:-.ridectl/faults/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
# Every command of the suite talks to the suite's stack, never to another one.
unset RIDECTL_CONFIG RIDECTL_PROFILE RIDECTL_CLICKHOUSE_USER RIDECTL_CLICKHOUSE_PASSWORD
export RIDECTL_KAFKA_PORT=$KPORT RIDECTL_CLICKHOUSE_PORT=$CHPORT
export RIDECTL_CLICKHOUSE_URL=http://127.0.0.1:$CHPORT
export RIDECTL_LOG=${RIDECTL_LOG:-info}

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/suite.log" >&2; }

# --- the stack ------------------------------------------------------------------
MODE=""        # 1 or 3 brokers: the stack currently up
use_stack() {  # use_stack 1|3: the environment of that stack (does not start it)
  if [ "$1" = 3 ]; then
    export RIDECTL_STATE_DIR=$STATE3
    export RIDECTL_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KPORT,127.0.0.1:$((KPORT + 1)),127.0.0.1:$((KPORT + 2))
  else
    export RIDECTL_STATE_DIR=$STATE1
    export RIDECTL_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KPORT
  fi
}
local_cmd() { "$BIN" --config "$ROOT/pipeline.yaml" local "$@"; }
stack() {  # stack 1|3: that stack up (the other one down), fresh
  [ "$MODE" = "$1" ] && return 0
  local other=$((4 - $1))
  use_stack "$other"; local_cmd down --purge >/dev/null 2>&1
  use_stack "$1"; local_cmd down --purge >/dev/null 2>&1
  log "starting the local stack with $1 broker(s)"
  local_cmd up --brokers "$1" >>"$OUT/stack.log" 2>&1 || { log "local up failed (see $OUT/stack.log)"; return 1; }
  MODE=$1
}
pid_of() {  # pid_of COMPONENT: its pid if running and ours (the marker is the state dir)
  local f=$RIDECTL_STATE_DIR/pids/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(head -n1 "$f")
  [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$RIDECTL_STATE_DIR" || return 1
  echo "$pid"
}
stop_component() {  # SIGTERM, wait for the exit (SIGKILL after 30 s)
  local pid; pid=$(pid_of "$1") || return 0
  kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid"
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null; sleep 0.5
}

# --- one run ----------------------------------------------------------------------
WORKERS=()     # pids of background workers, for the exit trap
AGG="" ING="" LAST_PID="" STOP_RC=""
cleanup() {
  for p in "${WORKERS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for c in kafka-1 kafka-2 kafka-3; do p=$(pid_of "$c") && kill -CONT "$p" 2>/dev/null; done
  if [ "$KEEP_STACK" = 0 ] && [ -n "$MODE" ]; then use_stack "$MODE"; local_cmd down >/dev/null 2>&1; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A configuration of its own per run: topics and groups suffixed with the run's tag
# (the ClickHouse database comes from RIDECTL_CLICKHOUSE_DATABASE); consumers use the
# broker's minimum session timeout so a SIGKILLed member leaves the group in seconds.
write_config() {  # write_config TAG BROKERS FILE
  local tag=$1 brokers=$2 file=$3
  sed -E \
    -e "s/^(    name: (ride-events|driver-locations|analytics-aggregated|ride-events-dlq|ride-events-late))$/\1-$tag/" \
    -e "s/^(  group_id: ridectl-(aggregate|ingest))$/\1-$tag/" \
    -e 's/^  consumer: \{\}(.*)$/  consumer: {session.timeout.ms: 6000, heartbeat.interval.ms: 1000}\1/' \
    -e "s#^  state_dir: .*#  state_dir: $RIDECTL_STATE_DIR#" \
    -e "s#^  cache_dir: .*#  cache_dir: $ROOT/.ridectl/cache#" \
    "$ROOT/pipeline.yaml" >"$file"
  if [ "$brokers" = 3 ]; then
    sed -i -E -e 's/^    replication_factor: 1$/    replication_factor: 3/' \
      -e 's/^    config: \{\}$/    config: {min.insync.replicas: 2}/' "$file"
  fi
  local want=$((5 + 2 + 1 + (brokers == 3 ? 2 : 0)))
  local got; got=$(diff "$ROOT/pipeline.yaml" "$file" | grep -c '^>')
  [ "$got" -ge "$want" ] || { log "derived config: $got of $want edits applied (pipeline.yaml changed?)"; return 1; }
}

start_worker() {  # start_worker aggregate|ingest N: in the background; sets LAST_PID
  local what=$1 n=$2 args=()
  [ "$what" = ingest ] && args=(--from-beginning)
  "$BIN" --config "$CFG" "$what" "${args[@]}" --format json \
    >"$DIR/$what-$n.out" 2>"$DIR/$what-$n.log" &
  LAST_PID=$!
  WORKERS+=("$LAST_PID")
}
stop_worker() {  # stop_worker PID: SIGTERM, wait at most 30 s; sets STOP_RC
  local pid=$1
  if ! kill -0 "$pid" 2>/dev/null; then  # it exited by itself: a finding
    wait "$pid"; STOP_RC="died:$?"; return
  fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"; wait "$pid" 2>/dev/null; STOP_RC=killed
  else
    wait "$pid"; STOP_RC=$?
  fi
}

# The fault, injected while the generator runs (in the background). Writes what it
# did to $DIR/fault.txt; a restarted worker's pid replaces AGG or ING.
inject() {  # inject SCENARIO AT_SECONDS
  local scenario=$1 at=$2
  sleep "$at"
  case "$scenario" in
    kill-aggregate|kill-ingest)
      local what=${scenario#kill-} pid
      if [ "$what" = aggregate ]; then pid=$AGG; else pid=$ING; fi
      if kill -KILL "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null
        echo "SIGKILL $what (pid $pid) at ${at}s" >>"$DIR/fault.txt"
      else
        echo "$what (pid $pid) had already exited at ${at}s" >>"$DIR/fault.txt"
      fi
      start_worker "$what" 2
      if [ "$what" = aggregate ]; then AGG=$LAST_PID; else ING=$LAST_PID; fi
      echo "restarted $what (pid $LAST_PID)" >>"$DIR/fault.txt" ;;
    broker-stop)
      stop_component kafka-1
      echo "broker stopped (SIGTERM) at ${at}s" >>"$DIR/fault.txt"
      sleep 30
      local_cmd up >>"$DIR/stack.log" 2>&1
      echo "broker restarted after 30s (local up exit $?)" >>"$DIR/fault.txt" ;;
    broker-pause)
      local pid; pid=$(pid_of kafka-1)
      kill -STOP "$pid" && echo "broker SIGSTOP at ${at}s" >>"$DIR/fault.txt"
      sleep 20
      kill -CONT "$pid" && echo "broker SIGCONT after 20s" >>"$DIR/fault.txt" ;;
    clickhouse-stop)
      stop_component clickhouse
      echo "ClickHouse endpoint stopped at ${at}s" >>"$DIR/fault.txt"
      sleep 60
      local_cmd up >>"$DIR/stack.log" 2>&1
      echo "ClickHouse endpoint restarted after 60s (local up exit $?)" >>"$DIR/fault.txt" ;;
    broker-loss)
      local node=$((RANDOM % 3 + 1)) pid
      pid=$(pid_of "kafka-$node")
      kill -KILL "$pid" && echo "SIGKILL broker kafka-$node (pid $pid) at ${at}s; it stays down" >>"$DIR/fault.txt" ;;
  esac
}

run_one() {  # run_one SCENARIO INDEX
  local scenario=$1 index=$2 brokers=1 started=$SECONDS
  [ "$scenario" = broker-loss ] && brokers=3
  stack "$brokers" || return 1
  local tag; tag="$(echo "$scenario" | tr -d -)$index-$(date +%s)"
  DIR=$OUT/$scenario-$index
  rm -rf "$DIR" && mkdir -p "$DIR"
  CFG=$DIR/pipeline.yaml
  export RIDECTL_CLICKHOUSE_DATABASE=faults_${tag//-/_}
  write_config "$tag" "$brokers" "$CFG" || return 1
  local rc_setup=0
  "$BIN" --config "$CFG" topics create >"$DIR/setup.log" 2>&1 || rc_setup=1
  "$BIN" --config "$CFG" schema apply --dir "$ROOT/sql/schema" >>"$DIR/setup.log" 2>&1 || rc_setup=1
  if [ $rc_setup != 0 ]; then log "$scenario #$index: set-up failed (see $DIR/setup.log)"; return 1; fi

  start_worker aggregate 1; AGG=$LAST_PID
  start_worker ingest 1; ING=$LAST_PID
  local at=$((10 + RANDOM % (DUR_S - 19)))   # uniform in [10 s, duration - 10 s]
  local wire=$WIRE
  RUN_COUNT=$((RUN_COUNT + 1))
  [ "$wire" = alternate ] && { [ $((RUN_COUNT % 2)) = 0 ] && wire=seed || wire=full; }
  log "$scenario #$index: generating for $DURATION at $RATE ($wire events), fault at ${at}s"
  timeout $((DUR_S + 300)) "$BIN" --config "$CFG" generate --rate "$RATE" --duration "$DURATION" \
    --wire "$wire" --flush-timeout 5m --format json >"$DIR/generate.json" 2>"$DIR/generate.log" &
  local gen=$!
  inject "$scenario" "$at"
  wait "$gen"
  local gen_rc=$?
  # Stop the streaming workers, then finish with bounded runs (which close every window).
  local agg_rc ing_rc
  stop_worker "$AGG"; agg_rc=$STOP_RC
  stop_worker "$ING"; ing_rc=$STOP_RC
  timeout 600 "$BIN" --config "$CFG" ingest --bounded --from-beginning --format json \
    >"$DIR/ingest-bounded.json" 2>"$DIR/ingest-bounded.log"
  local ingb_rc=$?
  timeout 600 "$BIN" --config "$CFG" aggregate --bounded --format json \
    >"$DIR/aggregate-bounded.json" 2>"$DIR/aggregate-bounded.log"
  local aggb_rc=$?
  local delivered
  delivered=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ride_events"]["delivered"])' \
    "$DIR/generate.json" 2>/dev/null || echo "")
  local verify_rc=1
  if [ -n "$delivered" ]; then
    timeout 600 "$BIN" --config "$CFG" verify --expect-delivered "$delivered" --max-late 0 --format json \
      >"$DIR/verify.json" 2>"$DIR/verify.log"
    verify_rc=$?
  fi
  local secs=$((SECONDS - started))
  python3 - "$DIR" "$scenario" "$index" "$at" "$gen_rc" "$agg_rc" "$ing_rc" "$ingb_rc" "$aggb_rc" \
    "$verify_rc" "$secs" "$wire" >>"$RESULTS" <<'EOF'
import json, sys
d, scenario, index, at, gen, agg, ing, ingb, aggb, ver, secs, wire = sys.argv[1:]
def load(name):
    try:
        return json.load(open(f"{d}/{name}"))
    except Exception:
        return {}
g, v = load("generate.json"), load("verify.json")
re_, w, s = v.get("ride_events", {}), v.get("windows", {}), v.get("side_outputs", {})
try:
    fault = open(f"{d}/fault.txt").read().strip().replace("\n", "; ")
except OSError:
    fault = ""
# The streaming workers must survive the fault (only the SIGKILL scenarios kill one,
# and it is restarted) and stop cleanly on SIGTERM.
ok = all(x == "0" for x in (gen, agg, ing, ingb, aggb, ver)) and v.get("passed") is True
print(json.dumps({
    "scenario": scenario, "run": int(index), "wire": wire, "fault_at_s": int(at), "fault": fault,
    "delivered": g.get("ride_events", {}).get("delivered"),
    "generator_failed": g.get("ride_events", {}).get("failed"),
    "ride_events_rows": re_.get("rows"), "duplicates": re_.get("duplicates"),
    "missing": re_.get("missing"), "foreign": re_.get("foreign"),
    "rollup_events": re_.get("rollup_events"),
    "windows_expected": w.get("expected"), "windows_matching": w.get("matching"),
    "windows_ok": (w.get("expected") == w.get("matching") == w.get("actual")) if w else None,
    "dlq_valid": s.get("dead_letter_valid"), "late": s.get("late_events"),
    "exit_codes": {"generate": gen, "aggregate_stop": agg, "ingest_stop": ing,
                   "ingest_bounded": ingb, "aggregate_bounded": aggb, "verify": ver},
    "seconds": int(secs), "passed": ok,
}))
EOF
  local line; line=$(tail -n1 "$RESULTS")
  if python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["passed"] else 1)' "$line"; then
    log "$scenario #$index: PASSED in ${secs}s"
    # Keep the broker light: a passing run's topics go (its logs and database stay).
    for t in ride-events driver-locations analytics-aggregated ride-events-dlq ride-events-late; do
      "$BIN" --config "$CFG" topics delete "$t-$tag" --yes >/dev/null 2>&1
    done
  else
    log "$scenario #$index: FAILED in ${secs}s (details in $DIR)"
  fi
}

log "fault suite: ${SCENARIOS[*]}; $RUNS run(s) per SIGKILL scenario; $DURATION at $RATE; results in $OUT"
for scenario in "${SCENARIOS[@]}"; do
  n=1
  case "$scenario" in kill-*) n=$RUNS ;; esac
  for i in $(seq "$n"); do run_one "$scenario" "$i" || log "$scenario #$i: could not run"; done
done

python3 - "$RESULTS" "${SCENARIOS[@]}" <<'EOF' | tee "$OUT/summary.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| fault | run | events | fault at | delivered | in ride_events | duplicates | missing | windows = oracle | DLQ valid | late | workers | duration | outcome |")
print("|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---|")
for r in rows:
    w = "-" if r["windows_ok"] is None else (f"yes ({r['windows_matching']})" if r["windows_ok"] else f"NO ({r['windows_matching']}/{r['windows_expected']})")
    f = lambda k: "-" if r.get(k) is None else str(r[k])
    e = r["exit_codes"]
    bad = [f"{k.split('_')[0]} {e[k]}" for k in ("aggregate_stop", "ingest_stop") if e[k] != "0"]
    workers = "ok" if not bad else ", ".join(bad)
    print(f"| {r['scenario']} | {r['run']} | {r.get('wire', 'full')} | {r['fault_at_s']} s | {f('delivered')} | {f('ride_events_rows')} | {f('duplicates')} | {f('missing')} | {w} | {f('dlq_valid')} | {f('late')} | {workers} | {r['seconds']} s | {'pass' if r['passed'] else 'FAIL'} |")
runs = {s: 0 for s in sys.argv[2:]}
for r in rows:
    runs[r["scenario"]] += 1
failed = sum(not r["passed"] for r in rows)
short = [s for s, n in runs.items() if n == 0]
print(f"\n{len(rows)} runs, {failed} failed" + (f"; not run: {', '.join(short)}" if short else ""))
sys.exit(1 if failed or short else 0)
EOF
status=${PIPESTATUS[0]}
log "summary: $OUT/summary.md"
exit "$status"
