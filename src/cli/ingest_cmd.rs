//! `ridectl ingest`.

use clap::Args;

use super::GlobalArgs;
use crate::ingest::{self, IngestOptions};
use crate::output::{self, Format};
use crate::shutdown::Shutdown;

/// Write raw events from Kafka into ClickHouse, exactly once in effect.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl ingest                          run until Ctrl-C
  ridectl ingest --bounded --format json  write what is in the topics now, then exit

Reads topics.ride_events and topics.driver_locations (consumer group ingest.group_id),
writes ride_events and driver_locations in batches of ingest.batch_max_rows rows or
ingest.batch_max_wait, each with an insert_deduplication_token, and commits offsets
only after the insert succeeded. Malformed messages go to topics.dead_letter.")]
pub struct IngestArgs {
    /// Stop at the end offsets present at start.
    #[arg(long)]
    bounded: bool,
    /// Start at the earliest offsets when the group has none committed.
    #[arg(long)]
    from_beginning: bool,
    /// Summary format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: IngestArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    let shutdown = Shutdown::from_signals()?;
    let opts = IngestOptions {
        bounded: args.bounded,
        from_beginning: args.from_beginning,
    };
    let summary = ingest::run(&loaded.config, opts, shutdown).await?;
    if args.format == Format::Json {
        output::print_json(&summary)?;
    } else {
        let dead: u64 = summary.dead_letters.values().sum();
        println!(
            "ingested {} ride events and {} driver locations in {} batches ({:.1}s); {} dead letters, {} retries",
            summary.ride_rows,
            summary.location_rows,
            summary.batches,
            summary.seconds,
            dead,
            summary.retries
        );
    }
    Ok(crate::exit::OK)
}
