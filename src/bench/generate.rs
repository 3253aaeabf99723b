//! `ridectl bench generate`: the generator's sustained maximum rate to the broker,
//! side by side, in the same run, with Kafka's own producer benchmark
//! (`org.apache.kafka.tools.ProducerPerformance`) at the same record size, acks,
//! compression, linger and batch size.
//!
//! Kafka's tool runs twice: with `--payload-file` holding a sample of the
//! generator's own ride events (same sizes, same compressibility: the fair
//! comparison, and the ratio reported) and with random payloads of the generator's
//! mean event size (`--record-size`, the tool's usual mode; random letters compress
//! far worse than JSON). Each side writes to a fresh topic shaped like
//! `topics.ride_events`; the topics are deleted afterwards.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;

use super::cpu_time;
use crate::config::{Loaded, PipelineConfig, ResolvedTopic};
use crate::generate::source::{Kind, Source};
use crate::generate::{self, GenerateOptions, Progress, Shutdown};
use crate::kafka::{self, topics};
use crate::units::Rate;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Records per run (each side sends this many).
    pub count: u64,
    /// Runs per side; the best of each is reported.
    pub rounds: u32,
    /// Directory of the Kafka jars (`.ridectl/cache/kafka-libs`).
    pub kafka_libs: PathBuf,
    /// The `java` executable.
    pub java: PathBuf,
    /// Skip Kafka's benchmark (measure the generator only).
    pub skip_kafka: bool,
    /// Keep the benchmark topics.
    pub keep_topics: bool,
    /// Java `batch.size` in bytes; `None`: as many records per batch as
    /// librdkafka's `batch.num.messages` (see the module documentation).
    pub batch_size: Option<u64>,
    /// Show the generator's progress bar.
    pub progress: bool,
}

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// `ridectl generate`, `ProducerPerformance (ridectl payloads)`, ...
    pub tool: String,
    /// Records acknowledged.
    pub records: u64,
    /// Records that failed.
    pub failed: u64,
    /// Mean record size, bytes.
    pub record_bytes: f64,
    /// Records per second, first send to last acknowledgement.
    pub records_per_sec: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_sec: f64,
    /// Median delivery latency, ms.
    pub p50_ms: f64,
    /// 99th percentile delivery latency, ms.
    pub p99_ms: f64,
    /// CPU seconds used by the producing process.
    pub cpu_secs: f64,
    /// Wall seconds.
    pub wall_secs: f64,
}

/// The benchmark's result.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Broker bootstrap servers.
    pub bootstrap_servers: String,
    /// Partitions of each benchmark topic.
    pub partitions: i32,
    /// Producer settings both sides used.
    pub producer: Vec<(String, String)>,
    /// Java `batch.size` of the runs with the generator's payloads and with
    /// random payloads (the same records per batch as librdkafka).
    pub java_batch_size: (u64, u64),
    /// CPUs of the machine.
    pub cpus: usize,
    /// lz4 compressed ÷ uncompressed size of the generator's events, per batch.
    pub lz4_ratio: f64,
    /// Best run of each side.
    pub rows: Vec<BenchRow>,
    /// The simulator and encoder alone (no I/O), for reference.
    pub sim_only: BenchRow,
    /// Every run, in order.
    pub runs: Vec<BenchRow>,
    /// ridectl ÷ ProducerPerformance with ridectl's payloads (best runs).
    pub ratio: Option<f64>,
    /// ridectl ÷ ProducerPerformance with random payloads (best runs).
    pub ratio_random: Option<f64>,
}

/// What the payload sample says about sizes.
#[derive(Clone, Copy, Debug)]
struct SampleStats {
    /// Mean event size, bytes.
    mean: f64,
    /// lz4 compressed ÷ uncompressed size of the events in batches of
    /// `batch` (what a producer batch compresses to).
    lz4_ratio: f64,
}

/// Writes `n` steady-state ride events of the generator (after its warm-up, so the
/// event mix is the usual one) to `path`, one per line; returns their mean size
/// and lz4 compression ratio in batches of `batch` events.
fn write_sample(
    cfg: &PipelineConfig,
    path: &Path,
    n: usize,
    batch: usize,
) -> anyhow::Result<SampleStats> {
    let opts = GenerateOptions {
        rate: Some(Rate::Max),
        seed: Some(1),
        start_time: Some(1_767_225_600_000), // 2026-01-01
        driver_locations: Some(false),
        ..Default::default()
    };
    let plan = opts.plan(cfg, crate::time::now_millis())?;
    let mut src = Source::new(&cfg.generator, plan.source);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let (mut written, mut bytes, mut seen) = (0usize, 0usize, 0usize);
    let (mut group, mut groups_in, mut groups_out) = (Vec::new(), 0usize, 0usize);
    let warmup = 1_500_000;
    while let Some(m) = src.next() {
        seen += 1;
        if seen <= warmup || m.kind != Kind::Ride {
            continue;
        }
        out.write_all(m.payload)?;
        out.write_all(b"\n")?;
        bytes += m.payload.len();
        written += 1;
        group.extend_from_slice(m.payload);
        if written % batch.max(1) == 0 {
            groups_in += group.len();
            groups_out += lz4_flex::block::compress(&group).len();
            group.clear();
        }
        if written == n {
            break;
        }
    }
    out.flush()?;
    Ok(SampleStats {
        mean: bytes as f64 / written.max(1) as f64,
        lz4_ratio: if groups_in > 0 {
            groups_out as f64 / groups_in as f64
        } else {
            1.0
        },
    })
}

fn bench_topic(cfg: &PipelineConfig, name: String) -> ResolvedTopic {
    let mut t = cfg
        .topics
        .resolved()
        .into_iter()
        .find(|t| t.role == "ride_events")
        .unwrap_or_else(|| ResolvedTopic {
            role: "ride_events",
            name: String::new(),
            partitions: 12,
            replication_factor: 1,
            config: Default::default(),
        });
    t.name = name;
    t
}

/// The simulator and encoder alone, no I/O: `count` ride events into memory.
fn run_sim_only(cfg: &PipelineConfig, count: u64) -> anyhow::Result<BenchRow> {
    let opts = GenerateOptions {
        rate: Some(Rate::Max),
        count: Some(count),
        seed: Some(1),
        start_time: Some(1_767_225_600_000),
        driver_locations: Some(false),
        ..Default::default()
    };
    let plan = opts.plan(cfg, crate::time::now_millis())?;
    let mut src = Source::new(&cfg.generator, plan.source);
    let cpu0 = cpu_time(false);
    let t0 = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(m) = src.next() {
        n += 1;
        bytes += m.payload.len() as u64;
    }
    let wall = t0.elapsed().as_secs_f64();
    let rate = n as f64 / wall;
    Ok(BenchRow {
        tool: "ridectl simulator + encoder (no I/O)".into(),
        records: n,
        failed: 0,
        record_bytes: bytes as f64 / n.max(1) as f64,
        records_per_sec: rate,
        mb_per_sec: bytes as f64 / wall / 1e6,
        p50_ms: 0.0,
        p99_ms: 0.0,
        cpu_secs: (cpu_time(false) - cpu0).as_secs_f64(),
        wall_secs: wall,
    })
}

/// Runs the generator against `topic`: `count` ride events at `--rate max`.
fn run_ridectl(
    cfg: &PipelineConfig,
    topic: &str,
    count: u64,
    progress: bool,
) -> anyhow::Result<BenchRow> {
    let mut cfg = cfg.clone();
    cfg.topics.ride_events.name = topic.to_string();
    let opts = GenerateOptions {
        rate: Some(Rate::Max),
        count: Some(count),
        seed: Some(1),
        start_time: Some(1_767_225_600_000),
        driver_locations: Some(false),
        progress: if progress {
            Progress::Auto
        } else {
            Progress::Off
        },
        ..Default::default()
    };
    let cpu0 = cpu_time(false);
    let t0 = Instant::now();
    let s = generate::run(&cfg, &opts, &Shutdown::new())?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(false) - cpu0).as_secs_f64();
    let r = s.ride_events;
    Ok(BenchRow {
        tool: "ridectl generate".into(),
        records: r.delivered,
        failed: r.failed,
        record_bytes: s.avg_ride_event_bytes,
        records_per_sec: s.achieved_rate,
        mb_per_sec: s.achieved_rate * s.avg_ride_event_bytes / 1e6,
        p50_ms: s.latency.p50_ms,
        p99_ms: s.latency.p99_ms,
        cpu_secs: cpu,
        wall_secs: wall,
    })
}

/// Parses ProducerPerformance's final line:
/// `N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency,
/// P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.`
pub fn parse_producer_performance(out: &str) -> Option<(u64, f64, f64, f64, f64)> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records sent") && l.contains("50th"))?;
    let num_before = |marker: &str| -> Option<f64> {
        let end = line.find(marker)?;
        let head = line[..end].trim_end();
        let start = head
            .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(0, |i| i + 1);
        head[start..].parse().ok()
    };
    Some((
        num_before(" records sent")? as u64,
        num_before(" records/sec")?,
        num_before(" ms 50th")?,
        num_before(" ms 99th")?,
        num_before(" MB/sec")?,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run_producer_performance(
    opts: &BenchOptions,
    cfg: &PipelineConfig,
    topic: &str,
    payload: Option<&Path>,
    record_bytes: f64,
    producer: &[(String, String)],
    label: &str,
) -> anyhow::Result<BenchRow> {
    let mut cmd = tokio::process::Command::new(&opts.java);
    cmd.arg("-cp")
        .arg(format!("{}/*", opts.kafka_libs.display()))
        .arg("org.apache.kafka.tools.ProducerPerformance")
        .args(["--topic", topic])
        .args(["--num-records", &opts.count.to_string()])
        .args(["--throughput", "-1"]);
    match payload {
        Some(p) => cmd.arg("--payload-file").arg(p),
        None => cmd.args(["--record-size", &format!("{}", record_bytes.round() as u64)]),
    };
    cmd.arg("--producer-props")
        .arg(format!("bootstrap.servers={}", cfg.kafka.bootstrap_servers));
    for (k, v) in producer {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let cpu0 = cpu_time(true);
    let t0 = Instant::now();
    let out = cmd.output().await.with_context(|| {
        format!(
            "cannot run {} (is Java installed? --java)",
            opts.java.display()
        )
    })?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(true) - cpu0).as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some((records, rate, p50, p99, mbs)) = parse_producer_performance(&stdout) else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "ProducerPerformance failed ({}):\n{}\n{}",
            out.status,
            stdout.trim(),
            stderr
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    Ok(BenchRow {
        tool: format!("ProducerPerformance ({label})"),
        records,
        failed: opts.count.saturating_sub(records),
        record_bytes: if payload.is_some() {
            mbs * 1024.0 * 1024.0 / rate
        } else {
            record_bytes.round()
        },
        records_per_sec: rate,
        mb_per_sec: mbs * 1.048_576,
        p50_ms: p50,
        p99_ms: p99,
        cpu_secs: cpu,
        wall_secs: wall,
    })
}

/// Runs the benchmark.
pub async fn run(loaded: &Loaded, opts: &BenchOptions) -> anyhow::Result<BenchReport> {
    let cfg = &loaded.config;
    let timeout = cfg.kafka.connect_timeout.get();
    let kcfg = cfg.kafka.clone();
    tokio::task::spawn_blocking(move || kafka::cluster_info(&kcfg, timeout)).await??;
    if !opts.skip_kafka {
        let jar_ok = std::fs::read_dir(&opts.kafka_libs)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("kafka-tools-"))
            })
            .unwrap_or(false);
        if !jar_ok {
            bail!(
                "no kafka-tools jar in {} (run scripts/setup.sh, pass --kafka-libs DIR, or --skip-kafka-bench)",
                opts.kafka_libs.display()
            );
        }
    }

    let dir = std::env::temp_dir().join(format!("ridectl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sample = dir.join("ride-events.jsonl");
    let cfg2 = cfg.clone();
    let sample2 = sample.clone();
    // The producer settings of both sides: pipeline.yaml's, in Java's words.
    let props = &cfg.kafka.producer;
    let get = |k: &str, d: &str| props.get(k).map_or(d.to_string(), |v| v.0.clone());
    let batch_msgs: f64 = get("batch.num.messages", "10000")
        .parse()
        .unwrap_or(10_000.0);
    let sample_stats = tokio::task::spawn_blocking(move || {
        write_sample(&cfg2, &sample2, 20_000, batch_msgs as usize)
    })
    .await??;
    let mean = sample_stats.mean;
    let cfg3 = cfg.clone();
    let n = opts.count.min(3_000_000);
    let sim_only = tokio::task::spawn_blocking(move || run_sim_only(&cfg3, n)).await??;

    // Same records per batch on both sides. librdkafka closes a batch at
    // batch.num.messages; Java's producer at batch.size bytes of *estimated
    // compressed* size (uncompressed bytes × its running compression ratio × 1.05,
    // MemoryRecordsBuilder). A record without key is the value plus ~7 bytes.
    // Random letters barely compress with lz4: ratio 1 for the random payloads.
    let java_batch = |ratio: f64| {
        opts.batch_size
            .unwrap_or_else(|| (batch_msgs * (mean + 7.0) * ratio * 1.05).round() as u64)
    };
    let batch_sizes = (java_batch(sample_stats.lz4_ratio), java_batch(1.0));
    let with_batch = |producer: &[(String, String)], size: u64| {
        let mut p = producer.to_vec();
        p.push(("batch.size".into(), size.to_string()));
        p
    };
    let producer: Vec<(String, String)> = vec![
        ("acks".into(), get("acks", "all")),
        ("compression.type".into(), get("compression.type", "lz4")),
        ("linger.ms".into(), get("linger.ms", "50")),
        (
            "enable.idempotence".into(),
            get("enable.idempotence", "true"),
        ),
    ];

    let admin = kafka::admin(&cfg.kafka)?;
    let tag = format!("{}-{}", std::process::id(), crate::time::now_millis());
    let mut created = Vec::new();
    let mut fresh_topic = |side: &str, round: u32| {
        let t = bench_topic(cfg, format!("bench-generate-{side}-{tag}-{round}"));
        created.push(t.name.clone());
        t
    };
    let mut plan = Vec::new();
    for round in 0..opts.rounds.max(1) {
        plan.push(("ridectl", fresh_topic("ridectl", round)));
        if !opts.skip_kafka {
            plan.push(("kafka-payload", fresh_topic("kafka-payload", round)));
            plan.push(("kafka-random", fresh_topic("kafka-random", round)));
        }
    }
    let partitions = plan.first().map_or(0, |p| p.1.partitions);
    let actions: Vec<topics::Action> = plan
        .iter()
        .map(|(_, t)| topics::Action::Create { topic: t.clone() })
        .collect();
    topics::apply(&admin, &actions, timeout).await?;

    let mut runs = Vec::new();
    let mut result = Ok(());
    for (side, topic) in &plan {
        let row = match *side {
            "ridectl" => {
                let (c, t, n, p) = (cfg.clone(), topic.name.clone(), opts.count, opts.progress);
                tokio::task::spawn_blocking(move || run_ridectl(&c, &t, n, p)).await?
            }
            "kafka-payload" => {
                run_producer_performance(
                    opts,
                    cfg,
                    &topic.name,
                    Some(&sample),
                    mean,
                    &with_batch(&producer, batch_sizes.0),
                    "ridectl payloads",
                )
                .await
            }
            _ => {
                run_producer_performance(
                    opts,
                    cfg,
                    &topic.name,
                    None,
                    mean,
                    &with_batch(&producer, batch_sizes.1),
                    "random payloads",
                )
                .await
            }
        };
        match row {
            Ok(r) => {
                tracing::info!(
                    "{}: {:.0} records/s, {:.1} MB/s, p99 {:.0} ms, {:.1} CPU s",
                    r.tool,
                    r.records_per_sec,
                    r.mb_per_sec,
                    r.p99_ms,
                    r.cpu_secs
                );
                runs.push(r);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if !opts.keep_topics {
        for name in &created {
            if let Err(e) = topics::delete(&admin, name, timeout).await {
                tracing::warn!("cannot delete benchmark topic {name}: {e:#}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result?;

    let best = |prefix: &str| {
        runs.iter()
            .filter(|r| r.tool.starts_with(prefix))
            .max_by(|a, b| a.records_per_sec.total_cmp(&b.records_per_sec))
            .cloned()
    };
    let ours = best("ridectl");
    let theirs = best("ProducerPerformance (ridectl");
    let random = best("ProducerPerformance (random");
    let ratio = |o: &Option<BenchRow>, t: &Option<BenchRow>| match (o, t) {
        (Some(o), Some(t)) if t.records_per_sec > 0.0 => {
            Some(o.records_per_sec / t.records_per_sec)
        }
        _ => None,
    };
    Ok(BenchReport {
        bootstrap_servers: cfg.kafka.bootstrap_servers.clone(),
        partitions,
        producer,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        lz4_ratio: sample_stats.lz4_ratio,
        java_batch_size: batch_sizes,
        ratio: ratio(&ours, &theirs),
        ratio_random: ratio(&ours, &random),
        rows: [ours, theirs, random].into_iter().flatten().collect(),
        sim_only,
        runs,
    })
}

/// A latency cell: `-` where nothing was delivered anywhere (no I/O).
fn latency(ms: f64, records: u64) -> String {
    if ms == 0.0 && records > 0 {
        "-".into()
    } else {
        format!("{ms:.0}")
    }
}

impl BenchReport {
    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut t = crate::output::table(
            &[
                "producer",
                "records",
                "failed",
                "bytes/rec",
                "records/s",
                "MB/s",
                "p50 ms",
                "p99 ms",
                "CPU s",
                "wall s",
            ],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9],
        );
        for r in self.rows.iter().chain([&self.sim_only]) {
            t.add_row(vec![
                r.tool.clone(),
                r.records.to_string(),
                r.failed.to_string(),
                format!("{:.0}", r.record_bytes),
                format!("{:.0}", r.records_per_sec),
                format!("{:.1}", r.mb_per_sec),
                latency(r.p50_ms, r.records),
                latency(r.p99_ms, r.records),
                format!("{:.1}", r.cpu_secs),
                format!("{:.1}", r.wall_secs),
            ]);
        }
        let props: Vec<String> = self
            .producer
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut s = format!(
            "{t}\nbroker {} · {} partitions · {} CPUs · {} · lz4 ratio {:.3} · Java batch.size {} (ridectl payloads), {} (random)\n",
            self.bootstrap_servers,
            self.partitions,
            self.cpus,
            props.join(" "),
            self.lz4_ratio,
            self.java_batch_size.0,
            self.java_batch_size.1
        );
        if let Some(r) = self.ratio {
            s += &format!("ridectl / ProducerPerformance (same payloads): {r:.2}\n");
        }
        if let Some(r) = self.ratio_random {
            s += &format!("ridectl / ProducerPerformance (random payloads): {r:.2}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_final_line() {
        let out = "\
1203150 records sent, 240630.0 records/sec (68.84 MB/sec), 190.3 ms avg latency, 492.0 ms max latency.
5000000 records sent, 612345.6 records/sec (185.50 MB/sec), 1234.56 ms avg latency, 2345.00 ms max latency, 1200 ms 50th, 2000 ms 95th, 2300 ms 99th, 2340 ms 99.9th.
";
        let (n, rate, p50, p99, mbs) = parse_producer_performance(out).unwrap();
        assert_eq!(n, 5_000_000);
        assert_eq!(rate, 612_345.6);
        assert_eq!((p50, p99, mbs), (1200.0, 2300.0, 185.5));
        assert!(parse_producer_performance("nothing").is_none());
    }
}
