//! `ridectl alerts check | watch`: evaluate the alert rules of pipeline.yaml against
//! ClickHouse and page through PagerDuty (docs/alerts.md).

use std::time::Duration;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::alerts::pagerduty::RetryPolicy;
use crate::alerts::{Alerter, AlerterOptions, CityStatus, Delivery, Report};
use crate::config::Loaded;
use crate::exit;
use crate::output::Format;
use crate::time::{EpochMillis, now_millis, parse_iso8601};
use crate::units::HumanDuration;

/// Evaluate the alert rules and send PagerDuty events.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl alerts check --dry-run                 evaluate now, print the events
  ridectl alerts check                           evaluate now and page (PAGERDUTY_ROUTING_KEY)
  ridectl alerts watch --every 30s               evaluate every 30 s until Ctrl-C
  ridectl alerts check --at 2026-11-26T10:07:00Z --pagerduty-url http://127.0.0.1:8080/

A city fires when every complete minute of the rule's `for` has at least
`min_requests` requests and a cancellation rate above `threshold`; it resolves when
its latest complete minute is at or below the threshold. Open incidents are kept in
alerts.state_file, so nothing is triggered twice, also across restarts.")]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// Evaluate every rule once and send the transitions.
    Check(CommonArgs),
    /// Evaluate every rule periodically until Ctrl-C.
    Watch(WatchArgs),
}

#[derive(Debug, Clone, Args)]
struct CommonArgs {
    /// Print the PagerDuty events instead of sending them; record nothing.
    #[arg(long)]
    dry_run: bool,
    /// PagerDuty Events API v2 endpoint (default: alerts.pagerduty.url).
    #[arg(long, value_name = "URL")]
    pagerduty_url: Option<String>,
    /// Evaluate as of this time (ISO-8601) instead of now: for backfills and tests.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    at: Option<EpochMillis>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Attempts per event before giving up (429, 5xx, connection failures).
    #[arg(long, default_value_t = RetryPolicy::default().max_attempts, value_name = "N")]
    max_attempts: u32,
    /// First retry delay (doubles up to --max-backoff).
    #[arg(long, default_value = "500ms", value_name = "DURATION")]
    initial_backoff: HumanDuration,
    /// Longest retry delay.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    max_backoff: HumanDuration,
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// Evaluation interval.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    every: HumanDuration,
    #[command(flatten)]
    common: CommonArgs,
}

fn parse_time(s: &str) -> Result<i64, String> {
    parse_iso8601(s)
        .ok_or_else(|| format!("{s:?} is not an ISO-8601 time such as 2026-11-26T10:00:00Z"))
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: AlertsArgs) -> anyhow::Result<u8> {
    match args.command {
        AlertsCommand::Check(c) => {
            let alerter = alerter(&global.load()?, &c)?;
            let report = alerter.check(c.at.unwrap_or_else(now_millis)).await?;
            print(&report, c.format, false)?;
            outcome(&report)
        }
        AlertsCommand::Watch(w) => watch(global, w).await,
    }
}

fn alerter(loaded: &Loaded, c: &CommonArgs) -> anyhow::Result<Alerter> {
    if c.max_attempts == 0 {
        return exit::usage("--max-attempts must be at least 1");
    }
    if c.initial_backoff > c.max_backoff {
        return exit::usage("--initial-backoff must not exceed --max-backoff");
    }
    Alerter::new(
        loaded,
        AlerterOptions {
            dry_run: c.dry_run,
            url: c.pagerduty_url.clone(),
            retry: RetryPolicy {
                initial_backoff: c.initial_backoff.get(),
                max_backoff: c.max_backoff.get(),
                max_attempts: c.max_attempts,
                ..RetryPolicy::default()
            },
        },
    )
}

/// Exit code of an evaluation: 0 when every transition was delivered (or printed), 1
/// when PagerDuty rejected one, 69 when it could not be reached.
fn outcome(report: &Report) -> anyhow::Result<u8> {
    let failed = report.failures();
    if failed == 0 {
        return Ok(exit::OK);
    }
    let msg = format!(
        "{failed} PagerDuty event(s) not delivered; they are sent again at the next evaluation"
    );
    if report.rejected {
        anyhow::bail!(msg)
    }
    Err(exit::Unavailable(msg).into())
}

async fn watch(global: &GlobalArgs, w: WatchArgs) -> anyhow::Result<u8> {
    if w.every.get() < Duration::from_secs(1) {
        return exit::usage("--every must be at least 1s");
    }
    if w.common.at.is_some() {
        return exit::usage("--at evaluates one fixed time: use `ridectl alerts check --at`");
    }
    let alerter = alerter(&global.load()?, &w.common)?;
    let mut shutdown = crate::shutdown::Shutdown::from_signals()?;
    tracing::info!(
        "evaluating every {} (state in {}); Ctrl-C to stop",
        w.every,
        alerter.state_file().display()
    );
    loop {
        match alerter.check(now_millis()).await {
            Ok(report) => {
                print(&report, w.common.format, true)?;
                if let Err(e) = outcome(&report) {
                    tracing::warn!("{e:#}");
                }
            }
            // ClickHouse down, state file unreadable: keep watching; say so every time.
            Err(e) => tracing::error!("evaluation failed: {e:#}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(w.every.get()) => {}
            _ = shutdown.wait() => return Ok(exit::OK),
        }
    }
}

/// Prints a report; `stream`: one compact JSON document per line (`watch`).
fn print(report: &Report, format: Format, stream: bool) -> anyhow::Result<()> {
    match format {
        Format::Json if stream => {
            println!("{}", serde_json::to_string(report)?);
            Ok(())
        }
        Format::Json => crate::output::print_json(report),
        Format::Table => {
            print!("{}", render_text(report));
            Ok(())
        }
    }
}

fn status_text(s: CityStatus) -> &'static str {
    match s {
        CityStatus::Ok => "ok",
        CityStatus::Pending => "pending",
        CityStatus::Firing => "FIRING",
        CityStatus::FiringNoData => "FIRING (no data)",
        CityStatus::Resolved => "resolved",
    }
}

/// The human-readable report.
fn render_text(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "alerts evaluated at {}{}",
        report.at,
        if report.dry_run { " (dry run)" } else { "" }
    );
    for r in &report.rules {
        let _ = writeln!(
            out,
            "rule {}: cancellation rate > {:.0}% in each of {} minutes (≥ {} requests/minute), minutes {} – {}",
            r.rule,
            r.threshold * 100.0,
            r.window_minutes,
            r.min_requests,
            r.window_from,
            r.window_to
        );
        let mut t = crate::output::table(
            &[
                "city",
                "status",
                "minutes over",
                "window rate",
                "latest minute",
            ],
            &[2, 3, 4],
        );
        for c in &r.cities {
            let (over, rate, latest) = match &c.observation {
                Some(o) => (
                    format!("{}/{}", o.breaching_minutes, r.window_minutes),
                    format!("{:.1}%", o.window_rate * 100.0),
                    format!(
                        "{:.1}% ({}/{})",
                        o.latest_rate * 100.0,
                        o.latest_cancellations,
                        o.latest_requests
                    ),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            t.add_row(vec![
                c.city.clone(),
                status_text(c.status).into(),
                over,
                rate,
                latest,
            ]);
        }
        if r.cities.is_empty() {
            let _ = writeln!(out, "  no data in the window");
        } else {
            let _ = writeln!(out, "{t}");
        }
    }
    if report.events.is_empty() {
        let _ = writeln!(out, "no PagerDuty events");
    }
    for e in &report.events {
        let what = match e.delivery {
            Delivery::Sent => format!("sent ({} attempt(s))", e.attempts),
            Delivery::DryRun => "not sent (dry run)".into(),
            Delivery::Failed => format!(
                "NOT delivered: {}",
                e.error.as_deref().unwrap_or("unknown error")
            ),
        };
        let _ = writeln!(
            out,
            "{} {} ({} {}): {what}",
            e.action.as_str(),
            e.dedup_key,
            e.rule,
            e.city
        );
        if let Some(ev) = &e.event {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(ev).unwrap_or_default()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::format_millis;

    #[test]
    fn times_parse() {
        assert_eq!(
            parse_time("2026-11-26T10:00:00Z")
                .map(format_millis)
                .as_deref(),
            Ok("2026-11-26T10:00:00.000Z")
        );
        assert!(parse_time("soon").is_err());
    }
}
