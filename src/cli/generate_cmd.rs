//! `ridectl generate`: flags to [`GenerateOptions`], signals to [`Shutdown`], the
//! summary to stdout (stderr when the events themselves go to stdout).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::GlobalArgs;
use crate::exit;
use crate::generate::scenario::{
    self, CancelSpike, Late, Scenarios, Surge, parse_cancel_spike, parse_late, parse_surge,
};
use crate::generate::sink::Output;
use crate::generate::{self, GenerateOptions, Progress, Shutdown, Summary, Wire};
use crate::output::{self, Format};
use crate::time::{EpochMillis, parse_iso8601};
use crate::units::{HumanDuration, Rate};

const EXAMPLES: &str = "\
Examples:
  ridectl generate --rate 50000/min --duration 10m
      the production rate for ten minutes, timestamps = now
  ridectl generate --rate max --count 5000000 --no-driver-locations
      a load test: as fast as the broker takes it
  ridectl generate --surge berlin:x2@5m+10m --cancel-spike prague:0.5@0+7m
      a concert doubles Berlin's demand from minute 5 for 10 minutes; 50% of
      Prague's rides are cancelled in the first 7 minutes
  ridectl generate --late 2:90s --out-of-order --malformed 1 --duration 5m
      exercise watermarks and the dead-letter path
  ridectl generate --backfill 24h
      yesterday's traffic, as fast as possible
  ridectl generate --wire seed --duration 5m
      events shaped like the seed design's producer (no event_id, naive times)
  ridectl generate --start-time 2026-11-26T06:00:00Z --speedup 60 \
      --rate 50000/min --duration 4m
      06:00 to 10:00 in four minutes (simulated density: the rate ÷ 60)
  ridectl generate --seed 42 --start-time 2026-01-01T00:00:00Z --rate max \\
      --count 100000 --output events.jsonl --also-kafka
      the same 100,000 events every time, to Kafka and to a file

Time: each message has an emission slot; its timestamp is the slot's simulated
time. Paced (--rate N/s|/min|/h), slots go out at exactly that rate and the
simulated clock follows the wall clock (from --start-time, --speedup times faster).
With --rate max, messages go as fast as the sink takes them and the simulated clock
advances 1/generator.rate (the nominal rate in pipeline.yaml) per ride event, so
timestamps form a realistic history: from --start-time, from --backfill ago, or
(with --count) ending about now. --count counts valid ride events (not malformed
messages, not driver locations). Driver locations are a separate stream: every
online driver each generator.driver_location_interval of simulated time.

Exit: 0 when every message was delivered, 1 if any failed, 2 on a usage error,
69 when Kafka does not answer; Ctrl-C stops, flushes and summarizes (twice: at once).";

/// Produce realistic ride traffic to Kafka (or JSON lines).
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct GenerateArgs {
    /// Ride events per unit of time: N/s, N/min, N/h, or max [default: generator.rate]
    #[arg(long, value_name = "RATE")]
    rate: Option<Rate>,
    /// Stop after this long (e.g. 60s, 10m).
    #[arg(long, value_name = "DURATION", conflicts_with = "count")]
    duration: Option<HumanDuration>,
    /// Stop after N valid ride events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Seed: the same seed gives the same events [default: generator.seed, else random]
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Simulated start time (ISO-8601, e.g. 2026-11-26T08:00:00Z): fixes timestamps.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    start_time: Option<EpochMillis>,
    /// Run simulated time this many times faster than the wall clock (needs --start-time).
    #[arg(long, value_name = "FACTOR")]
    speedup: Option<f64>,
    /// Write this much history ending now, as fast as possible (e.g. 24h).
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["start_time", "duration", "speedup"])]
    backfill: Option<HumanDuration>,
    /// Demand surge: CITY:xFACTOR@START+DURATION (e.g. berlin:x2@5m+10m). Repeatable.
    #[arg(long, value_name = "SPEC", value_parser = parse_surge)]
    surge: Vec<Surge>,
    /// Cancellation spike: CITY:RATE@START+DURATION (e.g. prague:0.5@0+7m). Repeatable.
    #[arg(long, value_name = "SPEC", value_parser = parse_cancel_spike)]
    cancel_spike: Vec<CancelSpike>,
    /// Late events: PCT:DELAY, PCT% of ride events stamped DELAY before their slot (e.g. 2:90s).
    #[arg(long, value_name = "PCT:DELAY", value_parser = parse_late)]
    late: Option<Late>,
    /// Shuffle emission order within small batches (timestamps unchanged).
    #[arg(long)]
    out_of_order: bool,
    /// Replace PCT% of ride-event slots with malformed messages (every dead-letter reason).
    #[arg(long, value_name = "PCT", value_parser = scenario::parse_malformed)]
    malformed: Option<f64>,
    /// Do not produce driver location updates.
    #[arg(long)]
    no_driver_locations: bool,
    /// Write JSON lines to FILE (- for stdout) instead of producing to Kafka.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// With --output FILE: produce to Kafka as well (the file holds exactly what was sent).
    #[arg(long, requires = "output")]
    also_kafka: bool,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// No progress bar or progress log lines.
    #[arg(long)]
    quiet: bool,
    /// Longest wait for outstanding deliveries at the end.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    flush_timeout: HumanDuration,
    /// Ride events as ridectl writes them (full) or as the seed design's producer
    /// does (seed: no event_id or schema_version, naive microsecond timestamps).
    #[arg(long, value_enum, default_value_t = WireArg::Full)]
    wire: WireArg,
}

/// `--wire`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum WireArg {
    Full,
    Seed,
}

fn parse_time(s: &str) -> Result<EpochMillis, String> {
    parse_iso8601(s)
        .ok_or_else(|| format!("{s:?} is not an ISO-8601 time (e.g. 2026-11-26T08:00:00Z)"))
}

impl GenerateArgs {
    /// The library options these flags mean.
    pub fn options(&self) -> anyhow::Result<GenerateOptions> {
        let output = match (&self.output, self.also_kafka) {
            (None, _) => Output::Kafka,
            (Some(p), false) => Output::File(p.clone()),
            (Some(p), true) if p.as_os_str() == "-" => {
                return exit::usage("--also-kafka needs --output FILE, not - (stdout)");
            }
            (Some(p), true) => Output::KafkaAndFile(p.clone()),
        };
        Ok(GenerateOptions {
            rate: self.rate,
            duration: self.duration.map(|d| d.get()),
            count: self.count,
            seed: self.seed,
            start_time: self.start_time,
            speedup: self.speedup,
            backfill: self.backfill.map(|d| d.get()),
            scenarios: Scenarios {
                surges: self.surge.clone(),
                cancel_spikes: self.cancel_spike.clone(),
            },
            late: self.late,
            out_of_order: self.out_of_order,
            malformed: self.malformed,
            driver_locations: self.no_driver_locations.then_some(false),
            output,
            progress: if self.quiet {
                Progress::Off
            } else {
                Progress::Auto
            },
            flush_timeout: self.flush_timeout.get(),
            wire: match self.wire {
                WireArg::Full => Wire::Full,
                WireArg::Seed => Wire::Seed,
            },
        })
    }
}

/// Installs SIGINT/SIGTERM handling: the first signal asks the generator to stop
/// (it flushes and summarizes), the second exits at once with 130.
pub(super) fn watch_signals(shutdown: Shutdown) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if shutdown.request() >= 2 {
                eprintln!("interrupted again: exiting without waiting for deliveries");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
            eprintln!("stopping: flushing outstanding messages (interrupt again to exit at once)");
        }
    });
    Ok(())
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: GenerateArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    let cfg = loaded.config;
    let opts = args.options()?;
    // Usage errors before anything else (and before any connection).
    let plan = opts.plan(&cfg, crate::time::now_millis())?;
    let shutdown = Shutdown::new();
    watch_signals(shutdown.clone())?;
    let to_stdout = opts.output.file().is_some_and(|p| p.as_os_str() == "-");
    let summary =
        tokio::task::spawn_blocking(move || generate::run_plan(&cfg, &opts, &plan, &shutdown))
            .await??;
    print_summary(&summary, args.format, to_stdout)?;
    Ok(if summary.failed() > 0 {
        exit::FAILURE
    } else {
        exit::OK
    })
}

fn print_summary(s: &Summary, format: Format, to_stderr: bool) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(s)?,
        Format::Table => s.table(),
    };
    if to_stderr {
        eprintln!("{text}");
    } else if format == Format::Json {
        output::print_json(s)?;
    } else {
        println!("{text}");
    }
    Ok(())
}
