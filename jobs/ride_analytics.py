"""The Spark engine of `ridectl aggregate --engine spark` (docs/spark.md).

Reads ride events from Kafka, computes per-city metrics over event-time windows
(5 minutes sliding every minute, 30 s watermark by default) and writes every
changed (window, city) row to ClickHouse (`city_window_metrics`, idempotent per
city and window: ReplacingMergeTree) and to the aggregated Kafka topic, in the
same shapes as the native worker (`ridectl aggregate`).

Two modes share one metrics definition ([window_metrics]):

- streaming (default): readStream + withWatermark + update mode + foreachBatch,
  checkpointed, so a restart resumes where the last committed micro-batch ended;
- bounded (--bounded): one batch query over the topic from the earliest offsets
  to the end offsets at start; every window is final (a full recompute, like the
  native `--bounded --from-beginning`).

Every parameter comes from pipeline.yaml through ridectl's command line; secrets
come from the environment (RIDECTL_CLICKHOUSE_PASSWORD, RIDECTL_KAFKA_SASL_PASSWORD),
never from argv. The job uses built-in expressions only (no Python UDFs), so the
executors never start Python.

unique_riders is approx_count_distinct(user_id, rsd): Spark rejects exact distinct
aggregations on streaming DataFrames. The native worker counts exactly.
"""

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from datetime import datetime, timezone

# pyspark imports pandas when it is installed (the virtualenv has it for chDB) and
# warns about its version; this job does not use pandas.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

from pyspark import SparkContext  # noqa: E402
from pyspark.errors import StreamingQueryException  # noqa: E402
from pyspark.sql import DataFrame, Observation, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.types import (  # noqa: E402
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

# The class the Kafka data source registers; present only with the connector jars.
KAFKA_PROVIDER = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
EXIT_UNAVAILABLE = 69  # = ridectl's exit code for a missing dependency
LOG_PREFIX = "ride_analytics"

LAT_LNG = StructType([StructField("lat", DoubleType()), StructField("lng", DoubleType())])

# The fields of a ride event the aggregation reads or validates (docs/events.md).
# Others (driver_id, cancelled_by, anything unknown) are ignored.
EVENT_SCHEMA = StructType(
    [
        StructField("event_id", StringType()),
        StructField("schema_version", LongType()),
        StructField("event_type", StringType()),
        StructField("ride_id", StringType()),
        StructField("timestamp", StringType()),
        StructField("city", StringType()),
        StructField("estimated_fare", DoubleType()),
        StructField("user_id", StringType()),
        StructField("pickup", LAT_LNG),
        StructField("dropoff", LAT_LNG),
        StructField("final_fare", DoubleType()),
    ]
)

EVENT_TYPES = ["requested", "accepted", "started", "completed", "cancelled"]
SCHEMA_VERSION = 1
MAX_CITY_CHARS = 64  # = events::MAX_CITY_CHARS


def log(msg: str) -> None:
    print(f"{LOG_PREFIX}: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--input-topic", required=True)
    p.add_argument("--output-topic", required=True)
    p.add_argument("--window-ms", type=int, required=True)
    p.add_argument("--slide-ms", type=int, required=True)
    p.add_argument("--watermark-ms", type=int, required=True)
    p.add_argument("--trigger-ms", type=int, required=True)
    p.add_argument("--max-clock-skew-ms", type=int, required=True)
    p.add_argument("--rsd", type=float, required=True)
    p.add_argument("--clickhouse-url", required=True)
    p.add_argument("--clickhouse-user", default="default")
    p.add_argument("--clickhouse-database", required=True)
    p.add_argument("--clickhouse-timeout-s", type=float, default=30.0)
    p.add_argument("--table", required=True)
    p.add_argument("--checkpoint", required=True, help="streaming checkpoint location")
    p.add_argument("--bounded", action="store_true")
    p.add_argument("--kafka-security-protocol", default="PLAINTEXT")
    p.add_argument("--kafka-sasl-mechanism", default="")
    p.add_argument("--kafka-sasl-username", default="")
    p.add_argument("--kafka-ssl-ca-location", default="")
    p.add_argument("--kafka-no-endpoint-identification", action="store_true")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- Kafka


def kafka_options(a) -> dict:
    """Options of the Kafka source and sink (`kafka.*` go to the Java clients)."""
    o = {"kafka.bootstrap.servers": a.bootstrap_servers}
    proto = a.kafka_security_protocol.upper()
    if proto != "PLAINTEXT":
        o["kafka.security.protocol"] = proto
    if proto.startswith("SASL"):
        mech = a.kafka_sasl_mechanism or "SCRAM-SHA-512"
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if mech == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        password = os.environ.get("RIDECTL_KAFKA_SASL_PASSWORD", "")
        o["kafka.sasl.mechanism"] = mech
        o["kafka.sasl.jaas.config"] = (
            f'{module} required username={json.dumps(a.kafka_sasl_username)} '
            f"password={json.dumps(password)};"
        )
    if proto in ("SSL", "SASL_SSL"):
        if a.kafka_ssl_ca_location:
            o["kafka.ssl.truststore.type"] = "PEM"
            o["kafka.ssl.truststore.location"] = a.kafka_ssl_ca_location
        if a.kafka_no_endpoint_identification:
            o["kafka.ssl.endpoint.identification.algorithm"] = ""
    return o


# ---------------------------------------------------------------- events, metrics


def parse_events(raw: DataFrame, max_clock_skew_ms: int) -> DataFrame:
    """Kafka records -> events with `event_time` and a `valid` flag.

    `valid` mirrors the wire contract of src/events.rs (docs/events.md): required
    event_type (a known one), ride_id, city (1..MAX_CITY_CHARS characters) and
    timestamp (ISO-8601 with Z, an offset or none = UTC; or integer epoch
    milliseconds) between 2000 and 2100 and at most max_clock_skew ahead of now;
    optional event_id/user_id (non-empty when present), estimated_fare/final_fare
    (finite, non-negative when present), pickup/dropoff (in range when present),
    schema_version (absent: 1). The ingest worker dead-letters the others; this job
    skips and counts them. An absent fare is left out of avg (Spark's avg ignores
    nulls), an absent rider out of the distinct count.
    """
    e = raw.select(
        F.from_json(F.col("value").cast("string"), EVENT_SCHEMA).alias("e")
    ).select("e.*")
    # Timestamps are parsed in the session time zone (UTC) unless they carry one;
    # a JSON number is read into the string field as its digits: epoch milliseconds.
    ts = F.col("timestamp")
    e = e.withColumn(
        "event_time",
        F.when(
            ts.rlike("^[0-9]+$"),
            F.timestamp_millis(ts.cast("long")),
        ).otherwise(F.try_to_timestamp(ts)),
    )

    def non_empty(c):
        return F.col(c).isNotNull() & (F.length(F.col(c)) > 0)

    def absent_or_non_empty(c):
        return F.col(c).isNull() | (F.length(F.col(c)) > 0)

    def point_ok(c):
        return F.col(c).isNull() | (
            F.col(f"{c}.lat").between(-90.0, 90.0) & F.col(f"{c}.lng").between(-180.0, 180.0)
        )

    def fare_ok(c):
        f = F.col(c)
        return f.isNull() | (~F.isnan(f) & (f >= 0.0) & (f < float("inf")))

    version = F.coalesce(F.col("schema_version"), F.lit(SCHEMA_VERSION))
    t = F.col("event_time")
    valid = (
        absent_or_non_empty("event_id")
        & non_empty("ride_id")
        & absent_or_non_empty("user_id")
        & (F.length(F.trim(F.col("city"))) > 0)
        & (F.char_length(F.col("city")) <= MAX_CITY_CHARS)
        & F.col("event_type").isin(EVENT_TYPES)
        & t.isNotNull()
        & (t >= F.lit("2000-01-01 00:00:00").cast("timestamp"))
        & (t < F.lit("2100-01-01 00:00:00").cast("timestamp"))
        & (
            t
            <= F.current_timestamp()
            + F.expr(f"make_dt_interval(0, 0, 0, {max_clock_skew_ms / 1000.0})")
        )
        & fare_ok("estimated_fare")
        & fare_ok("final_fare")
        & point_ok("pickup")
        & point_ok("dropoff")
        & (version >= 1)
        & (version <= SCHEMA_VERSION)
    )
    # Null (a missing required field) counts as invalid.
    return e.withColumn("valid", F.coalesce(valid, F.lit(False)))


def window_metrics(events: DataFrame, window_ms: int, slide_ms: int, rsd: float) -> DataFrame:
    """The metrics of each (window, city): the one definition both modes use.

    Windows are [start, start + window) with start a multiple of the slide since
    the epoch (Spark's `window`), exactly as the native worker assigns them.
    """

    def count_type(t: str):
        return F.count(F.when(F.col("event_type") == t, 1))

    def rate(n: str):
        return F.when(F.col("requests") == 0, F.lit(0.0)).otherwise(
            F.col(n) / F.col("requests")
        )

    w = F.window("event_time", f"{window_ms} milliseconds", f"{slide_ms} milliseconds")
    agg = events.groupBy(w.alias("window"), F.col("city")).agg(
        F.count(F.lit(1)).alias("total_events"),
        count_type("requested").alias("requests"),
        count_type("completed").alias("completions"),
        count_type("cancelled").alias("cancellations"),
        F.avg("estimated_fare").alias("avg_fare"),
        # Exact distinct counts are not supported on streams: HyperLogLog++.
        F.approx_count_distinct("user_id", rsd).alias("unique_riders"),
        F.max("event_time").alias("max_event_time"),
    )
    return agg.select(
        F.unix_millis(F.col("window.start")).alias("window_start"),
        F.unix_millis(F.col("window.end")).alias("window_end"),
        F.col("city"),
        F.col("total_events"),
        F.col("requests"),
        F.col("completions"),
        F.col("cancellations"),
        F.col("avg_fare"),
        F.col("unique_riders"),
        rate("cancellations").alias("cancellation_rate"),
        rate("completions").alias("completion_rate"),
        # Not an output: the streaming sink follows the watermark with it.
        F.unix_millis(F.col("max_event_time")).alias("max_event_time"),
    )


# ------------------------------------------------------------------------ outputs


def iso_millis(ms: int) -> str:
    """2026-11-26T12:00:00.000Z, as the native worker writes times."""
    d = datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def ch_millis(ms: int) -> str:
    """2026-11-26 12:00:00.000: ClickHouse's DateTime64(3) text (UTC column)."""
    return iso_millis(ms)[:-1].replace("T", " ")


class ClickHouse:
    """The ClickHouse HTTP interface: POST SQL, settings as URL parameters."""

    def __init__(self, url: str, user: str, database: str, timeout_s: float):
        self.url = url.rstrip("/") + "/"
        self.database = database
        self.timeout_s = timeout_s
        password = os.environ.get("RIDECTL_CLICKHOUSE_PASSWORD", "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def post(self, query: str, body: bytes = b"", attempts: int = 5) -> str:
        """Runs `query` (with `body` as its data); retries with backoff."""
        params = urllib.parse.urlencode({"database": self.database, "query": query})
        delay = 0.5
        for attempt in range(1, attempts + 1):
            req = urllib.request.Request(
                self.url + "?" + params, data=body, headers=self.headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    return r.read().decode()
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace").strip()
                # 4xx: the request is wrong (no table, bad credentials): no retry.
                if 400 <= e.code < 500 or attempt == attempts:
                    raise RuntimeError(f"ClickHouse: HTTP {e.code}: {detail[:500]}") from None
            except (urllib.error.URLError, OSError) as e:
                if attempt == attempts:
                    raise RuntimeError(f"ClickHouse at {self.url} is unreachable: {e}") from None
            log(f"ClickHouse request failed (attempt {attempt}/{attempts}), retrying")
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")


class Sink:
    """Writes metrics rows to ClickHouse and then to the aggregated topic."""

    COLUMNS = [
        "window_start", "window_end", "city", "total_events", "requests", "completions",
        "cancellations", "avg_fare", "unique_riders", "cancellation_rate", "completion_rate",
    ]

    # Rows per Kafka write (each is a small Spark job over literal rows).
    KAFKA_CHUNK = 500

    def __init__(self, spark: SparkSession, a, ch: ClickHouse):
        self.spark = spark
        self.a = a
        self.ch = ch
        self.kafka = kafka_options(a)
        self.rows_written = 0
        self.final_written = 0

    def check_table(self) -> None:
        n = self.ch.post(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() "
            f"AND name = '{self.a.table}'"
        ).strip()
        if n != "1":
            raise SystemExit(
                f"error: ClickHouse table {self.a.clickhouse_database}.{self.a.table} is "
                "missing: run `ridectl schema apply`"
            )

    def write(self, rows: list, final: bool) -> None:
        """rows: dicts with COLUMNS. One INSERT and one Kafka write per call."""
        if not rows:
            return
        now = int(time.time() * 1000)
        lines = []
        values = []
        for r in rows:
            ch_row = {k: r[k] for k in self.COLUMNS}
            ch_row["window_start"] = ch_millis(r["window_start"])
            ch_row["window_end"] = ch_millis(r["window_end"])
            ch_row["is_final"] = 1 if final else 0
            ch_row["updated_at"] = ch_millis(now)
            lines.append(json.dumps(ch_row))
            out = {
                "window": {"start": iso_millis(r["window_start"]), "end": iso_millis(r["window_end"])},
                "city": r["city"],
            }
            out.update({k: r[k] for k in self.COLUMNS[3:]})
            out["final"] = final
            out["updated_at"] = iso_millis(now)
            values.append((r["city"], json.dumps(out)))
        self.ch.post(
            f"INSERT INTO `{self.a.table}` FORMAT JSONEachRow", ("\n".join(lines) + "\n").encode()
        )
        for i in range(0, len(values), self.KAFKA_CHUNK):
            (
                literal_frame(self.spark, values[i : i + self.KAFKA_CHUNK])
                .write.format("kafka")
                .options(**self.kafka)
                .option("topic", self.a.output_topic)
                .save()
            )
        self.rows_written += len(rows)
        if final:
            self.final_written += len(rows)


def literal_frame(spark: SparkSession, pairs: list) -> DataFrame:
    """A (key, value) DataFrame of the driver's strings, built from literals in the
    JVM. spark.createDataFrame(list) would ship pickled rows through Python
    workers on the executors; this job never needs Python there."""
    rows = [F.struct(F.lit(k).alias("key"), F.lit(v).alias("value")) for k, v in pairs]
    return spark.range(1).select(F.inline(F.array(*rows)))


def collect_rows(df: DataFrame) -> list:
    return [r.asDict() for r in df.collect()]


# -------------------------------------------------------------------------- modes


def run_bounded(spark: SparkSession, a, sink: Sink) -> dict:
    """Every event in the topic now, one batch query; every window final."""
    raw = (
        spark.read.format("kafka")
        .options(**kafka_options(a))
        .option("subscribe", a.input_topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    events = parse_events(raw, a.max_clock_skew_ms)
    obs = Observation("input")
    events = events.observe(
        obs,
        F.count(F.lit(1)).alias("consumed"),
        F.sum(F.col("valid").cast("long")).alias("accepted"),
    )
    metrics = window_metrics(events.where("valid"), a.window_ms, a.slide_ms, a.rsd)
    rows = collect_rows(metrics)
    counts = obs.get
    consumed = int(counts.get("consumed") or 0)
    accepted = int(counts.get("accepted") or 0)
    if consumed > accepted:
        log(f"{consumed - accepted} invalid events skipped (the native worker dead-letters them)")
    sink.write(rows, final=True)
    return {"consumed": consumed, "accepted": accepted, "invalid": consumed - accepted}


class StreamingSink:
    """foreachBatch of the streaming query.

    Update mode hands over the (window, city) rows that changed in the micro-batch,
    each with its whole aggregate so far. A window is final once the watermark
    passes its end: Spark then drops its state and never emits it again (later
    events of it are late and dropped). So this sink follows the watermark itself:
    after a batch, Spark's watermark is the highest event time seen minus the delay
    (each row carries its window's highest event time); rows of windows ending at
    or before it are written with is_final = 1, the others with is_final = 0 and
    kept here, to be written once more as final when the watermark passes them.
    The rows still open in ClickHouse are reloaded at start, so windows that were
    open when a previous run stopped are finalized too.
    """

    def __init__(self, sink: Sink, a):
        self.sink = sink
        self.a = a
        self.query = None  # set once started: its progress carries the watermark
        self.open = {}  # (city, window_start, window_end) -> last row written
        self.max_event_time = None  # epoch ms, over the batches of this run
        self.counted_batches = set()
        self.consumed = 0
        self.accepted = 0

    def load_open(self) -> None:
        cols = ", ".join(
            f"toUnixTimestamp64Milli({c}) AS {c}" if c.startswith("window_") else c
            for c in Sink.COLUMNS
        )
        text = self.sink.ch.post(
            f"SELECT {cols} FROM `{self.a.table}` FINAL WHERE is_final = 0 "
            "FORMAT JSONEachRow SETTINGS output_format_json_quote_64bit_integers = 0"
        )
        for line in text.splitlines():
            r = json.loads(line)
            self.open[(r["city"], r["window_start"], r["window_end"])] = r
        if self.open:
            log(f"{len(self.open)} open windows reloaded from ClickHouse")

    def watermark_ms(self):
        """The watermark Spark applies from the next batch on (None: not yet known):
        ours from the event times seen, or the one of the query's last progress
        (restored from the checkpoint after a restart), whichever is later."""
        ours = None
        if self.max_event_time is not None:
            ours = self.max_event_time - self.a.watermark_ms
        p = self.query.lastProgress if self.query is not None else None
        text = ((p or {}).get("eventTime") or {}).get("watermark")
        if text:
            d = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
            reported = int(d.timestamp() * 1000)
            ours = reported if ours is None else max(ours, reported)
        return ours

    def count_input(self) -> None:
        """Adds the observed input counts of the last finished batch (once)."""
        p = self.query.lastProgress if self.query is not None else None
        if not p or p.get("batchId") in self.counted_batches:
            return
        self.counted_batches.add(p.get("batchId"))
        m = (p.get("observedMetrics") or {}).get("input")
        if m is None:
            return
        m = m.asDict() if hasattr(m, "asDict") else dict(m)
        consumed, accepted = int(m.get("consumed") or 0), int(m.get("accepted") or 0)
        if consumed > accepted:
            log(f"{consumed - accepted} invalid events skipped (the native worker "
                "dead-letters them)")
        self.consumed += consumed
        self.accepted += accepted

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self.count_input()
        rows = collect_rows(batch)
        for r in rows:
            t = r.pop("max_event_time")
            if self.max_event_time is None or t > self.max_event_time:
                self.max_event_time = t
            self.open[(r["city"], r["window_start"], r["window_end"])] = r
        wm = self.watermark_ms()
        done = [k for k in self.open if wm is not None and k[2] <= wm]
        finals = [self.open.pop(k) for k in done]
        updates = [r for r in rows if (r["city"], r["window_start"], r["window_end"]) in self.open]
        self.sink.write(updates, final=False)
        self.sink.write(finals, final=True)
        if updates or finals:
            log(f"batch {batch_id}: {len(updates)} windows updated, {len(finals)} final")


def run_streaming(spark: SparkSession, a, sink: Sink) -> dict:
    raw = (
        spark.readStream.format("kafka")
        .options(**kafka_options(a))
        .option("subscribe", a.input_topic)
        .option("startingOffsets", "earliest")  # a new checkpoint; else the checkpoint's
        .option("failOnDataLoss", "false")
        .load()
    )
    events = parse_events(raw, a.max_clock_skew_ms).observe(
        "input",
        F.count(F.lit(1)).alias("consumed"),
        F.sum(F.col("valid").cast("long")).alias("accepted"),
    )
    events = events.where("valid").withWatermark("event_time", f"{a.watermark_ms} milliseconds")
    metrics = window_metrics(events, a.window_ms, a.slide_ms, a.rsd)
    handler = StreamingSink(sink, a)
    handler.load_open()
    query = (
        metrics.writeStream.outputMode("update")
        .foreachBatch(handler)
        .option("checkpointLocation", a.checkpoint)
        .trigger(processingTime=f"{a.trigger_ms} milliseconds")
        .queryName("ride_analytics")
        .start()
    )
    handler.query = query
    log(f"streaming from {a.input_topic}, checkpoint {a.checkpoint}")
    try:
        query.awaitTermination()
    except KeyboardInterrupt:  # Ctrl-C reaches the driver's process group
        query.stop()
    except StreamingQueryException:
        # SIGTERM to spark-submit stops the SparkContext under the running query;
        # that is a stop, not a failure: the checkpoint holds the progress.
        if not context_stopped(spark):
            raise
        log("stopped: Spark is shutting down; a restart resumes from the checkpoint")
        return {"consumed": handler.consumed, "accepted": handler.accepted,
                "invalid": handler.consumed - handler.accepted}
    handler.count_input()
    return {"consumed": handler.consumed, "accepted": handler.accepted,
            "invalid": handler.consumed - handler.accepted}


# --------------------------------------------------------------------------- main


def context_stopped(spark: SparkSession) -> bool:
    try:
        return bool(spark.sparkContext._jsc.sc().isStopped())
    except Exception:  # the JVM is already gone
        return True


def check_connector() -> None:
    """Fails at once, with the fix, when the Kafka connector jars are missing.

    Runs in the JVM that spark-submit started (its class loader holds --jars),
    before a SparkContext exists: seconds, not a whole Spark start-up.
    """
    SparkContext._ensure_initialized()
    if not SparkContext._jvm.org.apache.spark.util.Utils.classIsLoadable(KAFKA_PROVIDER):
        log(
            f"error: the Spark Kafka connector ({KAFKA_PROVIDER}) is not on the classpath: "
            "run scripts/setup.sh (it resolves spark-sql-kafka-0-10 and its dependencies "
            "from Maven Central into .ridectl/cache/spark-jars, which "
            "`ridectl aggregate --engine spark` passes to spark-submit with --jars; "
            "nothing is downloaded when a job starts)"
        )
        sys.exit(EXIT_UNAVAILABLE)


def main(argv) -> int:
    a = parse_args(argv)
    started = time.time()
    check_connector()
    spark = (
        SparkSession.builder.appName(f"ridectl-aggregate {a.input_topic}")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    ch = ClickHouse(a.clickhouse_url, a.clickhouse_user, a.clickhouse_database,
                    a.clickhouse_timeout_s)
    sink = Sink(spark, a, ch)
    sink.check_table()
    t0 = time.time()
    counts = run_bounded(spark, a, sink) if a.bounded else run_streaming(spark, a, sink)
    elapsed = time.time() - t0
    summary = {
        "engine": "spark",
        "ending": "bounded" if a.bounded else "stopped",
        **counts,
        "rows": sink.rows_written,
        "final_rows": sink.final_written,
        "startup_secs": round(t0 - started, 3),
        "elapsed_secs": round(elapsed, 3),
        "events_per_sec": round(counts["consumed"] / elapsed, 1) if elapsed > 0 else 0.0,
    }
    print(json.dumps(summary), flush=True)
    if not context_stopped(spark):
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
