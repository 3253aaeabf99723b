//! The windows oracle: `city_window_metrics` recomputed by ClickHouse straight from
//! raw ride events (`sql/verify/oracle_windows.sql`), and the comparison of the
//! worker's rows with it. Shared by `ridectl verify` and the integration tests, so
//! the expected windows are defined once.

use anyhow::Context;
use serde::Serialize;

use crate::aggregate::sink::MetricsRow;
use crate::time::format_millis;

/// The oracle query; parameters `events` (table), `len` and `slide` (ms).
pub const ORACLE_SQL: &str = include_str!("../../sql/verify/oracle_windows.sql");

/// The output table as readers see it (`FINAL`); parameter `table`.
pub const METRICS_FINAL_SQL: &str = include_str!("../../sql/verify/metrics_final.sql");

/// Largest absolute difference accepted between a float metric and the oracle's
/// (sums of the same fares in another order).
pub const FLOAT_TOLERANCE: f64 = 1e-9;

/// A scratch table of events for the oracle, dropped by [`EventsTable::drop`].
#[derive(Debug)]
pub struct EventsTable {
    client: clickhouse::Client,
    name: String,
}

impl EventsTable {
    /// Creates (or replaces) the table `name` in the client's database. `name` must
    /// be a plain identifier (letters, digits, `_`).
    pub async fn create(client: &clickhouse::Client, name: &str) -> anyhow::Result<EventsTable> {
        anyhow::ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad scratch table name {name:?}"
        );
        client
            .query_raw(&format!("DROP TABLE IF EXISTS `{name}`"))
            .execute()
            .await
            .with_context(|| format!("cannot drop the scratch table {name}"))?;
        client
            .query_raw(&format!(
                "CREATE TABLE `{name}` (event_type String, timestamp DateTime64(3, 'UTC'), \
                 city String, estimated_fare Nullable(Float64), user_id Nullable(String)) \
                 ENGINE = MergeTree ORDER BY tuple()"
            ))
            .execute()
            .await
            .with_context(|| format!("cannot create the scratch table {name}"))?;
        Ok(EventsTable {
            client: client.clone(),
            name: name.to_string(),
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads ride events given as JSON lines (the messages as produced; unknown
    /// fields are ignored).
    pub async fn load_json_lines(&self, data: &[u8]) -> anyhow::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert_formatted_with(format!("INSERT INTO `{}` FORMAT JSONEachRow", self.name))
            .with_setting("input_format_skip_unknown_fields", "1")
            .with_setting("date_time_input_format", "best_effort")
            .buffered();
        let mut rest = data;
        while !rest.is_empty() {
            let n = insert
                .write(rest)
                .await
                .context("cannot load events into the scratch table")?;
            rest = &rest[n..];
        }
        insert
            .end()
            .await
            .context("cannot load events into the scratch table")?;
        Ok(())
    }

    /// The oracle's windows over the table's events, ordered by (city, start).
    pub async fn windows(&self, window_ms: i64, slide_ms: i64) -> anyhow::Result<Vec<MetricsRow>> {
        self.client
            .query_raw(ORACLE_SQL)
            .param("events", self.name.as_str())
            .param("len", window_ms)
            .param("slide", slide_ms)
            .fetch_all::<MetricsRow>()
            .await
            .context("the oracle query failed")
    }

    /// Drops the table.
    pub async fn drop(self) -> anyhow::Result<()> {
        self.client
            .query_raw(&format!("DROP TABLE IF EXISTS `{}`", self.name))
            .execute()
            .await
            .with_context(|| format!("cannot drop the scratch table {}", self.name))
    }
}

/// Every row of the output table (`FINAL`), ordered by (city, start).
pub async fn metrics_rows(
    client: &clickhouse::Client,
    table: &str,
) -> anyhow::Result<Vec<MetricsRow>> {
    client
        .query_raw(METRICS_FINAL_SQL)
        .param("table", table)
        .fetch_all::<MetricsRow>()
        .await
        .with_context(|| format!("cannot read {table} FINAL"))
}

/// How the worker's rows compare with the oracle's.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct WindowsDiff {
    /// Windows in the oracle.
    pub expected: usize,
    /// Rows in the output table.
    pub actual: usize,
    /// Windows equal to the oracle and final.
    pub matching: usize,
    /// Windows present in both whose values differ.
    pub different: usize,
    /// Oracle windows without a row.
    pub missing: usize,
    /// Rows the oracle does not have.
    pub extra: usize,
    /// Rows equal to the oracle but not marked final.
    pub not_final: usize,
    /// A few differences, for people.
    pub examples: Vec<String>,
}

impl WindowsDiff {
    /// True when every window matches and is final.
    pub fn ok(&self) -> bool {
        self.expected == self.matching && self.actual == self.matching
    }
}

fn same_values(a: &MetricsRow, e: &MetricsRow) -> bool {
    (
        a.total_events,
        a.requests,
        a.completions,
        a.cancellations,
        a.unique_riders,
    ) == (
        e.total_events,
        e.requests,
        e.completions,
        e.cancellations,
        e.unique_riders,
    ) && (a.avg_fare - e.avg_fare).abs() <= FLOAT_TOLERANCE
        && (a.cancellation_rate - e.cancellation_rate).abs() <= FLOAT_TOLERANCE
        && (a.completion_rate - e.completion_rate).abs() <= FLOAT_TOLERANCE
}

fn describe(r: &MetricsRow) -> String {
    format!(
        "events {} requests {} completions {} cancellations {} riders {} avg_fare {:.6} final {}",
        r.total_events,
        r.requests,
        r.completions,
        r.cancellations,
        r.unique_riders,
        r.avg_fare,
        r.is_final
    )
}

/// Compares `actual` (output rows) with `expected` (oracle rows), both in any
/// order, keeping at most `max_examples` examples.
pub fn compare(actual: &[MetricsRow], expected: &[MetricsRow], max_examples: usize) -> WindowsDiff {
    use std::collections::BTreeMap;
    let key = |r: &MetricsRow| (r.city.clone(), r.window_start, r.window_end);
    let want: BTreeMap<_, &MetricsRow> = expected.iter().map(|r| (key(r), r)).collect();
    let have: BTreeMap<_, &MetricsRow> = actual.iter().map(|r| (key(r), r)).collect();
    let mut d = WindowsDiff {
        expected: want.len(),
        actual: have.len(),
        ..WindowsDiff::default()
    };
    let note = |d: &mut WindowsDiff, text: String| {
        if d.examples.len() < max_examples {
            d.examples.push(text);
        }
    };
    for (k, e) in &want {
        let name = format!("{} {}", k.0, format_millis(k.1));
        match have.get(k) {
            None => {
                d.missing += 1;
                note(&mut d, format!("{name}: missing (oracle: {})", describe(e)));
            }
            Some(a) if !same_values(a, e) => {
                d.different += 1;
                note(
                    &mut d,
                    format!("{name}: {} (oracle: {})", describe(a), describe(e)),
                );
            }
            Some(a) if a.is_final != 1 => {
                d.not_final += 1;
                note(&mut d, format!("{name}: equal to the oracle but not final"));
            }
            Some(_) => d.matching += 1,
        }
    }
    for (k, a) in &have {
        if !want.contains_key(k) {
            d.extra += 1;
            let name = format!("{} {}", k.0, format_millis(k.1));
            note(
                &mut d,
                format!("{name}: not in the oracle ({})", describe(a)),
            );
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(city: &str, start: i64, events: u64, fare: f64, is_final: u8) -> MetricsRow {
        MetricsRow {
            window_start: start,
            window_end: start + 300_000,
            city: city.into(),
            total_events: events,
            requests: 2,
            completions: 1,
            cancellations: 1,
            avg_fare: fare,
            unique_riders: 2,
            cancellation_rate: 0.5,
            completion_rate: 0.5,
            is_final,
            updated_at: 0,
        }
    }

    #[test]
    fn equal_rows_in_any_order_match() {
        let e = vec![row("a", 0, 5, 10.0, 1), row("b", 60_000, 3, 12.0, 1)];
        let a = vec![e[1].clone(), e[0].clone()];
        let d = compare(&a, &e, 5);
        assert!(d.ok(), "{d:?}");
        assert_eq!(d.matching, 2);
    }

    #[test]
    fn every_kind_of_difference_is_counted() {
        let e = vec![
            row("a", 0, 5, 10.0, 1),
            row("a", 60_000, 5, 10.0, 1),
            row("b", 0, 3, 12.0, 1),
            row("c", 0, 1, 1.0, 1),
        ];
        let a = vec![
            row("a", 0, 6, 10.0, 1),             // a count differs
            row("a", 60_000, 5, 10.0 + 1e-6, 1), // a fare differs beyond the tolerance
            row("b", 0, 3, 12.0 + 1e-12, 0),     // equal but not final
            row("d", 0, 1, 1.0, 1),              // extra; c missing
        ];
        let d = compare(&a, &e, 10);
        assert!(!d.ok());
        assert_eq!(
            (d.different, d.not_final, d.missing, d.extra, d.matching),
            (2, 1, 1, 1, 0),
            "{d:?}"
        );
        assert_eq!(d.examples.len(), 5);
        assert_eq!(compare(&a, &e, 2).examples.len(), 2);
    }
}
