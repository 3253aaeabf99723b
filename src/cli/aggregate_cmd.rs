//! `ridectl aggregate`: run the windowed aggregation worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, ValueEnum};

use super::GlobalArgs;
use crate::aggregate::{self, Options, Start, Summary};
use crate::output::{self, Format};
use crate::spark;

/// Compute per-city windowed metrics from ride events into ClickHouse and Kafka.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl aggregate                                  run the worker (Ctrl-C: flush, commit, exit)
  ridectl aggregate --metrics-addr 127.0.0.1:9464    ...with Prometheus metrics on /metrics
  ridectl aggregate --bounded --format json          process what is in the topic now, then exit
  ridectl aggregate --bounded --from-beginning       recompute every window still in the topic
  ridectl aggregate --from 2026-11-26T12:00:00Z      recompute the windows from that time on
  ridectl aggregate --engine spark                   the same job on Spark (local[*])
  ridectl aggregate --engine spark --bounded --master spark://127.0.0.1:7077
  ridectl aggregate --engine spark --print           show the spark-submit command

Windows, watermark and triggers come from `aggregation` in pipeline.yaml. Several
workers in one consumer group share the partitions and give the same results as one.
Design: docs/aggregate.md; the Spark engine: docs/spark.md.")]
pub struct AggregateArgs {
    /// The engine: the native worker, or the Spark Structured Streaming job
    /// (jobs/ride_analytics.py through spark-submit).
    #[arg(long, value_enum, default_value_t = Engine::Native)]
    engine: Engine,
    /// Consume up to the end offsets present at start, finalize every window, exit.
    /// (Spark: recomputes every window of the events in the topic.)
    #[arg(long)]
    bounded: bool,
    /// Spark master: `local[N]`, `spark://HOST:7077`, `yarn`, `k8s://https://HOST`
    /// (default `local[*]`). Spark engine only.
    #[arg(long, value_name = "URL")]
    master: Option<String>,
    /// Spark checkpoint location (default: aggregation.spark_checkpoint_dir/<group>).
    /// Spark engine only.
    #[arg(long, value_name = "DIR_OR_URI")]
    checkpoint: Option<String>,
    /// Extra Spark configuration, `KEY=VALUE` (repeatable). Spark engine only.
    #[arg(long = "spark-conf", value_name = "KEY=VALUE")]
    spark_conf: Vec<String>,
    /// Print the spark-submit command instead of running it. Spark engine only.
    #[arg(long)]
    print: bool,
    /// Recompute from the oldest retained event (resets the group's offsets and
    /// progress; stop the group's other workers first).
    #[arg(long, conflicts_with = "from")]
    from_beginning: bool,
    /// Recompute the windows starting at or after this ISO-8601 time.
    #[arg(long, value_name = "TIMESTAMP")]
    from: Option<String>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Summary format (printed when the worker exits).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The aggregation engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    /// `ridectl aggregate` itself.
    Native,
    /// Spark Structured Streaming (spark-submit).
    Spark,
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: AggregateArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    if args.engine == Engine::Spark {
        return run_spark(&loaded, args);
    }
    let spark_only = [
        ("--master", args.master.is_some()),
        ("--checkpoint", args.checkpoint.is_some()),
        ("--spark-conf", !args.spark_conf.is_empty()),
        ("--print", args.print),
    ];
    if let Some((flag, _)) = spark_only.iter().find(|(_, set)| *set) {
        return crate::exit::usage(format!("{flag} needs --engine spark"));
    }
    let start = match (&args.from, args.from_beginning) {
        (Some(t), _) => match crate::time::parse_iso8601(t) {
            Some(ms) => Start::Timestamp(ms),
            None => {
                return crate::exit::usage(format!(
                    "--from {t:?} is not an ISO-8601 time (e.g. 2026-11-26T12:00:00Z)"
                ));
            }
        },
        (None, true) => Start::Beginning,
        (None, false) => Start::Committed,
    };
    let opts = Options {
        bounded: args.bounded,
        start,
        metrics_addr: args.metrics_addr,
        ..Options::default()
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(shutdown.clone())?;
    let summary = aggregate::run(&loaded.config, &opts, shutdown).await?;
    print_summary(&summary, args.format)?;
    Ok(if summary.clean() {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    })
}

/// Runs the Spark job in place of this process (or prints its command).
fn run_spark(loaded: &crate::config::Loaded, args: AggregateArgs) -> anyhow::Result<u8> {
    let native_only = [
        ("--from", args.from.is_some()),
        ("--from-beginning", args.from_beginning),
        ("--metrics-addr", args.metrics_addr.is_some()),
    ];
    if let Some((flag, _)) = native_only.iter().find(|(_, set)| *set) {
        return crate::exit::usage(format!(
            "{flag} is an option of the native engine (the Spark engine: docs/spark.md)"
        ));
    }
    if let Some(bad) = args.spark_conf.iter().find(|c| !c.contains('=')) {
        return crate::exit::usage(format!("--spark-conf {bad:?} is not KEY=VALUE"));
    }
    let opts = spark::SparkOptions {
        master: args.master,
        bounded: args.bounded,
        checkpoint: args.checkpoint,
        conf: args.spark_conf,
    };
    let install = spark::SparkInstall::locate(loaded)?;
    let cmd = spark::spark_submit_command(loaded, &install, &opts);
    if args.print {
        println!("{}", spark::shell_line(&cmd));
        return Ok(crate::exit::OK);
    }
    Err(spark::exec(cmd))
}

/// First SIGINT/SIGTERM: set `shutdown` (flush, commit, exit). Second: exit now.
fn spawn_signal_handler(shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if shutdown.swap(true, Ordering::SeqCst) {
                eprintln!("second signal: exiting now (uncommitted work is replayed on restart)");
                std::process::exit(i32::from(crate::exit::INTERRUPTED));
            }
            eprintln!("stopping: flushing outputs and committing (press Ctrl-C again to exit now)");
        }
    });
    Ok(())
}

fn print_summary(s: &Summary, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return output::print_json(s);
    }
    let mut t = output::table(&["", ""], &[1]);
    let late: u64 = s.late.values().sum();
    let rejected: u64 = s.rejected.values().sum();
    for (k, v) in [
        ("ending", s.ending.to_string()),
        ("consumed", s.consumed.to_string()),
        ("counted", s.accepted.to_string()),
        ("replayed (already processed)", s.replayed.to_string()),
        ("late", late.to_string()),
        ("rejected (dead-lettered by ingest)", rejected.to_string()),
        (
            "metrics rows (final)",
            format!("{} ({})", s.rows, s.final_rows),
        ),
        ("elapsed", format!("{:.1}s", s.elapsed_secs)),
        ("events/s", format!("{:.0}", s.events_per_sec)),
    ] {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
    Ok(())
}
