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
  ridectl bench aggregate --events 500000 --freshness-secs 0 --format json")]
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
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    match args.action {
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
