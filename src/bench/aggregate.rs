//! `ridectl bench aggregate`: measures the aggregation worker against the real local
//! stack, side by side in one run:
//!
//! 1. **engine** — the pure state machine alone on pre-rendered events (CPU only);
//! 2. **bounded** — `ridectl aggregate --bounded` (a child process) over N events
//!    pre-loaded into a fresh topic: events/s of wall time and per CPU-second of the
//!    worker process (user + system), and its peak RSS;
//! 3. **freshness** — the streaming worker while events with `timestamp = now` are
//!    produced at a fixed rate (50,000/min by default): p50/p99 from an event's
//!    timestamp to the durable window row reflecting it (the worker's own histogram,
//!    scraped from `/metrics`), and RSS.
//!
//! Every run uses its own topics, consumer group and ClickHouse database, dropped at
//! the end.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use rdkafka::producer::FutureProducer;
use serde::Serialize;

use super::harness::{
    bench_config, cleanup, drain_stdout, enqueue, last_json, preload, provision, sample_tree,
    spawn_ridectl, watch_tree, write_config,
};
use super::synth::{Synth, SynthConfig, SynthEvent};
use crate::aggregate::engine::{Engine, EngineConfig, Resume};
use crate::config::{Loaded, PipelineConfig};
use crate::kafka::{self, Role};
use crate::time::now_millis;

/// Options of `ridectl bench aggregate`.
#[derive(Debug, Clone, Args)]
pub struct AggregateBenchArgs {
    /// Events pre-loaded for the bounded run (and fed to the pure engine).
    #[arg(long, default_value_t = 2_000_000)]
    pub events: usize,
    /// Random seed of the synthetic events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Event rate of the freshness run, events per minute.
    #[arg(long, default_value_t = 50_000.0)]
    pub rate_per_min: f64,
    /// Duration of the freshness run in seconds (0: skip it).
    #[arg(long, default_value_t = 120)]
    pub freshness_secs: u64,
    /// Skip the bounded run from the broker.
    #[arg(long)]
    pub skip_bounded: bool,
    /// Keep the benchmark's topics and database (for inspection).
    #[arg(long)]
    pub keep: bool,
}

/// Results of the pure-engine measurement.
#[derive(Debug, Clone, Serialize)]
pub struct EngineResult {
    /// Events ingested.
    pub events: usize,
    /// CPU seconds (single thread: wall time of the ingest and trigger calls).
    pub seconds: f64,
    /// Events per second on one core.
    pub events_per_sec: f64,
}

/// Results of a worker run (a child process).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerResult {
    /// Events consumed.
    pub events: u64,
    /// Wall-clock seconds from start to exit.
    pub wall_seconds: f64,
    /// User + system CPU seconds of the worker process.
    pub cpu_seconds: f64,
    /// Events per wall-clock second.
    pub events_per_sec: f64,
    /// Events per CPU-second of the worker (the per-core figure).
    pub events_per_cpu_sec: f64,
    /// Peak resident set size, MiB.
    pub peak_rss_mib: f64,
}

/// Results of the freshness run.
#[derive(Debug, Clone, Serialize)]
pub struct FreshnessResult {
    /// Events produced.
    pub events: u64,
    /// Target rate, events per minute.
    pub rate_per_min: f64,
    /// Seconds of production.
    pub seconds: u64,
    /// Median output latency, seconds.
    pub p50_seconds: Option<f64>,
    /// 99th percentile output latency, seconds.
    pub p99_seconds: Option<f64>,
    /// Peak RSS of the worker, MiB.
    pub peak_rss_mib: f64,
    /// CPU seconds of the worker per second of wall time (share of one core).
    pub cpu_share: f64,
}

/// Results of reading the topic into the engine without outputs.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeResult {
    /// Events read and aggregated.
    pub events: u64,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
    /// CPU seconds of this process during the read (librdkafka threads included).
    pub cpu_seconds: f64,
    /// Events per wall-clock second.
    pub events_per_sec: f64,
    /// Events per CPU-second.
    pub events_per_cpu_sec: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Pure engine.
    pub engine: EngineResult,
    /// Producing the events to the local broker (events/s).
    pub produce_events_per_sec: Option<f64>,
    /// Broker → parse → engine, no outputs (one consumer thread).
    pub consume: Option<ConsumeResult>,
    /// Bounded run from the broker.
    pub bounded: Option<WorkerResult>,
    /// Freshness run.
    pub freshness: Option<FreshnessResult>,
}

fn partition_of(key: &str, partitions: i32) -> i32 {
    (twox_hash::XxHash3_64::oneshot(key.as_bytes()) % partitions as u64) as i32
}

/// Measures the pure engine on `n` events (rendered in chunks outside the timing).
pub fn bench_engine(cfg: &PipelineConfig, n: usize, seed: u64) -> EngineResult {
    let partitions = cfg.topics.ride_events.partitions.max(1);
    let start = now_millis() - 48 * 3_600_000;
    let mut synth = Synth::new(SynthConfig::new(seed, start, 50_000.0));
    let mut engine = Engine::new(EngineConfig::from_config(&cfg.aggregation));
    for p in 0..partitions {
        engine.assign(p, Resume::default(), Some(0), now_millis());
    }
    let mut offsets = vec![0i64; partitions as usize];
    let mut spent = Duration::ZERO;
    let mut done = 0;
    const CHUNK: usize = 100_000;
    while done < n {
        let chunk: Vec<(i32, SynthEvent)> = synth
            .by_ref()
            .take(CHUNK.min(n - done))
            .map(|e| (partition_of(&e.key, partitions), e))
            .collect();
        let now = now_millis();
        let t0 = Instant::now();
        for (p, e) in &chunk {
            let o = &mut offsets[*p as usize];
            engine.ingest(*p, *o, e.json.as_bytes(), now);
            *o += 1;
        }
        // One trigger per chunk: about one per second at the target rate.
        std::hint::black_box(engine.trigger(now));
        spent += t0.elapsed();
        done += chunk.len();
    }
    let seconds = spent.as_secs_f64();
    EngineResult {
        events: done,
        seconds,
        events_per_sec: done as f64 / seconds.max(1e-9),
    }
}

/// Reads the whole topic with one consumer thread into the engine (no outputs).
fn bench_consume(l: &Loaded) -> anyhow::Result<ConsumeResult> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let cfg = &l.config;
    let topic = &cfg.topics.ride_events.name;
    // End offsets decide when to stop: no end-of-partition events needed.
    let consumer: BaseConsumer = crate::aggregate::consumer_config(cfg)
        .set("group.id", format!("{}-consume", cfg.aggregation.group_id))
        .set("enable.partition.eof", "false")
        .create()?;
    let timeout = cfg.kafka.connect_timeout.get();
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions = md
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
        ends.insert(p, consumer.fetch_watermarks(topic, p, timeout)?.1);
    }
    consumer.assign(&tpl)?;
    let mut engine = Engine::new(EngineConfig::from_config(&cfg.aggregation));
    for p in 0..partitions {
        engine.assign(p, Resume::default(), Some(0), now_millis());
    }
    let cpu0 = super::cpu_time(false).as_secs_f64();
    let t0 = Instant::now();
    let (mut n, mut since_trigger) = (0u64, 0u64);
    let mut done = std::collections::HashSet::new();
    while done.len() < partitions as usize {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                let (p, o) = (m.partition(), m.offset());
                engine.ingest(p, o, m.payload().unwrap_or_default(), now_millis());
                n += 1;
                since_trigger += 1;
                if since_trigger >= 100_000 {
                    std::hint::black_box(engine.trigger(now_millis()));
                    since_trigger = 0;
                }
                if o + 1 >= ends[&p] {
                    done.insert(p);
                }
            }
            Some(Err(_)) | None => {
                if t0.elapsed() > Duration::from_secs(600) {
                    bail!("reading {topic} did not finish");
                }
                for (p, end) in &ends {
                    if *end == 0 {
                        done.insert(*p);
                    }
                }
            }
        }
    }
    std::hint::black_box(engine.trigger(now_millis()));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = super::cpu_time(false).as_secs_f64() - cpu0;
    Ok(ConsumeResult {
        events: n,
        wall_seconds: wall,
        cpu_seconds: cpu,
        events_per_sec: n as f64 / wall,
        events_per_cpu_sec: n as f64 / cpu.max(1e-9),
    })
}

async fn bench_bounded(
    l: &Loaded,
    config: &std::path::Path,
    n: usize,
) -> anyhow::Result<WorkerResult> {
    let mut child = spawn_ridectl(
        l,
        config,
        &["aggregate", "--bounded", "--format", "json"],
        None,
    )?;
    let out = drain_stdout(&mut child, config.with_file_name("bounded.out"));
    let t0 = Instant::now();
    let watched = tokio::task::spawn_blocking(move || watch_tree(child)).await??;
    let wall = t0.elapsed().as_secs_f64();
    let out = out
        .join()
        .map_err(|_| anyhow::anyhow!("reading the worker's output failed"))?
        .text;
    let summary = last_json(&out)?;
    let (cpu, rss) = (watched.cpu_seconds(), watched.peak_rss_mib);
    let events = summary["consumed"].as_u64().unwrap_or(0);
    if events != n as u64 {
        bail!("the bounded run consumed {events} events, expected {n}: {out}");
    }
    Ok(WorkerResult {
        events,
        wall_seconds: wall,
        cpu_seconds: cpu,
        events_per_sec: events as f64 / wall,
        events_per_cpu_sec: events as f64 / cpu.max(1e-9),
        peak_rss_mib: rss,
    })
}

async fn scrape(addr: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body)
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn bench_freshness(
    l: &Loaded,
    config: &std::path::Path,
    args: &AggregateBenchArgs,
) -> anyhow::Result<FreshnessResult> {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = spawn_ridectl(
        l,
        config,
        &["aggregate", "--metrics-addr", &addr, "--format", "json"],
        None,
    )?;
    let pid = child.id();
    let p: FutureProducer = kafka::client_config(&l.config.kafka, Role::Producer).create()?;
    let topic = l.config.topics.ride_events.name.clone();
    // Let the worker join the group before the clock starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = now_millis();
    let t0 = Instant::now();
    let cpu0 = sample_tree(pid).map_or(0.0, |s| s.0);
    let mut produced = 0u64;
    let synth = Synth::new(SynthConfig::new(args.seed + 1, start, args.rate_per_min));
    let mut pending = Vec::new();
    let mut rss = 0.0f64;
    let end = start + args.freshness_secs as i64 * 1000;
    for e in synth {
        if e.time >= end {
            break;
        }
        let wait = e.time - now_millis();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            rss = rss.max(sample_tree(pid).map_or(0.0, |s| s.1));
        }
        pending.push(enqueue(&p, &topic, &e));
        produced += 1;
        if pending.len() >= 1000 {
            for f in pending.drain(..) {
                f.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for f in pending {
        f.await?.map_err(|(e, _)| e)?;
    }
    // Two more triggers so the last events are reflected.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = scrape(&addr).await?;
    let (cpu1, last_rss) = sample_tree(pid).map_or((0.0, 0.0), |s| (s.0, s.1));
    rss = rss.max(last_rss);
    let wall = t0.elapsed().as_secs_f64();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    tokio::task::spawn_blocking(move || child.wait()).await??;
    Ok(FreshnessResult {
        events: produced,
        rate_per_min: args.rate_per_min,
        seconds: args.freshness_secs,
        p50_seconds: gauge(
            &text,
            "ridectl_aggregate_output_latency_quantile_seconds{quantile=\"0.5\"}",
        ),
        p99_seconds: gauge(
            &text,
            "ridectl_aggregate_output_latency_quantile_seconds{quantile=\"0.99\"}",
        ),
        peak_rss_mib: rss,
        cpu_share: (cpu1 - cpu0) / wall,
    })
}

/// Runs the benchmark.
pub async fn run(base: &Loaded, args: &AggregateBenchArgs) -> anyhow::Result<Report> {
    tracing::info!("pure engine: {} events", args.events);
    let engine = bench_engine(&base.config, args.events, args.seed);
    tracing::info!("pure engine: {:.0} events/s", engine.events_per_sec);
    let mut report = Report {
        engine,
        produce_events_per_sec: None,
        consume: None,
        bounded: None,
        freshness: None,
    };
    let dir = std::env::temp_dir().join(format!("ridectl-bench-{}", std::process::id()));
    if !args.skip_bounded {
        let l = bench_config(base, "bench-agg");
        provision(&l).await?;
        let config = write_config(&l, &dir.join("bounded"))?;
        tracing::info!(
            "pre-loading {} events into {}",
            args.events,
            l.config.topics.ride_events.name
        );
        let result = async {
            report.produce_events_per_sec = Some(preload(&l, args.events, args.seed).await?);
            tracing::info!("broker → engine, no outputs");
            let lc = l.clone();
            report.consume = Some(tokio::task::spawn_blocking(move || bench_consume(&lc)).await??);
            tracing::info!("bounded run from the broker");
            report.bounded = Some(bench_bounded(&l, &config, args.events).await?);
            anyhow::Ok(())
        }
        .await;
        if !args.keep {
            cleanup(&l).await;
        }
        result?;
    }
    if args.freshness_secs > 0 {
        let l = bench_config(base, "bench-fresh");
        provision(&l).await?;
        let config = write_config(&l, &dir.join("freshness"))?;
        tracing::info!(
            "freshness: {} events/min for {}s",
            args.rate_per_min,
            args.freshness_secs
        );
        let result = bench_freshness(&l, &config, args).await;
        if !args.keep {
            cleanup(&l).await;
        }
        report.freshness = Some(result?);
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report)
}
