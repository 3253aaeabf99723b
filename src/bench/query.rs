//! `ridectl bench query`: fills `ride_events` with synthetic history inside
//! ClickHouse (numbers()-based, the generator's city weights and event mix, spread
//! over 30 days), then times each named query against the equivalent query over the
//! raw table, side by side in one run.
//!
//! It works in its own database (`ridectl_bench` by default), never the live one.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::clickhouse::{Access, schema};
use crate::config::ClickHouseConfig;
use crate::query::{self, Params};
use crate::time::EpochMillis;

/// Options of a run.
#[derive(Clone, Debug)]
pub struct QueryBenchOptions {
    /// Rows of history to have in `ride_events`.
    pub rows: u64,
    /// Days the history spans.
    pub days: u32,
    /// Timed runs per query (after one warm-up); the median is reported.
    pub runs: usize,
    /// Database to fill and query.
    pub database: String,
    /// Rows per INSERT … SELECT.
    pub chunk: u64,
}

/// One measured pair.
#[derive(Clone, Debug, Serialize)]
pub struct QueryTiming {
    /// Named query.
    pub query: String,
    /// Time range queried (ending where the history ends).
    pub range: String,
    /// Median milliseconds of the named query (rollup).
    pub rollup_ms: f64,
    /// Median milliseconds of the raw-table equivalent.
    pub raw_ms: f64,
    /// raw / rollup.
    pub speedup: f64,
    /// Rows returned by the named query.
    pub rows: usize,
    /// Rows returned by the raw-table query (minutes without requests have no raw row).
    pub raw_rows: usize,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct QueryBenchReport {
    /// Rows in `ride_events`.
    pub rows: u64,
    /// Seconds spent filling (0 when the data was there).
    pub fill_seconds: f64,
    /// Timings.
    pub timings: Vec<QueryTiming>,
}

async fn count(ch: &ClickHouseConfig) -> anyhow::Result<u64> {
    crate::clickhouse::client(ch, Access::Write)
        .query("SELECT count() FROM ride_events")
        .fetch_one::<u64>()
        .await
        .context("count ride_events")
}

/// Fills (if needed) and measures.
pub async fn run(
    ch: &ClickHouseConfig,
    sql_dir: &Path,
    opts: &QueryBenchOptions,
) -> anyhow::Result<QueryBenchReport> {
    let ch = ClickHouseConfig {
        database: opts.database.clone(),
        ..ch.clone()
    };
    schema::apply(&ch, &schema::load_dir(&sql_dir.join("schema"))?).await?;
    let have = count(&ch).await?;
    // History ends at the top of the current hour on the first fill (ride_events keeps
    // 90 days), and where the existing data ends when it is reused.
    let end = if have > 0 {
        crate::clickhouse::client(&ch, Access::Write)
            .query("SELECT toUnixTimestamp64Milli(max(timestamp)) FROM ride_events")
            .fetch_one::<i64>()
            .await
            .context("find the end of the history")?
            .div_euclid(60_000)
            * 60_000
            + 60_000
    } else {
        let now = crate::time::now_millis();
        now - now % 3_600_000
    };
    let fill_started = Instant::now();
    if have < opts.rows {
        fill(&ch, sql_dir, have, opts, end).await?;
        crate::clickhouse::client(&ch, Access::Write)
            .query("OPTIMIZE TABLE city_minute_rollup FINAL")
            .execute()
            .await
            .context("optimize the rollup")?;
    }
    let fill_seconds = if have < opts.rows {
        fill_started.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let mut timings = Vec::new();
    for name in ["city-stats", "rides-per-minute", "cancellations"] {
        let named = query::find(&sql_dir.join("queries"), name)?.sql;
        let raw = std::fs::read_to_string(sql_dir.join(format!("bench/{name}-raw.sql")))
            .with_context(|| format!("missing sql/bench/{name}-raw.sql"))?;
        for (range, ms) in [
            ("1h", 3_600_000i64),
            ("24h", 86_400_000),
            ("30d", 30 * 86_400_000),
        ] {
            let params = Params::new(end - ms, end, Vec::new(), 0.3);
            let (rollup_ms, rows) = median(&ch, &named, &params, opts.runs).await?;
            let (raw_ms, raw_rows) = median(&ch, &raw, &params, opts.runs).await?;
            timings.push(QueryTiming {
                query: name.to_string(),
                range: range.to_string(),
                rollup_ms,
                raw_ms,
                speedup: raw_ms / rollup_ms.max(1e-3),
                rows,
                raw_rows,
            });
        }
    }
    Ok(QueryBenchReport {
        rows: count(&ch).await?,
        fill_seconds,
        timings,
    })
}

async fn fill(
    ch: &ClickHouseConfig,
    sql_dir: &Path,
    have: u64,
    opts: &QueryBenchOptions,
    end: EpochMillis,
) -> anyhow::Result<()> {
    let sql = std::fs::read_to_string(sql_dir.join("bench/fill_ride_events.sql"))
        .context("read fill SQL")?;
    let bar = ProgressBar::new(opts.rows);
    bar.set_style(
        ProgressStyle::with_template(
            "filling ride_events {bar:40} {pos}/{len} rows ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(have);
    let client = crate::clickhouse::client(ch, Access::Write);
    let mut first = have;
    while first < opts.rows {
        let rows = opts.chunk.min(opts.rows - first);
        client
            .query_raw(&sql)
            .param("rows", rows)
            .param("first", first)
            .param("total", opts.rows)
            .param("days", opts.days)
            .param("end", crate::time::format_clickhouse(end))
            .with_setting("max_partitions_per_insert_block", "1000")
            .execute()
            .await
            .context("fill ride_events")?;
        first += rows;
        bar.set_position(first);
    }
    bar.finish();
    Ok(())
}

async fn median(
    ch: &ClickHouseConfig,
    sql: &str,
    params: &Params,
    runs: usize,
) -> anyhow::Result<(f64, usize)> {
    let warm = query::run_sql(ch, sql, params).await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        times.push(query::run_sql(ch, sql, params).await?.elapsed_ms);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], warm.rows.len()))
}
