//! `ridectl bench e2e`: the whole pipeline as deployed — `ridectl generate`,
//! `ridectl aggregate` and `ridectl ingest` as separate processes on the local
//! stack, each on its own topics and database — and freshness measured from
//! outside, the way a dashboard sees it: for sampled events, the wall-clock time
//! from the event's timestamp to the first ClickHouse query that sees it
//!
//! - in `ride_events` (raw): the event's `event_id` is returned by a poll;
//! - in `city_window_metrics` (aggregates): the window of its city that starts in
//!   its minute counts at least its rank `k` (the k-th event of that city and
//!   minute by timestamp). The worker counts in Kafka order, which follows event
//!   time within a partition; across partitions the rank is exact up to the events
//!   of one fetch, milliseconds at these rates.
//!
//! ClickHouse is polled every `--poll` (200 ms by default; the figures are upper
//! bounds: the poll's answer time). Consumer lag of both workers is sampled every
//! two seconds. Events of the first `--warmup` (start-up, group joins) are not
//! measured.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use super::harness::{
    bench_config, cleanup, drain_stdout, last_json, percentile, provision, sample_tree,
    spawn_ridectl, write_config,
};
use crate::clickhouse::Access;
use crate::config::Loaded;
use crate::time::{EpochMillis, now_millis};
use crate::units::{HumanDuration, Rate};

/// Options of `ridectl bench e2e`.
#[derive(Debug, Clone, Args)]
pub struct E2eBenchArgs {
    /// Ride events per unit of time (N/s, N/min, N/h).
    #[arg(long, default_value = "50000/min")]
    pub rate: Rate,
    /// How long the generator runs.
    #[arg(long, default_value = "2m")]
    pub duration: HumanDuration,
    /// Events of this first stretch are not measured (start-up, group joins).
    #[arg(long, default_value = "15s")]
    pub warmup: HumanDuration,
    /// How often ClickHouse is polled.
    #[arg(long, default_value = "200ms")]
    pub poll: HumanDuration,
    /// About this many events are sampled (1 in K by a hash of event_id).
    #[arg(long, default_value_t = 4000)]
    pub samples: u64,
    /// Longest wait, after the generator stops, for every sampled event to show.
    #[arg(long, default_value = "120s")]
    pub drain_timeout: HumanDuration,
    /// Keep the benchmark's topics and database (for inspection).
    #[arg(long)]
    pub keep: bool,
    /// Also measure event timestamp → visible on the page: `ridectl dashboard` in
    /// headless Chromium (Debian `chromium`) beside the pipeline.
    #[arg(long)]
    pub browser: bool,
}

/// Percentiles of a freshness distribution, seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    /// Sampled events measured.
    pub events: u64,
    /// Sampled events never seen before the drain timeout.
    pub missing: u64,
    /// Median, seconds.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
    /// 99th percentile over the first half of the measured events.
    pub p99_first_half: Option<f64>,
    /// 99th percentile over the second half (higher than the first: lag grows).
    pub p99_second_half: Option<f64>,
}

/// Consumer lag of one worker's group, messages.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    /// Consumer group.
    pub group: String,
    /// Median of the samples taken while the generator ran.
    pub p50: i64,
    /// Largest sample while the generator ran.
    pub max: i64,
    /// Last sample before the generator stopped.
    pub at_end: i64,
}

/// CPU used by each process of the pipeline while the generator ran, in cores.
#[derive(Debug, Clone, Serialize)]
pub struct CpuShare {
    /// `ridectl generate`.
    pub generate: f64,
    /// `ridectl aggregate`.
    pub aggregate: f64,
    /// `ridectl ingest`.
    pub ingest: f64,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    /// Asked rate.
    pub rate: String,
    /// Generator run, seconds.
    pub duration_seconds: f64,
    /// Valid ride events delivered by the generator.
    pub delivered: u64,
    /// Driver location updates delivered.
    pub driver_locations: u64,
    /// Delivered ride events per second of the generator's run.
    pub ride_events_per_sec: f64,
    /// Messages of every kind per second.
    pub messages_per_sec: f64,
    /// `count()` of `ride_events` at the end.
    pub rows_in_ride_events: u64,
    /// `uniqExact(event_id)` of `ride_events` at the end.
    pub distinct_in_ride_events: u64,
    /// 1 in K events sampled.
    pub sample_one_in: u64,
    /// Raw events: timestamp to visible in `ride_events`.
    pub raw: Freshness,
    /// Aggregates: timestamp to counted in `city_window_metrics`.
    pub aggregates: Freshness,
    /// With `--browser`: timestamp to visible on the dashboard page in Chromium.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<Freshness>,
    /// Seconds after the generator stopped until every sampled event showed in both.
    pub drain_seconds: f64,
    /// Lag of the ingest group.
    pub ingest_lag: Lag,
    /// Lag of the aggregate group.
    pub aggregate_lag: Lag,
    /// CPU per process, cores.
    pub cpu: CpuShare,
}

impl E2eReport {
    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut t =
            crate::output::table(&["measurement", "raw (ride_events)", "aggregates"], &[1, 2]);
        let s = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} s"));
        let (r, a) = (&self.raw, &self.aggregates);
        for (k, x, y) in [
            (
                "sampled events (missing)",
                format!("{} ({})", r.events, r.missing),
                format!("{} ({})", a.events, a.missing),
            ),
            ("freshness p50", s(r.p50), s(a.p50)),
            ("freshness p95", s(r.p95), s(a.p95)),
            ("freshness p99", s(r.p99), s(a.p99)),
            ("freshness max", s(r.max), s(a.max)),
            (
                "p99 first half / second half",
                format!("{} / {}", s(r.p99_first_half), s(r.p99_second_half)),
                format!("{} / {}", s(a.p99_first_half), s(a.p99_second_half)),
            ),
            (
                "on the dashboard page (--browser)",
                self.browser.as_ref().map_or("-".into(), |b| {
                    format!("p50 {} · p95 {} · p99 {}", s(b.p50), s(b.p95), s(b.p99))
                }),
                self.browser.as_ref().map_or("-".into(), |b| {
                    format!(
                        "max {} · {} events ({} missing)",
                        s(b.max),
                        b.events,
                        b.missing
                    )
                }),
            ),
            (
                "consumer lag p50 / max / at end",
                format!(
                    "{} / {} / {}",
                    self.ingest_lag.p50, self.ingest_lag.max, self.ingest_lag.at_end
                ),
                format!(
                    "{} / {} / {}",
                    self.aggregate_lag.p50, self.aggregate_lag.max, self.aggregate_lag.at_end
                ),
            ),
            (
                "CPU (cores): ingest / aggregate",
                format!("{:.3}", self.cpu.ingest),
                format!("{:.3}", self.cpu.aggregate),
            ),
        ] {
            t.add_row(vec![k.to_string(), x, y]);
        }
        format!(
            "{t}\nrate {}: {} ride events + {} driver locations in {:.1} s ({:.0} ride events/s, \
             {:.0} messages/s); generator CPU {:.3} cores\n\
             ride_events: {} rows, {} distinct; sampled 1 in {}; caught up {:.1} s after the \
             generator stopped\n",
            self.rate,
            self.delivered,
            self.driver_locations,
            self.duration_seconds,
            self.ride_events_per_sec,
            self.messages_per_sec,
            self.cpu.generate,
            self.rows_in_ride_events,
            self.distinct_in_ride_events,
            self.sample_one_in,
            self.drain_seconds,
        )
    }
}

/// Runs the benchmark.
pub async fn run(base: &Loaded, args: &E2eBenchArgs) -> anyhow::Result<E2eReport> {
    let Some(per_sec) = args.rate.per_second() else {
        bail!("--rate max is not a freshness measurement: give a rate such as 500000/min");
    };
    let l = bench_config(base, "bench-e2e");
    provision(&l).await?;
    let dir = std::env::temp_dir().join(format!("ridectl-bench-e2e-{}", std::process::id()));
    let result = measure(&l, &dir, args, per_sec).await;
    if !args.keep {
        cleanup(&l).await;
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!(
            "kept: {} and database {}",
            dir.display(),
            l.config.clickhouse.database
        );
    }
    result
}

/// A running worker that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Worker(Child);

impl Worker {
    fn cpu(&self) -> f64 {
        sample_tree(self.0.id()).map_or(0.0, |s| s.0)
    }

    fn stop(&mut self, timeout: Duration) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop(Duration::from_secs(10));
        }
    }
}

/// Polls: when each sampled event first showed in `ride_events`, and the history
/// of `total_events` per (city, window start) of `city_window_metrics`.
#[derive(Default)]
struct Observations {
    raw_seen: HashMap<String, EpochMillis>,
    windows: HashMap<(String, EpochMillis), Vec<(EpochMillis, u64)>>,
}

impl Observations {
    async fn poll(
        &mut self,
        ch: &clickhouse::Client,
        since: EpochMillis,
        k: u64,
    ) -> anyhow::Result<()> {
        let raw = ch
            .query(
                "SELECT event_id FROM ride_events \
                 WHERE timestamp >= fromUnixTimestamp64Milli(?) AND cityHash64(event_id) % ? = 0",
            )
            .bind(since)
            .bind(k)
            .fetch_all::<String>()
            .await
            .context("poll ride_events")?;
        let at = now_millis();
        for id in raw {
            self.raw_seen.entry(id).or_insert(at);
        }
        let windows = ch
            .query(
                "SELECT toString(city), toUnixTimestamp64Milli(window_start), total_events \
                 FROM city_window_metrics FINAL \
                 WHERE window_start >= fromUnixTimestamp64Milli(?)",
            )
            .bind(since - 10 * 60_000)
            .fetch_all::<(String, i64, u64)>()
            .await
            .context("poll city_window_metrics")?;
        let at = now_millis();
        for (city, start, total) in windows {
            let h = self.windows.entry((city, start)).or_default();
            if h.last().is_none_or(|x| x.1 < total) {
                h.push((at, total));
            }
        }
        Ok(())
    }

    /// When (city, window start) first counted `k` events.
    fn counted(&self, key: &(String, EpochMillis), k: u64) -> Option<EpochMillis> {
        let h = self.windows.get(key)?;
        let i = h.partition_point(|x| x.1 < k);
        h.get(i).map(|x| x.0)
    }
}

/// A sampled event: id, timestamp, its (city, minute) and rank there.
#[derive(clickhouse::Row, serde::Deserialize)]
struct Sampled {
    event_id: String,
    ts: i64,
    city: String,
    ws: i64,
    k: u64,
}

fn freshness(mut delays: Vec<(EpochMillis, f64)>, missing: u64) -> Freshness {
    delays.sort_by_key(|d| d.0);
    let half = delays.len() / 2;
    let sorted = |v: &[(EpochMillis, f64)]| {
        let mut x: Vec<f64> = v.iter().map(|d| d.1).collect();
        x.sort_by(f64::total_cmp);
        x
    };
    let all = sorted(&delays);
    let (first, second) = (sorted(&delays[..half]), sorted(&delays[half..]));
    Freshness {
        events: delays.len() as u64 + missing,
        missing,
        p50: percentile(&all, 0.5),
        p95: percentile(&all, 0.95),
        p99: percentile(&all, 0.99),
        max: all.last().copied(),
        p99_first_half: percentile(&first, 0.99),
        p99_second_half: percentile(&second, 0.99),
    }
}

fn lag_summary(group: &str, samples: &[i64]) -> Lag {
    let mut s = samples.to_vec();
    let at_end = s.last().copied().unwrap_or(0);
    s.sort_unstable();
    Lag {
        group: group.to_string(),
        p50: s.get(s.len() / 2).copied().unwrap_or(0),
        max: s.last().copied().unwrap_or(0),
        at_end,
    }
}

async fn measure(
    l: &Loaded,
    dir: &Path,
    args: &E2eBenchArgs,
    per_sec: f64,
) -> anyhow::Result<E2eReport> {
    let config = write_config(l, dir)?;
    let log = |name: &str| dir.join(format!("{name}.log"));
    let mut aggregate = Worker(spawn_ridectl(
        l,
        &config,
        &["aggregate"],
        Some(&log("aggregate")),
    )?);
    let mut ingest = Worker(spawn_ridectl(
        l,
        &config,
        &["ingest", "--from-beginning"],
        Some(&log("ingest")),
    )?);
    // Let both join their groups before the first event.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let secs = args.duration.get().as_secs_f64();
    let expected = (per_sec * secs).max(1.0) as u64;
    let k = (expected / args.samples.max(1)).max(1);
    let page = if args.browser {
        Some(super::e2e_browser::start(l).await?)
    } else {
        None
    };
    let run_start = now_millis();
    let measure_from = run_start + args.warmup.as_millis_i64();
    let duration = args.duration.to_string();
    let rate = args.rate.to_string();
    let mut generate = spawn_ridectl(
        l,
        &config,
        &[
            "generate",
            "--rate",
            &rate,
            "--duration",
            &duration,
            "--format",
            "json",
        ],
        Some(&log("generate")),
    )?;
    let gen_pid = generate.id();
    let gen_out = drain_stdout(&mut generate, dir.join("generate.out"));
    tracing::info!("generating at {rate} for {duration}; sampling 1 in {k}");

    let ch = crate::clickhouse::client(&l.config.clickhouse, Access::Write);
    let mut obs = Observations::default();
    let (mut ingest_lag, mut agg_lag) = (Vec::new(), Vec::new());
    let groups = (
        l.config.ingest.group_id.clone(),
        l.config.aggregation.group_id.clone(),
    );
    let mut next_lag = Instant::now();
    let cpu0 = (
        sample_tree(gen_pid).map_or(0.0, |s| s.0),
        aggregate.cpu(),
        ingest.cpu(),
    );
    let t0 = Instant::now();
    let mut gen_cpu = 0.0;
    // While the generator runs.
    let gen_status = loop {
        if let Some(status) = generate.try_wait()? {
            break status;
        }
        gen_cpu = sample_tree(gen_pid).map_or(gen_cpu, |s| s.0);
        if let Err(e) = obs.poll(&ch, run_start, k).await {
            tracing::warn!("{e:#}");
        }
        if Instant::now() >= next_lag {
            next_lag = Instant::now() + Duration::from_secs(2);
            match crate::query::pipeline_lag(&l.config).await {
                Ok(lags) => {
                    let sum = |g: &str| {
                        lags.iter()
                            .filter(|x| x.consumer_group == g)
                            .map(|x| x.lag)
                            .sum::<i64>()
                    };
                    ingest_lag.push(sum(&groups.0));
                    agg_lag.push(sum(&groups.1));
                }
                Err(e) => tracing::warn!("lag: {e:#}"),
            }
        }
        tokio::time::sleep(args.poll.get()).await;
    };
    let gen_wall = t0.elapsed().as_secs_f64();
    let cpu = CpuShare {
        generate: (gen_cpu - cpu0.0) / gen_wall,
        aggregate: (aggregate.cpu() - cpu0.1) / gen_wall,
        ingest: (ingest.cpu() - cpu0.2) / gen_wall,
    };
    let gen_out = gen_out
        .join()
        .map_err(|_| anyhow::anyhow!("reading the generator's output failed"))?
        .text;
    if !gen_status.success() {
        bail!(
            "the generator failed ({gen_status}); see {}",
            log("generate").display()
        );
    }
    let summary = last_json(&gen_out)?;
    let delivered = summary["ride_events"]["delivered"].as_u64().unwrap_or(0);
    let locations = summary["driver_locations"]["delivered"]
        .as_u64()
        .unwrap_or(0);
    let elapsed = summary["elapsed_secs"].as_f64().unwrap_or(gen_wall);

    // The sampled events and their ranks, once ride_events holds them all.
    let stopped = Instant::now();
    let slide = l.config.aggregation.slide.as_millis_i64();
    let sampled_sql = "\
        SELECT event_id, ts, city, ws, k FROM ( \
            SELECT event_id, toUnixTimestamp64Milli(timestamp) AS ts, toString(city) AS city, \
                   intDiv(ts, ?) * ? AS ws, \
                   row_number() OVER (PARTITION BY city, ws ORDER BY timestamp, event_id) AS k \
            FROM ride_events WHERE timestamp >= fromUnixTimestamp64Milli(?)) \
        WHERE cityHash64(event_id) % ? = 0";
    let sampled = loop {
        obs.poll(&ch, run_start, k).await?;
        let (rows, _) = count(&ch).await?;
        let caught_up = rows >= delivered;
        if caught_up || stopped.elapsed() >= args.drain_timeout.get() {
            let s: Vec<Sampled> = ch
                .query(sampled_sql)
                .bind(slide)
                .bind(slide)
                .bind(run_start)
                .bind(k)
                .fetch_all()
                .await
                .context("rank the sampled events")?;
            let all_counted = s.iter().all(|e| {
                obs.raw_seen.contains_key(&e.event_id)
                    && obs.counted(&(e.city.clone(), e.ws), e.k).is_some()
            });
            if all_counted || stopped.elapsed() >= args.drain_timeout.get() {
                break s;
            }
        }
        tokio::time::sleep(args.poll.get()).await;
    };
    let drain_seconds = stopped.elapsed().as_secs_f64();
    let page = match page {
        // One more refresh of the page after the last event.
        Some(p) => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Some(p.finish().await?)
        }
        None => None,
    };
    aggregate.stop(Duration::from_secs(30));
    ingest.stop(Duration::from_secs(30));
    let (rows, distinct) = count(&ch).await?;

    let mut seen_ids = HashSet::new();
    let (mut raw, mut agg) = (Vec::new(), Vec::new());
    let (mut raw_missing, mut agg_missing) = (0, 0);
    let (mut on_page, mut page_missing) = (Vec::new(), 0);
    for e in sampled.iter().filter(|e| e.ts >= measure_from) {
        seen_ids.insert(e.event_id.as_str());
        match obs.raw_seen.get(&e.event_id) {
            Some(at) => raw.push((e.ts, (at - e.ts) as f64 / 1000.0)),
            None => raw_missing += 1,
        }
        match obs.counted(&(e.city.clone(), e.ws), e.k) {
            Some(at) => agg.push((e.ts, (at - e.ts).max(0) as f64 / 1000.0)),
            None => agg_missing += 1,
        }
        if let Some(p) = &page {
            match p.visible_at(e.ts) {
                Some(at) => on_page.push((e.ts, (at - e.ts).max(0) as f64 / 1000.0)),
                None => page_missing += 1,
            }
        }
    }
    if let Some(p) = &page
        && !p.console_errors.is_empty()
    {
        tracing::warn!("the dashboard page logged errors: {:?}", p.console_errors);
    }
    Ok(E2eReport {
        rate,
        duration_seconds: elapsed,
        delivered,
        driver_locations: locations,
        ride_events_per_sec: delivered as f64 / elapsed.max(1e-9),
        messages_per_sec: (delivered + locations) as f64 / elapsed.max(1e-9),
        rows_in_ride_events: rows,
        distinct_in_ride_events: distinct,
        sample_one_in: k,
        raw: freshness(raw, raw_missing),
        aggregates: freshness(agg, agg_missing),
        browser: page.map(|_| freshness(on_page, page_missing)),
        drain_seconds,
        ingest_lag: lag_summary(&groups.0, &ingest_lag),
        aggregate_lag: lag_summary(&groups.1, &agg_lag),
        cpu,
    })
}

async fn count(ch: &clickhouse::Client) -> anyhow::Result<(u64, u64)> {
    ch.query("SELECT count(), uniqExact(event_id) FROM ride_events")
        .fetch_one::<(u64, u64)>()
        .await
        .context("count ride_events")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_split_by_event_time() {
        // Late events are slow: the second half's p99 shows it.
        let d: Vec<(EpochMillis, f64)> = (0..100)
            .map(|i| (i, if i >= 50 { 5.0 } else { 1.0 }))
            .collect();
        let f = freshness(d, 3);
        assert_eq!(f.events, 103);
        assert_eq!(f.missing, 3);
        assert_eq!(f.p99_first_half, Some(1.0));
        assert_eq!(f.p99_second_half, Some(5.0));
        assert_eq!(f.max, Some(5.0));
    }

    #[test]
    fn a_window_counts_an_event_once_its_rank_is_reached() {
        let mut o = Observations::default();
        let key = ("berlin".to_string(), 60_000);
        o.windows
            .insert(key.clone(), vec![(1_000, 3), (2_000, 7), (3_000, 9)]);
        assert_eq!(o.counted(&key, 1), Some(1_000));
        assert_eq!(o.counted(&key, 4), Some(2_000));
        assert_eq!(o.counted(&key, 9), Some(3_000));
        assert_eq!(o.counted(&key, 10), None);
        assert_eq!(o.counted(&("x".into(), 0), 1), None);
    }
}
