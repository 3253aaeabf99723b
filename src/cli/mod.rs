//! The command line: global options, one module per subcommand, and [`run`], which
//! maps errors to exit codes (see [`crate::exit`]).

mod aggregate_cmd;
mod alerts_cmd;
mod bench_cmd;
mod config_cmd;
mod dashboard_cmd;
mod dlq_cmd;
mod generate_cmd;
mod ingest_cmd;
mod local_cmd;
mod query_cmd;
mod schema_cmd;
mod topics_cmd;
mod verify_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Loaded};
use crate::exit;

const EXAMPLES: &str = "\
Examples:
  ridectl local up                      start Kafka and the ClickHouse endpoint
  ridectl topics create                 create or repair the topics in pipeline.yaml
  ridectl schema apply                  create the ClickHouse tables
  ridectl aggregate                     run the windowed aggregation worker
  ridectl config show --profile prod    print the effective configuration
  ridectl generate --rate 50000/min     produce realistic ride traffic
  ridectl bench generate                the generator's maximum rate vs Kafka's own
  ridectl alerts check --dry-run        evaluate the alert rules, print the PagerDuty events
  ridectl verify                        check ClickHouse against the events in Kafka
  ridectl dlq stats                     dead-lettered messages per reason (list, replay)
  ridectl dashboard --open              the live ops dashboard in a browser

Configuration: pipeline.yaml (or --config / RIDECTL_CONFIG), profile `local` unless
--profile / RIDECTL_PROFILE says otherwise.
Exit codes: 0 ok, 1 failure, 2 usage, 69 dependency unavailable, 77 authentication
failed (Kafka or ClickHouse refused the credentials), 78 bad configuration.";

/// ridectl: a real-time ride analytics pipeline on Kafka and ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "ridectl", version, about, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "RIDECTL_CONFIG",
        default_value = "pipeline.yaml"
    )]
    pub config: PathBuf,
    /// Configuration profile (`local`, `prod`, ...).
    #[arg(long, global = true, env = "RIDECTL_PROFILE")]
    pub profile: Option<String>,
    /// Log filter (`info`, `debug`, `ridectl=trace`, ...).
    #[arg(long, global = true, env = "RIDECTL_LOG", default_value = "info")]
    pub log: String,
}

impl GlobalArgs {
    /// Loads and validates the configuration (no network access).
    pub fn load(&self) -> anyhow::Result<Loaded> {
        Ok(config::load(&self.config, self.profile.as_deref())?)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check or print pipeline.yaml.
    Config(config_cmd::ConfigArgs),
    /// Run the local real stack: Kafka brokers (KRaft) and the ClickHouse endpoint.
    Local(local_cmd::LocalArgs),
    /// Create, inspect and repair the Kafka topics.
    Topics(topics_cmd::TopicsArgs),
    /// Apply the ClickHouse schema in sql/.
    Schema(schema_cmd::SchemaArgs),
    /// Produce realistic ride traffic (lifecycles, driver locations, scenarios).
    Generate(generate_cmd::GenerateArgs),
    /// Compute windowed per-city metrics (the aggregation worker).
    Aggregate(aggregate_cmd::AggregateArgs),
    /// Write raw events from Kafka into ClickHouse, exactly once in effect.
    Ingest(ingest_cmd::IngestArgs),
    /// Run a named query from sql/queries/ (or ad-hoc SQL) and print a table.
    Query(query_cmd::QueryArgs),
    /// Evaluate the alert rules against ClickHouse and page through PagerDuty.
    Alerts(alerts_cmd::AlertsArgs),
    /// Measure the pipeline's parts against the local stack.
    Bench(bench_cmd::BenchArgs),
    /// Check ClickHouse and the side topics against the ride events (end to end).
    Verify(verify_cmd::VerifyArgs),
    /// Inspect and replay dead-lettered (and late) messages.
    Dlq(dlq_cmd::DlqArgs),
    /// Serve the live ops dashboard (the Grafana dashboard, rendered by ridectl).
    Dashboard(dashboard_cmd::DashboardArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    restore_sigpipe();
    init_logging(&cli.global.log);
    let result = match cli.command {
        Command::Config(args) => config_cmd::run(&cli.global, args),
        Command::Local(args) => block_on(local_cmd::run(&cli.global, args)),
        Command::Topics(args) => block_on(topics_cmd::run(&cli.global, args)),
        Command::Schema(args) => block_on(schema_cmd::run(&cli.global, args)),
        Command::Generate(args) => block_on(generate_cmd::run(&cli.global, args)),
        Command::Aggregate(args) => block_on(aggregate_cmd::run(&cli.global, args)),
        Command::Ingest(args) => block_on(ingest_cmd::run(&cli.global, args)),
        Command::Query(args) => block_on(query_cmd::run(&cli.global, args)),
        Command::Alerts(args) => block_on(alerts_cmd::run(&cli.global, args)),
        Command::Bench(args) => block_on(bench_cmd::run(&cli.global, args)),
        Command::Verify(args) => block_on(verify_cmd::run(&cli.global, args)),
        Command::Dlq(args) => block_on(dlq_cmd::run(&cli.global, args)),
        Command::Dashboard(args) => block_on(dashboard_cmd::run(&cli.global, args)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = exit::code_for(&err);
            if code == exit::CONFIG {
                // ConfigError already lists every problem, one per line.
                eprint!("error: {}", err.root_cause());
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<u8>>>(fut: F) -> anyhow::Result<u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)?
        .block_on(fut)
}

/// Lets `ridectl ... | head` end quietly, as Unix tools do, instead of panicking on
/// a closed pipe: Rust ignores SIGPIPE by default; restore the default action.
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing the default disposition (no handler code runs) at start-up,
    // before any other thread exists.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
