//! `ridectl bench <benchmark>`: one subcommand per benchmark (`generate`,
//! `aggregate`, `ingest`, `query`, `spark-vs-native`, `e2e`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::bench;
use crate::local::Paths;
use crate::output::{self, Format};

/// Measure the pipeline's parts against the local stack.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl bench generate                       the generator vs Kafka's ProducerPerformance
  ridectl bench generate --count 10000000 --rounds 3 --format json
  ridectl bench aggregate                      engine, bounded run, freshness
  ridectl bench ingest                         raw events into ClickHouse, per core
  ridectl bench query --rows 100M              named queries vs the raw table
  ridectl bench e2e --rate 50000/min --duration 2m   freshness of the whole pipeline
  ridectl bench spark-vs-native                both engines, same input, side by side")]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The generator's sustained maximum rate, side by side with Kafka's own
    /// producer benchmark (same record size, acks, compression, linger, batch).
    Generate(GenerateBenchArgs),
    /// The aggregation worker: events/s per core, RSS and freshness.
    Aggregate(AggregateBenchCmd),
    /// Named queries (rollups) against their raw-table equivalents over synthetic
    /// history filled inside ClickHouse.
    Query(QueryBenchArgs),
    /// The native worker and the Spark job on the same input, side by side.
    SparkVsNative(SparkBenchCmd),
    /// `ridectl ingest` over pre-loaded events: events/s and per CPU-second.
    Ingest(IngestBenchCmd),
    /// The whole pipeline (generate, aggregate, ingest): freshness from event
    /// timestamp to ClickHouse, raw and aggregated, throughput and lag.
    E2e(E2eBenchCmd),
}

#[derive(Debug, Args)]
struct IngestBenchCmd {
    #[command(flatten)]
    args: bench::ingest::IngestBenchArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Starts `ridectl aggregate` and `ridectl ingest` on fresh topics and a fresh
database, then `ridectl generate --rate R --duration D`, and polls ClickHouse every
--poll for a sample of the events: when each first shows in ride_events, and when
city_window_metrics first counts it. Reports p50/p95/p99/max per table, throughput,
consumer lag and CPU per process; everything is deleted afterwards (--keep keeps it).

Examples:
  ridectl bench e2e                                  50,000/min for 2 minutes
  ridectl bench e2e --rate 500000/min --duration 3m --format json
  ridectl bench e2e --browser                        also: event → visible on the dashboard page")]
struct E2eBenchCmd {
    #[command(flatten)]
    args: bench::e2e::E2eBenchArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
struct SparkBenchCmd {
    #[command(flatten)]
    args: bench::spark::SparkBenchArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
struct AggregateBenchCmd {
    #[command(flatten)]
    args: bench::aggregate::AggregateBenchArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Fills ride_events in its own database (ridectl_bench) with --rows events of
synthetic history (numbers()-based, deterministic, ending at the current hour), then times
city-stats, rides-per-minute and cancellations over the last 1h, 24h and 30d
against the same queries over the raw table (sql/bench/*-raw.sql). A second run
reuses the data. Results belong in BENCHMARKS.md.")]
struct QueryBenchArgs {
    /// Rows of history (suffixes K, M, B).
    #[arg(long, default_value = "100M", value_parser = parse_count)]
    rows: u64,
    /// Days the history spans.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Timed runs per query (median reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Database to fill and query.
    #[arg(long, default_value = "ridectl_bench")]
    database: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let (n, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1_000),
        Some('M') => (&t[..t.len() - 1], 1_000_000),
        Some('B') => (&t[..t.len() - 1], 1_000_000_000),
        _ => (t.as_str(), 1),
    };
    n.parse::<u64>()
        .map(|n| n * mult)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a row count such as 100M"))
}

#[derive(Debug, Args)]
#[command(after_help = "\
Each side sends --count records to a fresh topic shaped like topics.ride_events,
with pipeline.yaml's producer settings (acks, compression, linger) and the same
number of records per batch: librdkafka's batch.num.messages; Java's batch.size is
set to match (Java counts estimated compressed bytes: batch.num.messages × record
size × lz4 ratio × 1.05). ProducerPerformance runs with a sample of the
generator's own events (--payload-file: the fair comparison, whose ratio is
reported) and with random payloads of the same mean size. The topics are deleted
afterwards. Results belong in BENCHMARKS.md.")]
struct GenerateBenchArgs {
    /// Records per run and side.
    #[arg(long, default_value_t = 5_000_000)]
    count: u64,
    /// Runs per side (alternating); the best of each is compared.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Directory of the Kafka jars [default: <local.cache_dir>/kafka-libs]
    #[arg(long, env = "RIDECTL_KAFKA_LIBS", value_name = "DIR")]
    kafka_libs: Option<PathBuf>,
    /// The java executable.
    #[arg(long, default_value = "java", value_name = "PATH")]
    java: PathBuf,
    /// Java batch.size in bytes [default: the same records per batch as librdkafka]
    #[arg(long, value_name = "BYTES")]
    batch_size: Option<u64>,
    /// Measure the generator only.
    #[arg(long)]
    skip_kafka_bench: bool,
    /// Keep the benchmark topics.
    #[arg(long)]
    keep_topics: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<u8> {
    match args.what {
        BenchCommand::Generate(a) => {
            if a.count == 0 {
                return crate::exit::usage("--count must be at least 1");
            }
            let loaded = global.load()?;
            let opts = bench::generate::BenchOptions {
                count: a.count,
                rounds: a.rounds.max(1),
                kafka_libs: a
                    .kafka_libs
                    .unwrap_or_else(|| Paths::from_config(&loaded).kafka_libs()),
                java: a.java,
                skip_kafka: a.skip_kafka_bench,
                keep_topics: a.keep_topics,
                batch_size: a.batch_size,
                progress: a.format == Format::Table,
            };
            let report = bench::generate::run(&loaded, &opts).await?;
            match a.format {
                Format::Json => output::print_json(&report)?,
                Format::Table => print!("{}", report.table()),
            }
            let failed: u64 = report.runs.iter().map(|r| r.failed).sum();
            Ok(if failed > 0 {
                crate::exit::FAILURE
            } else {
                crate::exit::OK
            })
        }
        BenchCommand::Aggregate(a) => {
            let loaded = global.load()?;
            let report = bench::aggregate::run(&loaded, &a.args).await?;
            if a.format == Format::Json {
                output::print_json(&report)?;
            } else {
                print_aggregate(&report);
            }
            Ok(crate::exit::OK)
        }
        BenchCommand::Ingest(a) => {
            let report = bench::ingest::run(&global.load()?, &a.args).await?;
            print_report(a.format, &report, |r| r.table())
        }
        BenchCommand::E2e(a) => {
            let report = bench::e2e::run(&global.load()?, &a.args).await?;
            print_report(a.format, &report, |r| r.table())
        }
        BenchCommand::SparkVsNative(a) => {
            let loaded = global.load()?;
            let report = bench::spark::run(&loaded, &a.args).await?;
            if a.format == Format::Json {
                output::print_json(&report)?;
            } else {
                print_spark(&report);
            }
            Ok(crate::exit::OK)
        }
        BenchCommand::Query(a) => {
            let loaded = global.load()?;
            let opts = bench::query::QueryBenchOptions {
                rows: a.rows,
                days: a.days,
                runs: a.runs,
                database: a.database,
                chunk: 10_000_000,
            };
            let report = bench::query::run(
                &loaded.config.clickhouse,
                &loaded.resolve(std::path::Path::new("sql")),
                &opts,
            )
            .await?;
            if a.format == Format::Json {
                output::print_json(&report)?;
            } else {
                let mut t = output::table(
                    &[
                        "query",
                        "range",
                        "rollup ms",
                        "raw ms",
                        "speedup",
                        "rows",
                        "raw rows",
                    ],
                    &[2, 3, 4, 5, 6],
                );
                for x in &report.timings {
                    t.add_row(vec![
                        x.query.clone(),
                        x.range.clone(),
                        format!("{:.1}", x.rollup_ms),
                        format!("{:.1}", x.raw_ms),
                        format!("{:.1}x", x.speedup),
                        x.rows.to_string(),
                        x.raw_rows.to_string(),
                    ]);
                }
                println!(
                    "{t}\n{} rows in ride_events; filled in {:.0} s",
                    report.rows, report.fill_seconds
                );
            }
            Ok(crate::exit::OK)
        }
    }
}

/// Prints a report as JSON or as its table.
fn print_report<T: serde::Serialize>(
    format: Format,
    report: &T,
    table: impl Fn(&T) -> String,
) -> anyhow::Result<u8> {
    match format {
        Format::Json => output::print_json(report)?,
        Format::Table => print!("{}", table(report)),
    }
    Ok(crate::exit::OK)
}

fn print_aggregate(r: &bench::aggregate::Report) {
    let mut t = output::table(&["measurement", "value"], &[1]);
    let mut row = |k: &str, v: String| {
        t.add_row(vec![k.to_string(), v]);
    };
    row(
        "pure engine, events/s (1 core)",
        format!("{:.0}", r.engine.events_per_sec),
    );
    if let Some(p) = r.produce_events_per_sec {
        row("pre-load producer, events/s", format!("{p:.0}"));
    }
    if let Some(c) = &r.consume {
        row(
            "broker → engine (no outputs), events/s (wall)",
            format!("{:.0}", c.events_per_sec),
        );
        row(
            "broker → engine (no outputs), events per CPU-second",
            format!("{:.0}", c.events_per_cpu_sec),
        );
    }
    if let Some(b) = &r.bounded {
        row("bounded run: events", b.events.to_string());
        row(
            "bounded run: events/s (wall)",
            format!("{:.0}", b.events_per_sec),
        );
        row(
            "bounded run: events per CPU-second",
            format!("{:.0}", b.events_per_cpu_sec),
        );
        row(
            "bounded run: peak RSS",
            format!("{:.1} MiB", b.peak_rss_mib),
        );
    }
    if let Some(f) = &r.freshness {
        let s = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} s"));
        row(
            "freshness: rate",
            format!("{:.0}/min for {} s", f.rate_per_min, f.seconds),
        );
        row("freshness: p50", s(f.p50_seconds));
        row("freshness: p99", s(f.p99_seconds));
        row("freshness: peak RSS", format!("{:.1} MiB", f.peak_rss_mib));
        row("freshness: CPU (cores)", format!("{:.3}", f.cpu_share));
    }
    println!("{t}");
}

fn print_spark(r: &bench::spark::Report) {
    let mut t = output::table(&["measurement", "native", "spark"], &[1, 2]);
    let mut row = |k: &str, n: String, s: String| {
        t.add_row(vec![k.to_string(), n, s]);
    };
    let (n, s) = (&r.native, &r.spark);
    row(
        "bounded: events",
        n.events.to_string(),
        s.events.to_string(),
    );
    row(
        "bounded: wall seconds (start-up included)",
        format!("{:.1}", n.wall_seconds),
        format!("{:.1}", s.wall_seconds),
    );
    row(
        "bounded: events/s (wall)",
        format!("{:.0}", n.events_per_sec),
        format!("{:.0}", s.events_per_sec),
    );
    row(
        "bounded: events/s (processing, no start-up)",
        format!("{:.0}", n.events_per_processing_sec),
        format!("{:.0}", s.events_per_processing_sec),
    );
    row(
        "bounded: CPU seconds",
        format!("{:.1}", n.cpu_seconds),
        format!("{:.1}", s.cpu_seconds),
    );
    row(
        "bounded: events per CPU-second (per core)",
        format!("{:.0}", n.events_per_cpu_sec),
        format!("{:.0}", s.events_per_cpu_sec),
    );
    row(
        "bounded: events per CPU-second of processing (no start-up)",
        format!("{:.0}", n.events_per_processing_cpu_sec),
        format!("{:.0}", s.events_per_processing_cpu_sec),
    );
    row(
        "bounded: peak RSS",
        format!("{:.0} MiB", n.peak_rss_mib),
        format!("{:.0} MiB", s.peak_rss_mib),
    );
    let secs = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} s"));
    if let [fnat, fspark] = &r.freshness[..] {
        row(
            "freshness: events measured (missing)",
            format!("{} ({})", fnat.events, fnat.missing),
            format!("{} ({})", fspark.events, fspark.missing),
        );
        row(
            "freshness: p50",
            secs(fnat.p50_seconds),
            secs(fspark.p50_seconds),
        );
        row(
            "freshness: p99",
            secs(fnat.p99_seconds),
            secs(fspark.p99_seconds),
        );
        row(
            "freshness: max",
            secs(fnat.max_seconds),
            secs(fspark.max_seconds),
        );
        row(
            "freshness: CPU (cores)",
            format!("{:.3}", fnat.cpu_share),
            format!("{:.3}", fspark.cpu_share),
        );
        row(
            "freshness: peak RSS",
            format!("{:.0} MiB", fnat.peak_rss_mib),
            format!("{:.0} MiB", fspark.peak_rss_mib),
        );
    }
    println!("{t}");
    println!(
        "native / spark throughput per core: {:.1}x ({:.1}x without Spark's start-up; \
         per wall-clock second of processing: {:.1}x; {} CPUs)",
        r.ratio_per_core, r.ratio_per_core_processing, r.ratio_processing_wall, r.cpus
    );
}
