//! `ridectl aggregate`: the native windowed aggregation worker (design:
//! `docs/aggregate.md`).
//!
//! - [`window`]: epoch-aligned sliding/tumbling window assignment (pure);
//! - [`engine`]: the per-partition state machine (pure, deterministic);
//! - [`source`]: the Kafka consumer thread that drives the engine;
//! - [`sink`]: ClickHouse and Kafka outputs, with retries;
//! - late events go out through [`crate::kafka::dlq`] (rejected messages are only
//!   counted here: the ingest group writes the dead letters);
//! - [`metrics`]: counters, the periodic log line and the Prometheus endpoint.
//!
//! [`run`] wires them: one consumer thread, one sink task, a bounded channel of one
//! batch between them, and a shutdown flag every part honours.

pub mod engine;
pub mod metrics;
pub mod sink;
pub mod source;
pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::clickhouse::{self as ch, Access};
use crate::config::PipelineConfig;
use crate::exit::{Unavailable, UsageError};
use crate::kafka::{self, Role, dlq};
use crate::time::{EpochMillis, format_millis};
use engine::{CLOSED, Engine, EngineConfig, Progress};
use metrics::Metrics;
use sink::{Sink, SinkConfig};
use source::{Ending, SourceParts};

/// Where consumption starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The group's committed offsets (a new group: the beginning).
    Committed,
    /// Recompute everything still in the topic.
    Beginning,
    /// Recompute the windows starting at or after this time.
    Timestamp(EpochMillis),
}

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Consume to the end offsets present at start, finalize everything, exit.
    pub bounded: bool,
    /// Where to start.
    pub start: Start,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds between log lines (0: none).
    pub log_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bounded: false,
            start: Start::Committed,
            metrics_addr: None,
            log_every: Duration::from_secs(10),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `bounded`, `stopped` or `stopped_unflushed`.
    pub ending: &'static str,
    /// Messages consumed.
    pub consumed: u64,
    /// Events counted.
    pub accepted: u64,
    /// Messages replayed that had been fully processed before.
    pub replayed: u64,
    /// Late events per city.
    pub late: BTreeMap<String, u64>,
    /// Messages that broke the wire contract, per reason: skipped and counted here,
    /// dead-lettered by the ingest group ([`crate::kafka::dlq::DeadLetterRole`]).
    pub rejected: BTreeMap<&'static str, u64>,
    /// Metrics rows written (updates and finals).
    pub rows: u64,
    /// Final rows written.
    pub final_rows: u64,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
    /// Messages consumed per wall-clock second.
    pub events_per_sec: f64,
    /// p99 from event time to durable window row, ms.
    pub output_latency_p99_ms: Option<i64>,
}

impl Summary {
    /// True when the run ended cleanly (everything durable and committed).
    pub fn clean(&self) -> bool {
        self.ending != "stopped_unflushed"
    }
}

/// The consumer configuration of the worker: `kafka.*` plus the group and the
/// settings manual commits need; `kafka.consumer` may override the defaults below.
pub fn consumer_config(cfg: &PipelineConfig) -> ClientConfig {
    let mut c = kafka::client_config(&cfg.kafka, Role::Consumer);
    for (key, value) in [
        ("auto.offset.reset", "earliest"),
        // Bounds librdkafka's prefetch queue (the default is 64 MiB).
        ("queued.max.messages.kbytes", "16384"),
    ] {
        if !cfg.kafka.consumer.contains_key(key) && !cfg.kafka.client.contains_key(key) {
            c.set(key, value);
        }
    }
    c.set("group.id", &cfg.aggregation.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    c
}

async fn check_tables(client: &clickhouse::Client, output_table: &str) -> anyhow::Result<()> {
    let wanted = [
        sink::PARTIALS_TABLE,
        sink::RIDERS_TABLE,
        sink::PROGRESS_TABLE,
        output_table,
    ];
    let present: Vec<String> = client
        .query_raw(
            "SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        )
        .param("names", &wanted[..])
        .fetch_all::<String>()
        .await
        .context("cannot list the ClickHouse tables")?;
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|t| !present.iter().any(|p| p == t))
        .collect();
    if !missing.is_empty() {
        bail!(
            "ClickHouse tables missing: {} — run `ridectl schema apply`",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Offsets where a recompute starts, per partition.
fn start_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    start: Start,
    seek_back: i64,
    timeout: Duration,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let mut out = Vec::new();
    match start {
        Start::Committed => {}
        Start::Beginning => {
            for p in 0..partitions {
                let (low, _) = consumer
                    .fetch_watermarks(topic, p, timeout)
                    .with_context(|| format!("cannot read the offsets of {topic}/{p}"))?;
                out.push((p, low));
            }
        }
        Start::Timestamp(t) => {
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                let _ = tpl.add_partition_offset(topic, p, Offset::Offset(t - seek_back));
            }
            let found = consumer
                .offsets_for_times(tpl, timeout)
                .context("cannot look up offsets by time")?;
            for e in found.elements() {
                let o = match e.offset() {
                    Offset::Offset(o) => o,
                    // No message at or after the time: start at the end.
                    _ => {
                        consumer
                            .fetch_watermarks(topic, e.partition(), timeout)
                            .with_context(|| {
                                format!("cannot read the offsets of {topic}/{}", e.partition())
                            })?
                            .1
                    }
                };
                out.push((e.partition(), o));
            }
        }
    }
    Ok(out)
}

/// Resets the group for a recompute: bumps every partition's epoch, moves its
/// finalized horizon back to before the first recomputed window (keeping the record
/// of which offsets had their side effects), records the same horizon as emitted,
/// and commits the start offsets.
async fn reset_for_recompute(
    cfg: &PipelineConfig,
    client: &clickhouse::Client,
    consumer: &BaseConsumer,
    partitions: i32,
    start: Start,
) -> anyhow::Result<()> {
    let a = &cfg.aggregation;
    let topic = &cfg.topics.ride_events.name;
    let spec = EngineConfig::from_config(a).windows;
    // Windows starting before `first` are left as they are.
    let (first, horizon) = match start {
        Start::Committed => return Ok(()),
        Start::Beginning => (i64::MIN, i64::MIN),
        Start::Timestamp(t) => {
            let first = spec.last_start(t) + if t % spec.slide == 0 { 0 } else { spec.slide };
            (first, first - spec.slide + spec.len)
        }
    };
    let seek_back = a.watermark.as_millis_i64();
    let timeout = cfg.kafka.connect_timeout.get();
    let offsets = start_offsets(consumer, topic, partitions, start, seek_back, timeout)?;
    let all: Vec<i32> = (0..partitions).collect();
    let old = sink::read_progress(client, &a.group_id, topic, &all).await?;
    let mut rows: Vec<Progress> = all
        .iter()
        .map(|p| {
            let r = old.get(p).copied().unwrap_or_default();
            Progress {
                partition: *p,
                finalized_until: horizon,
                // Nothing processed in the new epoch; side effects stay done.
                position: 0,
                effects_until: r.effects_until.max(r.position),
                epoch: r.epoch + 1,
                max_event_time: i64::MIN,
            }
        })
        .collect();
    rows.push(Progress {
        partition: sink::EMITTED_PARTITION,
        finalized_until: horizon,
        position: 0,
        effects_until: 0,
        epoch: 0,
        max_event_time: i64::MIN,
    });
    sink::write_progress(client, &a.group_id, topic, &rows).await?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .context("bad start offset")?;
    }
    consumer.commit(&tpl, CommitMode::Sync).with_context(|| {
        format!(
            "cannot commit the start offsets for group {}: stop the other workers of the group first",
            a.group_id
        )
    })?;
    let from = if first == i64::MIN {
        "the beginning".to_string()
    } else {
        format_millis(first)
    };
    tracing::info!(
        "recomputing windows from {from}: start offsets {:?}",
        offsets
    );
    Ok(())
}

/// Runs the worker until a bounded run completes or `shutdown` is set (then it
/// flushes, commits and returns within about ten seconds).
pub async fn run(
    cfg: &PipelineConfig,
    opts: &Options,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let a = &cfg.aggregation;
    let topic = cfg.topics.ride_events.name.clone();
    let timeout = cfg.kafka.connect_timeout.get();
    ch::version(&cfg.clickhouse, Duration::from_secs(10)).await?;
    let client = ch::try_client(&cfg.clickhouse, Access::Write)?;
    check_tables(&client, &a.output_table).await?;
    let kcfg = cfg.kafka.clone();
    tokio::task::spawn_blocking(move || kafka::cluster_info(&kcfg, timeout)).await??;

    // Metadata, recompute reset and bounded end offsets, with a plain consumer of
    // the same group (it is not subscribed, so it never joins the group).
    let plain: BaseConsumer = consumer_config(cfg)
        .create()
        .context("cannot create the Kafka consumer")?;
    let md = plain
        .fetch_metadata(Some(&topic), timeout)
        .map_err(|e| Unavailable(format!("cannot read the metadata of {topic}: {e}")))?;
    let partitions = md
        .topics()
        .first()
        .map(|t| t.partitions().len() as i32)
        .unwrap_or(0);
    if partitions == 0 {
        bail!("topic {topic} does not exist — run `ridectl topics create`");
    }
    let all: Vec<i32> = (0..partitions).collect();
    if opts.start != Start::Committed {
        reset_for_recompute(cfg, &client, &plain, partitions, opts.start).await?;
    } else if !opts.bounded {
        let progress = sink::read_progress(&client, &a.group_id, &topic, &all).await?;
        if progress.values().any(|r| r.finalized_until == CLOSED) {
            return Err(UsageError(format!(
                "consumer group {} was closed by a bounded run (every window is final); \
                 start with --from-beginning or --from TIMESTAMP to recompute, or use another \
                 aggregation.group_id",
                a.group_id
            ))
            .into());
        }
    }
    let ends = if opts.bounded {
        let mut ends = HashMap::new();
        for p in 0..partitions {
            let (_, high) = plain
                .fetch_watermarks(&topic, p, timeout)
                .map_err(|e| Unavailable(format!("cannot read the offsets of {topic}/{p}: {e}")))?;
            ends.insert(p, high);
        }
        Some(ends)
    } else {
        None
    };
    drop(plain);

    let producer: FutureProducer = kafka::client_config(&cfg.kafka, Role::Producer)
        .create()
        .context("cannot create the Kafka producer")?;
    let metrics = Arc::new(Metrics::default());
    let metrics_task = opts
        .metrics_addr
        .map(|addr| tokio::spawn(metrics::serve(addr, metrics.clone())));

    let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<sink::Batch>(1);
    let (ack_tx, ack_rx) = std::sync::mpsc::channel();
    let stop_sink = Arc::new(AtomicBool::new(false));
    let mut sink = Sink::new(
        client.clone(),
        producer.clone(),
        SinkConfig {
            group_id: a.group_id.clone(),
            topic: topic.clone(),
            output_topic: cfg.topics.aggregated.name.clone(),
            output_table: a.output_table.clone(),
            window_len: a.window.as_millis_i64(),
        },
        metrics.clone(),
        stop_sink.clone(),
    );
    let sink_task = tokio::spawn(async move {
        while let Some(batch) = batch_rx.recv().await {
            let ack = sink.write(batch).await;
            if ack_tx.send(ack).is_err() {
                break;
            }
        }
    });

    let parts = SourceParts {
        engine: Engine::new(EngineConfig::from_config(a)),
        side_outputs: dlq::SideOutputs::new(
            producer.clone(),
            &cfg.topics.dead_letter.name,
            &cfg.topics.late_events.name,
            dlq::consumer_name(&a.group_id),
        ),
        dead_letter_role: dlq::DeadLetterRole::for_group(&a.group_id, &cfg.ingest.group_id),
        batches: batch_tx,
        acks: ack_rx,
        ch: client.clone(),
        rt: tokio::runtime::Handle::current(),
        group_id: a.group_id.clone(),
        topic: topic.clone(),
        topic_partitions: partitions,
        ends,
        trigger: a.trigger_interval.get(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let ctx = source::context(parts)?;
    let consumer: BaseConsumer<source::Ctx> = consumer_config(cfg)
        .create_with_context(ctx)
        .context("cannot create the Kafka consumer")?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("aggregate-consumer".into())
        .spawn(move || {
            let _ = done_tx.send(source::run(consumer));
        })
        .context("cannot start the consumer thread")?;

    // The sink keeps retrying until shortly after the consumer thread's own flush
    // deadline once a stop was asked for.
    let watchdog = {
        let (shutdown, stop_sink) = (shutdown.clone(), stop_sink.clone());
        tokio::spawn(async move {
            while !shutdown.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(8_500)).await;
            stop_sink.store(true, Ordering::Relaxed);
        })
    };
    let logger = (!opts.log_every.is_zero()).then(|| {
        let (metrics, every) = (metrics.clone(), opts.log_every);
        tokio::spawn(async move {
            let mut prev = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(every).await;
                tracing::info!("{}", metrics.log_line(&mut prev));
            }
        })
    });

    let ending = done_rx.await.context("the consumer thread panicked")?;
    watchdog.abort();
    if let Some(l) = logger {
        l.abort();
    }
    if let Some(m) = metrics_task {
        m.abort();
    }
    let _ = sink_task.await;
    let ending = ending?;
    let snap = metrics.snapshot();
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Summary {
        ending: match ending {
            Ending::Bounded => "bounded",
            Ending::Stopped => "stopped",
            Ending::StoppedUnflushed => "stopped_unflushed",
        },
        consumed: snap.stats.consumed,
        accepted: snap.stats.accepted,
        replayed: snap.stats.replayed,
        late: snap.stats.late.clone(),
        rejected: snap.stats.rejected.clone(),
        rows: metrics.output_rows.load(Ordering::Relaxed),
        final_rows: metrics.final_rows.load(Ordering::Relaxed),
        elapsed_secs: elapsed,
        events_per_sec: snap.stats.consumed as f64 / elapsed.max(1e-9),
        output_latency_p99_ms: metrics.latency().quantile_ms(0.99),
    })
}
