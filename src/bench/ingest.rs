//! `ridectl bench ingest`: `ridectl ingest --bounded` (a child process) over N
//! synthetic ride events pre-loaded into a fresh topic, into the local ClickHouse
//! endpoint: events/s of wall time, events per CPU-second of the ingest process
//! (the per-core figure) and of ingest and endpoint together, peak RSS, and a check
//! that ClickHouse holds exactly N distinct events afterwards.
//!
//! Freshness (event timestamp to queryable) is measured by `ridectl bench e2e`.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use super::harness::{
    bench_config, cleanup, drain_stdout, last_json, preload, proc_cpu, provision, spawn_ridectl,
    watch_tree, write_config,
};
use crate::clickhouse::Access;
use crate::config::Loaded;
use crate::local::{Paths, process};

/// Options of `ridectl bench ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestBenchArgs {
    /// Ride events pre-loaded and ingested.
    #[arg(long, default_value_t = 2_000_000)]
    pub events: usize,
    /// Random seed of the synthetic events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep the benchmark's topics and database (for inspection).
    #[arg(long)]
    pub keep: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct IngestBenchReport {
    /// Events pre-loaded.
    pub events: u64,
    /// Pre-loading producer, events/s.
    pub produce_events_per_sec: f64,
    /// Rows the ingest reported writing.
    pub ride_rows: u64,
    /// `count()` of `ride_events` afterwards.
    pub rows_in_clickhouse: u64,
    /// `uniqExact(event_id)` of `ride_events` afterwards.
    pub distinct_event_ids: u64,
    /// Batches written.
    pub batches: u64,
    /// Wall-clock seconds of the ingest process, start-up included.
    pub wall_seconds: f64,
    /// CPU seconds of the ingest process.
    pub cpu_seconds: f64,
    /// CPU seconds of the ClickHouse endpoint during the run (None when it is not
    /// the local stack's).
    pub endpoint_cpu_seconds: Option<f64>,
    /// Events per wall-clock second.
    pub events_per_sec: f64,
    /// Events per CPU-second of the ingest process: the per-core figure.
    pub events_per_cpu_sec: f64,
    /// Events per CPU-second of ingest and endpoint together.
    pub events_per_total_cpu_sec: Option<f64>,
    /// Peak RSS of the ingest process, MiB.
    pub peak_rss_mib: f64,
}

impl IngestBenchReport {
    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut t = crate::output::table(&["measurement", "value"], &[1]);
        let opt = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.0}{unit}"));
        for (k, v) in [
            ("events pre-loaded", self.events.to_string()),
            (
                "pre-load producer, events/s",
                format!("{:.0}", self.produce_events_per_sec),
            ),
            (
                "rows in ride_events (distinct event_id)",
                format!("{} ({})", self.rows_in_clickhouse, self.distinct_event_ids),
            ),
            ("batches", self.batches.to_string()),
            ("wall seconds", format!("{:.1}", self.wall_seconds)),
            ("events/s (wall)", format!("{:.0}", self.events_per_sec)),
            ("ingest CPU seconds", format!("{:.1}", self.cpu_seconds)),
            (
                "events per CPU-second of ingest (per core)",
                format!("{:.0}", self.events_per_cpu_sec),
            ),
            (
                "endpoint CPU seconds",
                self.endpoint_cpu_seconds
                    .map_or("-".into(), |c| format!("{c:.1}")),
            ),
            (
                "events per CPU-second, ingest + endpoint",
                opt(self.events_per_total_cpu_sec, ""),
            ),
            ("ingest peak RSS", format!("{:.0} MiB", self.peak_rss_mib)),
        ] {
            t.add_row(vec![k.to_string(), v]);
        }
        format!("{t}\n")
    }
}

/// CPU seconds of the local ClickHouse endpoint so far, when it runs here.
fn endpoint_cpu(l: &Loaded) -> Option<f64> {
    let pid = process::running(&Paths::from_config(l).pid("clickhouse"))?;
    proc_cpu(pid).map(|c| c.0)
}

/// Runs the benchmark.
pub async fn run(base: &Loaded, args: &IngestBenchArgs) -> anyhow::Result<IngestBenchReport> {
    let l = bench_config(base, "bench-ingest");
    provision(&l).await?;
    let dir = std::env::temp_dir().join(format!("ridectl-bench-ingest-{}", std::process::id()));
    let result = measure(base, &l, &dir, args).await;
    if !args.keep {
        cleanup(&l).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn measure(
    base: &Loaded,
    l: &Loaded,
    dir: &Path,
    args: &IngestBenchArgs,
) -> anyhow::Result<IngestBenchReport> {
    let config = write_config(l, dir)?;
    tracing::info!(
        "pre-loading {} events into {}",
        args.events,
        l.config.topics.ride_events.name
    );
    let produce_events_per_sec = preload(l, args.events, args.seed).await?;
    tracing::info!("ingest --bounded");
    let endpoint0 = endpoint_cpu(base);
    let mut child = spawn_ridectl(
        l,
        &config,
        &[
            "ingest",
            "--bounded",
            "--from-beginning",
            "--format",
            "json",
        ],
        None,
    )?;
    let out = drain_stdout(&mut child, dir.join("ingest.out"));
    let t0 = Instant::now();
    let watched = tokio::task::spawn_blocking(move || watch_tree(child)).await??;
    let wall = t0.elapsed().as_secs_f64();
    let endpoint = endpoint0.zip(endpoint_cpu(base)).map(|(a, b)| b - a);
    let out = out
        .join()
        .map_err(|_| anyhow::anyhow!("reading the ingest output failed"))?
        .text;
    if !watched.status.success() {
        bail!("ridectl ingest failed ({}): {out}", watched.status);
    }
    let summary = last_json(&out)?;
    let ch = crate::clickhouse::client(&l.config.clickhouse, Access::Write);
    let (rows, distinct) = ch
        .query("SELECT count(), uniqExact(event_id) FROM ride_events")
        .fetch_one::<(u64, u64)>()
        .await
        .context("count ride_events")?;
    let n = args.events as u64;
    if rows != n || distinct != n {
        bail!("ride_events holds {rows} rows ({distinct} distinct), expected {n}");
    }
    let cpu = watched.cpu_seconds();
    Ok(IngestBenchReport {
        events: n,
        produce_events_per_sec,
        ride_rows: summary["ride_rows"].as_u64().unwrap_or(0),
        rows_in_clickhouse: rows,
        distinct_event_ids: distinct,
        batches: summary["batches"].as_u64().unwrap_or(0),
        wall_seconds: wall,
        cpu_seconds: cpu,
        endpoint_cpu_seconds: endpoint,
        events_per_sec: n as f64 / wall,
        events_per_cpu_sec: n as f64 / cpu.max(1e-9),
        events_per_total_cpu_sec: endpoint.map(|e| n as f64 / (cpu + e).max(1e-9)),
        peak_rss_mib: watched.peak_rss_mib,
    })
}
