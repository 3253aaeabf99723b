//! `ridectl bench <benchmark>`: one subcommand per benchmark (`generate` now;
//! `aggregate`, `query` and `e2e` join the same group).

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
  ridectl bench generate --count 10000000 --rounds 3 --format json")]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The generator's sustained maximum rate, side by side with Kafka's own
    /// producer benchmark (same record size, acks, compression, linger, batch).
    Generate(GenerateBenchArgs),
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
    }
}
