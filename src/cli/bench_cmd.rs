//! `ridectl bench ...`: benchmarks against the real local stack.

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::bench;
use crate::output::{self, Format};

/// Benchmarks against the real local stack (results for BENCHMARKS.md).
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl bench aggregate                           engine, bounded run, freshness
  ridectl bench aggregate --events 500000 --freshness-secs 0 --format json
  ridectl bench spark-vs-native                     both engines, same input, side by side")]
pub struct BenchArgs {
    #[command(subcommand)]
    action: BenchAction,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum BenchAction {
    /// The aggregation worker: events/s per core, RSS and freshness.
    Aggregate(bench::aggregate::AggregateBenchArgs),
    /// The native worker and the Spark job on the same input: events/s per core,
    /// the ratio, and freshness.
    SparkVsNative(bench::spark::SparkBenchArgs),
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    match args.action {
        BenchAction::SparkVsNative(a) => {
            let report = bench::spark::run(&loaded, &a).await?;
            if args.format == Format::Json {
                output::print_json(&report)?;
            } else {
                print_spark(&report);
            }
        }
        BenchAction::Aggregate(a) => {
            let report = bench::aggregate::run(&loaded, &a).await?;
            if args.format == Format::Json {
                output::print_json(&report)?;
            } else {
                print_aggregate(&report);
            }
        }
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
