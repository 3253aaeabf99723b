//! `ridectl verify`: checks the pipeline's outputs against its input, end to end.
//!
//! The input is what is in the ride-events topic now (read bounded, from the low
//! to the high watermarks), parsed with the workers' own parser
//! ([`crate::events::parse_ride_event`]). Against it:
//!
//! - **topic**: every valid event is in the topic once (and, with
//!   `expect_delivered`, there are exactly as many as the generator delivered);
//! - **ride_events**: holds exactly the valid events' `event_id`s, each once (no
//!   missing, duplicated or foreign rows); `city_minute_rollup` counted each once;
//! - **windows**: `city_window_metrics FINAL` equals the oracle
//!   ([`oracle`], `sql/verify/oracle_windows.sql`) computed by ClickHouse from the
//!   valid events, minus those the aggregation worker legitimately left out: late
//!   events (in the late topic) and events too far ahead of the clock (dead-lettered
//!   as `timestamp_out_of_range`); every window is final;
//! - **dead letters**: no other message of the dead-letter topic is a valid event.
//!
//! Nothing is written except a scratch table for the oracle, dropped at the end.
//! Run it once the workers have caught up (after bounded runs, say): it checks the
//! state as it is.

pub mod oracle;
pub mod read;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::clickhouse::{self as ch, Access};
use crate::config::PipelineConfig;
use crate::events::{RejectReason, parse_ride_event};
use crate::kafka::dlq::REASON_HEADER;
use oracle::WindowsDiff;
use read::Record;

/// How to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// The generator's delivered ride-event count, to compare with the topic.
    pub expect_delivered: Option<u64>,
    /// Fail when more events than this were routed to the late topic (traffic in
    /// timestamp order has none, so 0 catches events wrongly judged late).
    pub max_late: Option<u64>,
    /// Time limit for reading each topic.
    pub read_timeout: Duration,
    /// How many examples to keep per problem.
    pub examples: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            expect_delivered: None,
            max_late: None,
            read_timeout: Duration::from_secs(300),
            examples: 5,
        }
    }
}

/// What the ride-events topic holds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TopicStats {
    /// Messages read.
    pub messages: u64,
    /// Messages that are valid ride events.
    pub valid: u64,
    /// Distinct `event_id`s among them.
    pub distinct: u64,
    /// Messages the parser rejects (they belong in the dead-letter topic).
    pub invalid: u64,
}

/// `ride_events` against the topic's valid events.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RideEventsStats {
    /// Rows in the table.
    pub rows: u64,
    /// Distinct `event_id`s in the table.
    pub distinct: u64,
    /// Extra copies: rows minus distinct ids.
    pub duplicates: u64,
    /// Valid events of the topic without a row.
    pub missing: u64,
    /// Ids in the table that are not valid events of the topic.
    pub foreign: u64,
    /// Events counted by the `city_minute_rollup` materialized view.
    pub rollup_events: u64,
    /// A few examples of each problem.
    pub examples: Vec<String>,
}

/// The aggregation worker's side outputs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SideOutputs {
    /// Messages in the late topic.
    pub late_messages: u64,
    /// Distinct valid events among them (left out of the oracle).
    pub late_events: u64,
    /// Messages in the dead-letter topic.
    pub dead_letter_messages: u64,
    /// Dead letters that are valid events too far ahead of the clock (the
    /// worker's `max_clock_skew` rule; left out of the oracle).
    pub dead_letter_ahead_of_clock: u64,
    /// Other dead letters that are valid events: each one is a bug.
    pub dead_letter_valid: u64,
    /// Examples of the latter.
    pub examples: Vec<String>,
}

/// One check and its outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// The full result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// True when every check passed.
    pub passed: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The generator's delivered count, when given.
    pub expect_delivered: Option<u64>,
    /// The ride-events topic.
    pub topic: TopicStats,
    /// The raw events table.
    pub ride_events: RideEventsStats,
    /// Late topic and dead letters.
    pub side_outputs: SideOutputs,
    /// The windows against the oracle.
    pub windows: WindowsDiff,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The topic's valid events: payloads (first occurrence of each id) and counts.
struct Valid {
    payloads: HashMap<String, Vec<u8>>,
    stats: TopicStats,
}

/// The event id of a valid event read from `r`: the one it carries, or the one
/// derived from its coordinates in its source topic (for a side-topic record, the
/// source coordinates in its headers).
fn event_id(r: &Record, ev: &crate::events::RideEventView<'_>, topic: &str) -> String {
    use crate::kafka::dlq::{SOURCE_OFFSET_HEADER, SOURCE_TOPIC_HEADER};
    let source = r.headers.get(SOURCE_TOPIC_HEADER).zip(
        r.headers
            .get(SOURCE_OFFSET_HEADER)
            .and_then(|o| o.split_once('/'))
            .and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?))),
    );
    match source {
        Some((t, (p, o))) => ev.event_id_at(t, p, o).into_owned(),
        None => ev.event_id_at(topic, r.partition, r.offset).into_owned(),
    }
}

fn valid_events(records: &[Record], topic: &str) -> Valid {
    let mut payloads = HashMap::new();
    let mut stats = TopicStats {
        messages: records.len() as u64,
        ..TopicStats::default()
    };
    for r in records {
        match parse_ride_event(&r.payload) {
            Ok(ev) => {
                stats.valid += 1;
                payloads
                    .entry(event_id(r, &ev, topic))
                    .or_insert_with(|| r.payload.clone());
            }
            Err(_) => stats.invalid += 1,
        }
    }
    stats.distinct = payloads.len() as u64;
    Valid { payloads, stats }
}

/// Compares the table's `(event_id, count)` pairs with the topic's valid ids.
fn compare_ids(
    table: &[(String, u64)],
    topic: &HashMap<String, Vec<u8>>,
    max_examples: usize,
) -> RideEventsStats {
    let mut s = RideEventsStats {
        distinct: table.len() as u64,
        ..RideEventsStats::default()
    };
    let ex = |s: &mut RideEventsStats, kind: &str, id: &str| {
        if s.examples.len() < max_examples {
            s.examples.push(format!("{kind}: {id}"));
        }
    };
    let mut seen = HashSet::with_capacity(table.len());
    for (id, n) in table {
        s.rows += n;
        if *n > 1 {
            s.duplicates += n - 1;
            ex(&mut s, &format!("{n} copies"), id);
        }
        if !topic.contains_key(id) {
            s.foreign += 1;
            ex(&mut s, "not a valid event of the topic", id);
        }
        seen.insert(id.as_str());
    }
    let mut missing: Vec<&String> = topic
        .keys()
        .filter(|id| !seen.contains(id.as_str()))
        .collect();
    missing.sort();
    s.missing = missing.len() as u64;
    for id in missing {
        ex(&mut s, "missing", id);
    }
    s
}

/// Event ids of valid events among `records` (late or dead-lettered messages).
fn ids(records: &[Record], filter: impl Fn(&Record) -> bool) -> HashSet<String> {
    records
        .iter()
        .filter(|r| filter(r))
        .filter_map(|r| Some(event_id(r, &parse_ride_event(&r.payload).ok()?, "")))
        .collect()
}

async fn read(cfg: &PipelineConfig, topic: &str, timeout: Duration) -> anyhow::Result<Vec<Record>> {
    let (k, t) = (cfg.kafka.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || read::read_topic(&k, &t, timeout))
        .await
        .context("the topic reader panicked")?
}

fn check(name: &'static str, passed: bool, detail: String) -> Check {
    Check {
        name,
        passed,
        detail,
    }
}

/// Runs every check (see the module documentation).
pub async fn run(cfg: &PipelineConfig, opts: &VerifyOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    ch::version(&cfg.clickhouse, Duration::from_secs(10)).await?;
    let timeout = opts.read_timeout;
    let t = &cfg.topics;
    let rides = read(cfg, &t.ride_events.name, timeout).await?;
    let late = read(cfg, &t.late_events.name, timeout).await?;
    let dead = read(cfg, &t.dead_letter.name, timeout).await?;
    let valid = valid_events(&rides, &t.ride_events.name);
    drop(rides);

    // Side outputs.
    let late_ids = ids(&late, |_| true);
    let ahead = RejectReason::TimestampOutOfRange.as_str();
    let is_ahead = |r: &Record| r.headers.get(REASON_HEADER).map(String::as_str) == Some(ahead);
    let ahead_ids = ids(&dead, is_ahead);
    let mut side = SideOutputs {
        late_messages: late.len() as u64,
        late_events: late_ids.len() as u64,
        dead_letter_messages: dead.len() as u64,
        dead_letter_ahead_of_clock: dead
            .iter()
            .filter(|r| is_ahead(r) && parse_ride_event(&r.payload).is_ok())
            .count() as u64,
        ..SideOutputs::default()
    };
    for r in dead.iter().filter(|r| !is_ahead(r)) {
        if let Ok(ev) = parse_ride_event(&r.payload) {
            side.dead_letter_valid += 1;
            if side.examples.len() < opts.examples {
                let reason = r.headers.get(REASON_HEADER).cloned().unwrap_or_default();
                side.examples.push(format!(
                    "{} at {}/{} (reason {reason:?})",
                    event_id(r, &ev, ""),
                    r.partition,
                    r.offset
                ));
            }
        }
    }

    // ride_events.
    let client = ch::client(&cfg.clickhouse, Access::Write);
    let table: Vec<(String, u64)> = client
        .query_raw("SELECT event_id, toUInt64(count()) FROM ride_events GROUP BY event_id")
        .fetch_all()
        .await
        .context("cannot read ride_events")?;
    let mut raw = compare_ids(&table, &valid.payloads, opts.examples);
    drop(table);
    raw.rollup_events = client
        .query_raw("SELECT toUInt64(countMerge(events)) FROM city_minute_rollup")
        .fetch_one()
        .await
        .context("cannot read city_minute_rollup")?;

    // Windows: the oracle over the valid events the worker was to count.
    let mut lines = Vec::new();
    for (id, payload) in &valid.payloads {
        if !late_ids.contains(id) && !ahead_ids.contains(id) {
            lines.extend_from_slice(payload);
            lines.push(b'\n');
        }
    }
    let scratch = format!(
        "verify_events_{}_{}",
        std::process::id(),
        crate::time::now_millis()
    );
    let events = oracle::EventsTable::create(&client, &scratch).await?;
    let a = &cfg.aggregation;
    let expected = async {
        events.load_json_lines(&lines).await?;
        events
            .windows(a.window.as_millis_i64(), a.slide.as_millis_i64())
            .await
    }
    .await;
    let dropped = events.drop().await;
    let expected = expected?;
    dropped?;
    let actual = oracle::metrics_rows(&client, &a.output_table).await?;
    let windows = oracle::compare(&actual, &expected, opts.examples);

    let ts = &valid.stats;
    let mut checks = Vec::new();
    if let Some(n) = opts.expect_delivered {
        checks.push(check(
            "topic holds the delivered events",
            ts.distinct == n,
            format!(
                "{} distinct valid events, generator delivered {n}",
                ts.distinct
            ),
        ));
    }
    checks.push(check(
        "topic holds each event once",
        ts.valid == ts.distinct,
        format!(
            "{} valid messages, {} distinct event_ids",
            ts.valid, ts.distinct
        ),
    ));
    checks.push(check(
        "ride_events = valid events, each once",
        raw.missing == 0 && raw.duplicates == 0 && raw.foreign == 0,
        format!(
            "{} rows, {} duplicates, {} missing, {} foreign",
            raw.rows, raw.duplicates, raw.missing, raw.foreign
        ),
    ));
    checks.push(check(
        "city_minute_rollup counts each event once",
        raw.rollup_events == ts.distinct,
        format!("{} events, expected {}", raw.rollup_events, ts.distinct),
    ));
    checks.push(check(
        "city_window_metrics = oracle, all final",
        windows.ok(),
        format!(
            "{} windows expected, {} rows: {} match, {} differ, {} missing, {} extra, {} not final",
            windows.expected,
            windows.actual,
            windows.matching,
            windows.different,
            windows.missing,
            windows.extra,
            windows.not_final
        ),
    ));
    if let Some(max) = opts.max_late {
        checks.push(check(
            "late events within the limit",
            side.late_events <= max,
            format!("{} late events, at most {max} expected", side.late_events),
        ));
    }
    checks.push(check(
        "no valid event in the dead-letter topic",
        side.dead_letter_valid == 0,
        format!(
            "{} dead letters, {} valid ({} ahead of the clock, allowed)",
            side.dead_letter_messages, side.dead_letter_valid, side.dead_letter_ahead_of_clock
        ),
    ));
    Ok(Report {
        passed: checks.iter().all(|c| c.passed),
        checks,
        expect_delivered: opts.expect_delivered,
        topic: valid.stats,
        ride_events: raw,
        side_outputs: side,
        windows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(payload: &str) -> Record {
        Record {
            partition: 0,
            offset: 0,
            payload: payload.as_bytes().to_vec(),
            headers: HashMap::new(),
        }
    }

    fn event(id: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","schema_version":1,"event_type":"requested","ride_id":"r","timestamp":"2026-01-01T00:00:00.000Z","city":"berlin","estimated_fare":10.0,"user_id":"u","pickup":{{"lat":52.5,"lng":13.4}},"dropoff":{{"lat":52.5,"lng":13.4}}}}"#
        )
    }

    #[test]
    fn the_topic_is_parsed_with_the_workers_parser() {
        let recs = vec![
            rec(&event("a")),
            rec(&event("b")),
            rec(&event("a")),
            rec("{oops"),
        ];
        let v = valid_events(&recs, "ride-events");
        assert_eq!(
            (
                v.stats.messages,
                v.stats.valid,
                v.stats.distinct,
                v.stats.invalid
            ),
            (4, 3, 2, 1)
        );
    }

    #[test]
    fn missing_duplicated_and_foreign_ids_are_counted() {
        let topic: HashMap<String, Vec<u8>> = ["a", "b", "c"]
            .iter()
            .map(|s| (s.to_string(), Vec::new()))
            .collect();
        let table = vec![("a".to_string(), 1), ("b".to_string(), 3), ("z".into(), 1)];
        let s = compare_ids(&table, &topic, 10);
        assert_eq!(
            (s.rows, s.distinct, s.duplicates, s.missing, s.foreign),
            (5, 3, 2, 1, 1)
        );
        assert!(s.examples.iter().any(|e| e == "missing: c"), "{s:?}");
        let exact = vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 1)];
        let s = compare_ids(&exact, &topic, 10);
        assert_eq!((s.duplicates, s.missing, s.foreign), (0, 0, 0));
    }
}
