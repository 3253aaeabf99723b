//! `ridectl dlq`: inspect and replay the dead-letter (and late-events) topic.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::dlq::{self, Selection};
use crate::output::{self, Format};
use crate::units::HumanDuration;

/// Inspect and replay what the workers set aside.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl dlq stats                              bad messages per reason and source topic
  ridectl dlq stats --since 1h --format json     ...of the last hour, for scripts
  ridectl dlq list --reason missing_field --limit 20
  ridectl dlq replay --reason missing_field --dry-run
  ridectl dlq replay --reason missing_field     after fixing the producer or the contract
  ridectl dlq stats --late                       events that arrived behind the watermark

The ingest worker dead-letters each message that breaks the wire contract
(docs/events.md) once, with headers naming the reason, the source topic, partition and
offset, and the consumer. Copies a crash may leave are counted once. `replay`
re-produces the original bytes and key to the source topic and marks them replayed in
the same Kafka transaction: replaying the same selection again produces nothing.
Exit codes: 0 ok, 1 failure, 2 usage, 69 Kafka unavailable.")]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Count bad messages per reason and source topic.
    Stats(Common),
    /// Show the bad messages: time, source offset, reason, detail, first bytes.
    List {
        #[command(flatten)]
        common: Common,
        /// Show at most this many (the newest).
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
        /// Bytes of each message to show.
        #[arg(long, default_value_t = 80, value_name = "BYTES")]
        preview: usize,
    },
    /// Re-produce the bad messages to their source topic, once.
    Replay {
        #[command(flatten)]
        common: Common,
        /// Say what would be replayed, produce nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Options every verb takes.
#[derive(Debug, Args)]
struct Common {
    /// The late-events topic instead of the dead-letter topic.
    #[arg(long)]
    late: bool,
    /// Only this reason (`invalid_json`, `missing_field`, `wrong_type`,
    /// `invalid_timestamp`, `timestamp_out_of_range`, `invalid_value`; `late`).
    #[arg(long, value_name = "REASON")]
    reason: Option<String>,
    /// Only records set aside within this long (`1h`, `30m`, `7d`).
    #[arg(long, value_name = "DURATION")]
    since: Option<HumanDuration>,
    /// Time limit for reading the topic.
    #[arg(long, default_value = "2m", value_name = "DURATION")]
    read_timeout: HumanDuration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

impl Common {
    fn selection(&self) -> Selection {
        Selection {
            late: self.late,
            reason: self.reason.clone(),
            since: self
                .since
                .map(|d| crate::time::now_millis() - d.as_millis_i64()),
        }
    }

    fn timeout(&self) -> Duration {
        self.read_timeout.get()
    }
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: DlqArgs) -> anyhow::Result<u8> {
    let cfg = global.load()?.config;
    match args.command {
        DlqCommand::Stats(c) => {
            let sel = c.selection();
            let records = dlq::read(&cfg, &sel, c.timeout()).await?;
            let rows = dlq::stats(&records, &sel);
            if c.format == Format::Json {
                output::print_json(&rows)?;
            } else if rows.is_empty() {
                eprintln!("{} holds nothing that matches", sel.topic(&cfg));
            } else {
                let mut t =
                    output::table(&["reason", "source topic", "messages", "replayed"], &[2, 3]);
                for r in &rows {
                    t.add_row(vec![
                        r.reason.clone(),
                        r.source_topic.clone(),
                        r.messages.to_string(),
                        r.replayed.to_string(),
                    ]);
                }
                println!("{t}");
            }
        }
        DlqCommand::List {
            common: c,
            limit,
            preview,
        } => {
            let sel = c.selection();
            let records = dlq::read(&cfg, &sel, c.timeout()).await?;
            let rows = dlq::list(&records, &sel, limit, preview);
            if c.format == Format::Json {
                output::print_json(&rows)?;
            } else if rows.is_empty() {
                eprintln!("{} holds nothing that matches", sel.topic(&cfg));
            } else {
                let mut t = output::table(
                    &["time", "source", "reason", "detail", "replayed", "message"],
                    &[],
                );
                for r in &rows {
                    t.add_row(vec![
                        r.time.clone().unwrap_or_default(),
                        r.source.clone(),
                        r.reason.clone(),
                        r.detail.clone(),
                        if r.replayed { "yes" } else { "" }.to_string(),
                        format!("{} ({} bytes)", r.preview.escape_debug(), r.bytes),
                    ]);
                }
                println!("{t}");
            }
        }
        DlqCommand::Replay { common: c, dry_run } => {
            let sel = c.selection();
            if sel.late && !dry_run {
                anyhow::bail!(crate::exit::UsageError(
                    "late events are valid and already in ride_events (ingest stores every \
                     valid event); re-producing them would store them twice and they would be \
                     late again for the windows. Rebuild the windows instead: \
                     `ridectl aggregate --bounded --from-beginning` (docs/aggregate.md)"
                        .into()
                ));
            }
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            let summary = dlq::replay(&cfg, &sel, dry_run, c.timeout(), |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await;
            bar.finish_and_clear();
            let summary = summary?;
            if c.format == Format::Json {
                output::print_json(&summary)?;
            } else {
                let verb = if dry_run { "would replay" } else { "replayed" };
                let n = if dry_run {
                    summary.candidates
                } else {
                    summary.replayed
                };
                println!(
                    "{verb} {n} of {} selected message(s); {} replayed before",
                    summary.selected, summary.already_replayed
                );
                for (topic, k) in &summary.by_topic {
                    println!("  {topic}: {k}");
                }
                if summary.selected == 0 {
                    eprintln!("nothing in {} matches the selection", sel.topic(&cfg));
                }
            }
        }
    }
    Ok(0)
}
