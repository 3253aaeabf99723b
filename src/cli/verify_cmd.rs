//! `ridectl verify`: check ClickHouse and the side topics against the ride events.

use clap::Args;

use super::GlobalArgs;
use crate::output::{self, Format};
use crate::units::HumanDuration;
use crate::verify::{self, Report, VerifyOptions};

/// Check the pipeline's outputs against the events in the ride-events topic.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl verify                                   every check, as a table
  ridectl verify --expect-delivered 50000          ...and the topic holds what the generator delivered
  ridectl verify --max-late 0                      ...and no event was judged late
  ridectl verify --format json | jq .passed        for scripts

Reads topics.ride_events from the beginning to its current end, parses every message
with the workers' parser, and checks: ride_events holds each valid event exactly once
(and city_minute_rollup counted each once); city_window_metrics FINAL equals an oracle
computed by ClickHouse from the valid events (minus the late ones in
topics.late_events), every window final; topics.dead_letter holds no valid event.
Run it after the workers caught up (e.g. `ingest --bounded`, `aggregate --bounded`).
Exit code 0 when every check passes, 1 when one fails. Used by scripts/faults.sh;
see docs/faults.md.")]
pub struct VerifyArgs {
    /// The generator's delivered ride-event count (`generate --format json`:
    /// `.ride_events.delivered`); the topic must hold exactly that many.
    #[arg(long, value_name = "N")]
    expect_delivered: Option<u64>,
    /// Fail when more valid events than this are in the late topic (0 for traffic
    /// without `generate --late`: such events were wrongly judged late).
    #[arg(long, value_name = "N")]
    max_late: Option<u64>,
    /// Time limit for reading each topic.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    read_timeout: HumanDuration,
    /// Examples to show per problem.
    #[arg(long, default_value_t = 5, value_name = "N")]
    examples: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: VerifyArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    let opts = VerifyOptions {
        expect_delivered: args.expect_delivered,
        max_late: args.max_late,
        read_timeout: args.read_timeout.get(),
        examples: args.examples,
    };
    let report = verify::run(&loaded.config, &opts).await?;
    match args.format {
        Format::Json => output::print_json(&report)?,
        Format::Table => print_table(&report),
    }
    Ok(if report.passed {
        crate::exit::OK
    } else {
        crate::exit::FAILURE
    })
}

fn print_table(r: &Report) {
    let mut t = output::table(&["check", "result", "detail"], &[]);
    for c in &r.checks {
        t.add_row(vec![
            c.name.to_string(),
            if c.passed { "ok" } else { "FAILED" }.to_string(),
            c.detail.clone(),
        ]);
    }
    println!("{t}");
    println!(
        "topic: {} messages, {} valid ({} distinct), {} invalid; late: {} events; {:.1}s",
        r.topic.messages,
        r.topic.valid,
        r.topic.distinct,
        r.topic.invalid,
        r.side_outputs.late_events,
        r.seconds
    );
    let examples = r
        .ride_events
        .examples
        .iter()
        .chain(&r.windows.examples)
        .chain(&r.side_outputs.examples);
    for e in examples {
        println!("  {e}");
    }
    println!("{}", if r.passed { "PASSED" } else { "FAILED" });
}
