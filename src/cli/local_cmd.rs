//! `ridectl local up|status|down`.

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::local::{self, ComponentStatus};
use crate::output::{self, Format};

/// Run the local real stack.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl local up                 one broker on 127.0.0.1:9092, ClickHouse on :8123
  ridectl local up --brokers 3     three brokers (9092-9094) for replication tests
  ridectl local status --format json
  ridectl local down --purge       stop everything and delete the local data

Kafka jars and the chDB virtualenv come from scripts/setup.sh.

Secured stack (docs/security.md): with local.kafka_sasl_ssl {cert, key, users} in
pipeline.yaml the client listener is SASL_SSL (SCRAM-SHA-512 users created when the
storage is first formatted; PLAINTEXT inter-broker listener on kafka_port + 2000);
with local.clickhouse_tls {cert, key} the ClickHouse endpoint serves HTTPS, and
STATE_DIR/clickhouse-users.json gives it users, passwords and read-only users.")]
pub struct LocalArgs {
    #[command(subcommand)]
    action: LocalAction,
}

#[derive(Debug, Subcommand)]
enum LocalAction {
    /// Start Kafka (KRaft) and the ClickHouse endpoint; returns when both answer.
    Up {
        /// Number of Kafka brokers (1 or 3).
        #[arg(long, default_value_t = 1)]
        brokers: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show what is running and answering.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Stop every process `up` started (and nothing else).
    Down {
        /// Also delete the local data and logs.
        #[arg(long)]
        purge: bool,
    },
}

fn print(statuses: &[ComponentStatus], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return output::print_json(statuses);
    }
    let mut t = output::table(&["component", "state", "pid", "address", "detail"], &[2]);
    for s in statuses {
        t.add_row(vec![
            s.name.clone(),
            s.state.to_string(),
            s.pid.map(|p| p.to_string()).unwrap_or_default(),
            s.address.clone(),
            s.detail.clone(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: LocalArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    match args.action {
        LocalAction::Up { brokers, format } => {
            let statuses = local::up(&loaded, brokers).await?;
            print(&statuses, format)?;
        }
        LocalAction::Status { format } => {
            let statuses = local::status(&loaded).await;
            print(&statuses, format)?;
            if statuses.iter().any(|s| s.state != "up") {
                return Ok(crate::exit::UNAVAILABLE);
            }
        }
        LocalAction::Down { purge } => {
            let stopped = local::down(&loaded)?;
            if stopped.is_empty() {
                println!("nothing was running");
            } else {
                println!("stopped {}", stopped.join(", "));
            }
            if purge {
                let state = loaded.state_dir();
                if state.exists() {
                    std::fs::remove_dir_all(&state)?;
                    println!("deleted {}", state.display());
                }
            }
        }
    }
    Ok(crate::exit::OK)
}
