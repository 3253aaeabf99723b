//! `ridectl bench spark-vs-native`: the two aggregation engines side by side in one
//! run, on the same broker and the same input (the fixed-seed synthetic events):
//!
//! 1. **bounded** — N events pre-loaded into a fresh topic, then `ridectl aggregate
//!    --bounded` and `ridectl aggregate --engine spark --bounded` over that same
//!    topic, one after the other, each into its own database and output topic:
//!    events/s of wall time, events per CPU-second of the engine's whole process
//!    tree (spark-submit's JVM, its Python driver and launcher included), peak RSS;
//! 2. **freshness** — each engine streaming while events with `timestamp = now` are
//!    produced at a fixed rate (the same seed and rate for both, each into a fresh
//!    topic): the delay from an event's timestamp to the first row on the
//!    aggregated topic that counts it, measured from outside, the same way for both
//!    engines (both produce a row to Kafka after it is durable in ClickHouse).
//!
//! How an output row "counts" an event: events are produced in event-time order,
//! so the k-th event of (city, latest window containing it) is reflected by the
//! first row of that window with `total_events >= k`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use rdkafka::producer::FutureProducer;
use serde::Serialize;

use super::harness::{
    bench_config, cleanup, drain_stdout, enqueue, last_json, percentile, preload, provision,
    sample_tree, spawn_ridectl, watch_tree, write_config,
};
use super::synth::{Synth, SynthConfig};
use crate::config::Loaded;
use crate::kafka::{self, Role};
use crate::time::{EpochMillis, now_millis, parse_iso8601};

/// Options of `ridectl bench spark-vs-native`.
#[derive(Debug, Clone, Args)]
pub struct SparkBenchArgs {
    /// Events pre-loaded for the bounded runs.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Random seed of the synthetic events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Event rate of the freshness runs, events per minute.
    #[arg(long, default_value_t = 50_000.0)]
    pub rate_per_min: f64,
    /// Measured seconds of each freshness run (0: skip them).
    #[arg(long, default_value_t = 120)]
    pub freshness_secs: u64,
    /// Seconds of each freshness run before measuring (and at least 5 s after the
    /// engine's first output row): start-up is not freshness.
    #[arg(long, default_value_t = 30)]
    pub warmup_secs: u64,
    /// Spark master of the Spark runs (default: local[*]).
    #[arg(long, value_name = "URL")]
    pub master: Option<String>,
    /// Keep the benchmark's topics and databases (for inspection).
    #[arg(long)]
    pub keep: bool,
}

/// One engine's bounded run.
#[derive(Debug, Clone, Serialize)]
pub struct BoundedResult {
    /// `native` or `spark`.
    pub engine: &'static str,
    /// Events consumed.
    pub events: u64,
    /// Wall-clock seconds from process start to exit.
    pub wall_seconds: f64,
    /// Seconds the engine reports for the work itself (without process start-up).
    pub processing_seconds: f64,
    /// CPU seconds (user + system) of the engine's process tree.
    pub cpu_seconds: f64,
    /// CPU seconds of the tree during the processing seconds (start-up excluded).
    pub processing_cpu_seconds: f64,
    /// Events per wall-clock second (start-up included).
    pub events_per_sec: f64,
    /// Events per wall-clock second of processing (start-up excluded).
    pub events_per_processing_sec: f64,
    /// Events per CPU-second: the per-core throughput (start-up included).
    pub events_per_cpu_sec: f64,
    /// Events per CPU-second of processing (start-up excluded).
    pub events_per_processing_cpu_sec: f64,
    /// Peak resident memory of the process tree, MiB.
    pub peak_rss_mib: f64,
}

/// One engine's freshness run.
#[derive(Debug, Clone, Serialize)]
pub struct FreshnessResult {
    /// `native` or `spark`.
    pub engine: &'static str,
    /// Events measured (produced after the warm-up).
    pub events: u64,
    /// Measured events no output row counted by the end of the run.
    pub missing: u64,
    /// Median delay from event timestamp to output row, seconds.
    pub p50_seconds: Option<f64>,
    /// 99th percentile of that delay, seconds.
    pub p99_seconds: Option<f64>,
    /// Largest delay, seconds.
    pub max_seconds: Option<f64>,
    /// CPU of the engine's process tree per second of the measured period (cores).
    pub cpu_share: f64,
    /// Peak resident memory of the process tree, MiB.
    pub peak_rss_mib: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// CPUs of this machine.
    pub cpus: usize,
    /// Producing the bounded runs' input to the local broker, events/s.
    pub produce_events_per_sec: f64,
    /// The native worker's bounded run.
    pub native: BoundedResult,
    /// The Spark job's bounded run.
    pub spark: BoundedResult,
    /// native events per CPU-second / Spark events per CPU-second.
    pub ratio_per_core: f64,
    /// Same, CPU of the processing only (start-up excluded).
    pub ratio_per_core_processing: f64,
    /// Same, per wall-clock second of processing.
    pub ratio_processing_wall: f64,
    /// The freshness runs (native, then Spark).
    pub freshness: Vec<FreshnessResult>,
}

/// The arguments of `ridectl aggregate` for an engine.
fn engine_args(engine: &'static str, master: &Option<String>, bounded: bool) -> Vec<String> {
    let mut a: Vec<String> = vec!["aggregate".into()];
    if engine == "spark" {
        a.extend(["--engine".into(), "spark".into()]);
        if let Some(m) = master {
            a.extend(["--master".into(), m.clone()]);
        }
    } else {
        a.extend(["--format".into(), "json".into()]);
    }
    if bounded {
        a.push("--bounded".into());
    }
    a
}

async fn bounded(
    l: &Loaded,
    config: &std::path::Path,
    engine: &'static str,
    args: &SparkBenchArgs,
) -> anyhow::Result<BoundedResult> {
    let a = engine_args(engine, &args.master, true);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut child = spawn_ridectl(l, config, &a, None)?;
    let out = drain_stdout(
        &mut child,
        config.with_file_name(format!("{engine}-bounded.log")),
    );
    let t0 = Instant::now();
    let watched = tokio::task::spawn_blocking(move || watch_tree(child)).await??;
    let wall = t0.elapsed().as_secs_f64();
    let out = out
        .join()
        .map_err(|_| anyhow::anyhow!("reading the {engine} output failed"))?;
    if !watched.status.success() {
        bail!(
            "the {engine} bounded run failed ({}): {}",
            watched.status,
            out.text
        );
    }
    let summary = last_json(&out.text)?;
    let events = summary["consumed"].as_u64().unwrap_or(0);
    if events != args.events as u64 {
        bail!(
            "the {engine} bounded run consumed {events} events, expected {}",
            args.events
        );
    }
    let processing = summary["elapsed_secs"].as_f64().unwrap_or(wall);
    let cpu = watched.cpu_seconds();
    // The work itself: the `processing` seconds before the summary was printed.
    let processing_cpu = out.summary_at.map_or(cpu, |end| {
        let start = end
            .checked_sub(Duration::from_secs_f64(processing))
            .unwrap_or(t0);
        watched.cpu_between(start, end)
    });
    Ok(BoundedResult {
        engine,
        events,
        wall_seconds: wall,
        processing_seconds: processing,
        cpu_seconds: cpu,
        processing_cpu_seconds: processing_cpu,
        events_per_sec: events as f64 / wall,
        events_per_processing_sec: events as f64 / processing.max(1e-9),
        events_per_cpu_sec: events as f64 / cpu.max(1e-9),
        events_per_processing_cpu_sec: events as f64 / processing_cpu.max(1e-9),
        peak_rss_mib: watched.peak_rss_mib,
    })
}

/// Output rows of the aggregated topic as they arrive: (city, window start) ->
/// [(arrival ms, total_events)].
type Arrivals = HashMap<(String, EpochMillis), Vec<(EpochMillis, u64)>>;

/// Highest `total_events` seen so far per (city, window start).
type Seen = Arc<Mutex<HashMap<(String, EpochMillis), u64>>>;

fn read_outputs(l: &Loaded, stop: Arc<AtomicBool>, seen: Seen) -> anyhow::Result<Arrivals> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let topic = &l.config.topics.aggregated.name;
    let c: BaseConsumer = kafka::client_config(&l.config.kafka, Role::Consumer)
        .set(
            "group.id",
            format!("{}-reader", l.config.aggregation.group_id),
        )
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let timeout = l.config.kafka.connect_timeout.get();
    let md = c.fetch_metadata(Some(topic), timeout)?;
    let n = md.topics().first().map_or(0, |t| t.partitions().len());
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..n as i32 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut out = Arrivals::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = now_millis();
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(m.payload().unwrap_or_default())
        else {
            continue;
        };
        let start = v["window"]["start"].as_str().and_then(parse_iso8601);
        if let (Some(city), Some(start), Some(total)) =
            (v["city"].as_str(), start, v["total_events"].as_u64())
        {
            let key = (city.to_string(), start);
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let max = seen.entry(key.clone()).or_default();
            *max = (*max).max(total);
            out.entry(key).or_default().push((now, total));
        }
    }
    Ok(out)
}

async fn freshness_run(
    base: &Loaded,
    dir: &std::path::Path,
    engine: &'static str,
    args: &SparkBenchArgs,
) -> anyhow::Result<FreshnessResult> {
    let l = with_project_cache(bench_config(base, &format!("bench-fresh-{engine}")));
    provision(&l).await?;
    let result = async {
        let config = write_config(&l, &dir.join(format!("fresh-{engine}")))?;
        let a = engine_args(engine, &args.master, false);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut child = spawn_ridectl(&l, &config, &a, None)?;
        let out = drain_stdout(&mut child, config.with_file_name(format!("{engine}.log")));
        let pid = child.id();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Seen::default();
        let reader = {
            let (l, stop, seen) = (l.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || read_outputs(&l, stop, seen))
        };

        // Produce `timestamp = now` events at the rate; remember, per (city, latest
        // window), the time of its k-th event.
        let p: FutureProducer = kafka::client_config(&l.config.kafka, Role::Producer).create()?;
        let topic = l.config.topics.ride_events.name.clone();
        let slide = l.config.aggregation.slide.as_millis_i64();
        let start = now_millis();
        let measure_from = start + args.warmup_secs as i64 * 1000;
        let end = measure_from + args.freshness_secs as i64 * 1000;
        let mut counts: HashMap<(String, EpochMillis), u64> = HashMap::new();
        let mut produced: Vec<((String, EpochMillis), u64, EpochMillis)> = Vec::new();
        let mut pending = Vec::new();
        let (mut cpu0, mut rss) = (None, 0.0f64);
        for e in Synth::new(SynthConfig::new(args.seed + 1, start, args.rate_per_min)) {
            if e.time >= end {
                break;
            }
            let wait = e.time - now_millis();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                if let Some((c, r, _)) = sample_tree(pid) {
                    rss = rss.max(r);
                    if cpu0.is_none() && e.time >= measure_from {
                        cpu0 = Some((c, Instant::now()));
                    }
                }
            }
            let v: serde_json::Value = serde_json::from_str(&e.json)?;
            let city = v["city"].as_str().unwrap_or_default().to_string();
            let key = (city, e.time - e.time.rem_euclid(slide));
            let k = counts.entry(key.clone()).or_default();
            *k += 1;
            produced.push((key, *k, e.time));
            pending.push(enqueue(&p, &topic, &e));
            if pending.len() >= 1000 {
                for f in pending.drain(..) {
                    f.await?.map_err(|(e, _)| e)?;
                }
            }
        }
        for f in pending {
            f.await?.map_err(|(e, _)| e)?;
        }
        let cpu = match (cpu0, sample_tree(pid)) {
            (Some((c0, t0)), Some((c1, _, _))) => (c1 - c0) / t0.elapsed().as_secs_f64(),
            _ => 0.0,
        };
        // Until every event produced is counted by a row (60 s at most; the rest
        // are reported missing).
        let drain = Instant::now();
        while drain.elapsed() < Duration::from_secs(60) {
            let all = {
                let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                counts
                    .iter()
                    .all(|(k, n)| seen.get(k).is_some_and(|m| m >= n))
            };
            if all {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let arrivals = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))??;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let last_rss = tokio::task::spawn_blocking(move || watch_tree(child))
            .await??
            .peak_rss_mib;
        let _ = out.join();

        // Start-up is not freshness: measure from the warm-up's end, and from 5 s
        // after the first output row at the earliest.
        let first_row = arrivals
            .values()
            .flat_map(|v| v.iter().map(|x| x.0))
            .min()
            .unwrap_or(i64::MAX);
        let from = measure_from.max(first_row.saturating_add(5000));
        let mut running: HashMap<&(String, EpochMillis), Vec<(EpochMillis, u64)>> = HashMap::new();
        for (k, v) in &arrivals {
            let mut max = 0;
            let mut acc = Vec::with_capacity(v.len());
            for (t, total) in v {
                max = max.max(*total);
                acc.push((*t, max));
            }
            running.insert(k, acc);
        }
        let (mut delays, mut missing) = (Vec::new(), 0u64);
        for (key, k, t) in produced.iter().filter(|x| x.2 >= from) {
            let seen = running.get(key).and_then(|v| {
                let i = v.partition_point(|x| x.1 < *k);
                v.get(i).map(|x| x.0)
            });
            match seen {
                Some(at) => delays.push((at - t) as f64 / 1000.0),
                None => missing += 1,
            }
        }
        delays.sort_by(f64::total_cmp);
        anyhow::Ok(FreshnessResult {
            engine,
            events: delays.len() as u64 + missing,
            missing,
            p50_seconds: percentile(&delays, 0.5),
            p99_seconds: percentile(&delays, 0.99),
            max_seconds: delays.last().copied(),
            cpu_share: cpu,
            peak_rss_mib: rss.max(last_rss),
        })
    }
    .await;
    if !args.keep {
        cleanup(&l).await;
    }
    result
}

/// `l` with the cache directory (pyspark, the connector jars) made absolute: the
/// engines read configurations written to a temporary directory.
fn with_project_cache(mut l: Loaded) -> Loaded {
    let cache = l.cache_dir();
    l.config.local.cache_dir = std::path::absolute(&cache).unwrap_or(cache);
    l
}

/// The Spark side of a bench configuration: same input topic, its own database
/// and aggregated topic.
fn spark_side(l: &Loaded) -> Loaded {
    let mut s = with_project_cache(l.clone());
    s.config.clickhouse.database = format!("{}_spark", l.config.clickhouse.database);
    s.config.topics.aggregated.name = format!("{}-spark", l.config.topics.aggregated.name);
    s
}

/// Runs the benchmark.
pub async fn run(base: &Loaded, args: &SparkBenchArgs) -> anyhow::Result<Report> {
    // Fail before pre-loading anything when Spark is not installed.
    crate::spark::SparkInstall::locate(base)?;
    let dir = std::env::temp_dir().join(format!("ridectl-bench-spark-{}", std::process::id()));
    let l = bench_config(base, "bench-svn");
    let s = spark_side(&l);
    provision(&l).await?;
    provision(&s).await?;
    let bounded_runs = async {
        tracing::info!(
            "pre-loading {} events into {}",
            args.events,
            l.config.topics.ride_events.name
        );
        let produce = preload(&l, args.events, args.seed).await?;
        tracing::info!("native bounded run");
        let native = bounded(&l, &write_config(&l, &dir.join("native"))?, "native", args).await?;
        tracing::info!("spark bounded run");
        let spark = bounded(&s, &write_config(&s, &dir.join("spark"))?, "spark", args).await?;
        anyhow::Ok((produce, native, spark))
    }
    .await;
    if !args.keep {
        cleanup(&l).await;
        cleanup(&s).await;
    }
    let (produce, native, spark) = bounded_runs?;
    let mut freshness = Vec::new();
    if args.freshness_secs > 0 {
        for engine in ["native", "spark"] {
            tracing::info!(
                "{engine} freshness: {}/min for {} s after {} s",
                args.rate_per_min,
                args.freshness_secs,
                args.warmup_secs
            );
            freshness.push(freshness_run(base, &dir, engine, args).await?);
        }
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(Report {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        produce_events_per_sec: produce,
        ratio_per_core: native.events_per_cpu_sec / spark.events_per_cpu_sec.max(1e-9),
        ratio_per_core_processing: native.events_per_processing_cpu_sec
            / spark.events_per_processing_cpu_sec.max(1e-9),
        ratio_processing_wall: native.events_per_processing_sec
            / spark.events_per_processing_sec.max(1e-9),
        native,
        spark,
        freshness,
    })
}
