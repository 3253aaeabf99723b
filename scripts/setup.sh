#!/usr/bin/env bash
# Installs everything ridectl needs on a fresh Debian/Ubuntu machine, idempotently:
#   - system packages (Java 17, Maven, Python venv, a C toolchain for librdkafka)
#   - the Kafka jars, resolved from Maven Central by scripts/kafka/pom.xml
#   - the Spark Kafka connector jars, resolved by scripts/spark/pom.xml
#   - the Python virtualenv with chDB (and pyspark) from PyPI
#   - the driver matrix's clients (tests/drivers): clickhouse-go (Go modules),
#     @clickhouse/client (npm), the ClickHouse JDBC driver (Maven Central)
#   - the dashboard's front-end parts from npm (uPlot: `npm ci` on dashboard/package-lock.json)
#     and headless Chromium (Debian `chromium`) for the dashboard's browser test
#   - the ridectl binary (cargo build --release)
# Each step is skipped when its inputs have not changed (stamp files in the cache).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=$ROOT/.ridectl/cache   # = local.cache_dir in pipeline.yaml
mkdir -p "$CACHE"
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# 1. System packages (only what is missing; needs root or sudo).
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v cc >/dev/null || need+=(build-essential)
command -v make >/dev/null || need+=(make)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v curl >/dev/null || need+=(curl)
command -v go >/dev/null || need+=(golang-go)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  log "installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null || { echo "error: cargo (Rust 1.85+) is required: https://rustup.rs" >&2; exit 1; }

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# 2. Kafka jars from Maven Central.
KAFKA_LIBS=$CACHE/kafka-libs
sum=$(sha256sum scripts/kafka/pom.xml | cut -d' ' -f1)
if ! stamp_ok "$KAFKA_LIBS/.stamp" "$sum"; then
  log "resolving Apache Kafka jars with Maven"
  rm -rf "$KAFKA_LIBS"
  mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS"
  echo "$sum" > "$KAFKA_LIBS/.stamp"
fi

# 2b. The Spark Kafka connector from Maven Central (for `ridectl aggregate --engine
#     spark`): the jars pyspark lacks, for its Spark and Scala versions.
SPARK_JARS=$CACHE/spark-jars
sum=$(cat scripts/spark/pom.xml scripts/requirements-spark.txt | sha256sum | cut -d' ' -f1)
if ! stamp_ok "$SPARK_JARS/.stamp" "$sum"; then
  log "resolving the Spark Kafka connector jars with Maven"
  rm -rf "$SPARK_JARS"
  mvn -q -B -f scripts/spark/pom.xml dependency:copy-dependencies -DoutputDirectory="$SPARK_JARS"
  echo "$sum" > "$SPARK_JARS/.stamp"
fi

# 3. Python virtualenv (chDB endpoint, pyspark, test tools).
VENV=$CACHE/venv
sum=$(cat scripts/requirements*.txt | sha256sum | cut -d' ' -f1)
if ! stamp_ok "$VENV/.stamp" "$sum"; then
  log "creating the Python virtualenv in $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
  echo "$sum" > "$VENV/.stamp"
fi

# 4. The driver matrix (tests/drivers, run by scripts/test.sh): each client library
#    from its own registry, into the cache; nothing is fetched when the tests run.
DRIVERS=tests/drivers
export GOMODCACHE=$CACHE/go/mod GOFLAGS=-mod=mod
sum=$(cat $DRIVERS/go/go.mod $DRIVERS/go/go.sum | sha256sum | cut -d' ' -f1)
if ! stamp_ok "$CACHE/go/.stamp" "$sum"; then
  log "downloading clickhouse-go (Go modules) and compiling its tests"
  (cd $DRIVERS/go && go mod download && go test -count=1 -run '^$' ./... >/dev/null)
  echo "$sum" > "$CACHE/go/.stamp"
fi
sum=$(sha256sum $DRIVERS/node/package-lock.json | cut -d' ' -f1)
if ! stamp_ok "$DRIVERS/node/node_modules/.stamp" "$sum"; then
  log "installing @clickhouse/client (npm ci)"
  (cd $DRIVERS/node && npm ci --no-audit --no-fund --cache "$CACHE/npm" >/dev/null)
  echo "$sum" > "$DRIVERS/node/node_modules/.stamp"
fi
sum=$(sha256sum $DRIVERS/jdbc/pom.xml | cut -d' ' -f1)
mkdir -p "$CACHE/jdbc"
if ! stamp_ok "$CACHE/jdbc/.stamp" "$sum"; then
  log "resolving the ClickHouse JDBC driver and JUnit with Maven"
  mvn -q -B -f $DRIVERS/jdbc/pom.xml dependency:go-offline test-compile
  echo "$sum" > "$CACHE/jdbc/.stamp"
fi

# 4b. The dashboard's front-end parts from npm, exactly as package-lock.json pins them
#     (version and integrity hash; downloads cached in the cache directory). The
#     minified files are committed under dashboard/vendor/ (so `cargo build` works
#     without npm) and embedded in the binary: they must be the package's own.
sum=$(sha256sum dashboard/package-lock.json | cut -d' ' -f1)
if ! stamp_ok dashboard/node_modules/.ridectl-stamp "$sum"; then
  log "installing the dashboard's npm packages (npm ci)"
  (cd dashboard && npm ci --no-audit --no-fund --silent --cache "$CACHE/npm")
  echo "$sum" > dashboard/node_modules/.ridectl-stamp
fi
for f in uPlot.iife.min.js uPlot.min.css; do
  if ! cmp -s "dashboard/node_modules/uplot/dist/$f" "dashboard/vendor/$f"; then
    log "dashboard/vendor/$f differs from the npm package: updating it (commit the change)"
    cp "dashboard/node_modules/uplot/dist/$f" "dashboard/vendor/$f"
  fi
done

# 5. The ridectl binary.
log "building ridectl (cargo build --release)"
cargo build --release --quiet
log "setup complete: target/release/ridectl"
