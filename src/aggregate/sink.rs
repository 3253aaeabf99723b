//! Makes a trigger's output durable, in the order the recovery design needs:
//!
//! 0. wait until the dead letters and late events produced since the previous trigger
//!    are delivered (re-sending failures);
//! 1. insert the new rider rows, 2. the changed partials, 3. the partitions' progress;
//! 4. compute the merged metrics rows in ClickHouse (`sql/aggregate/merge.sql`) for
//!    the changed windows, plus — on the finalizer — every window that just became
//!    final for the whole topic; insert them into the output table and produce them
//!    to the aggregated topic, waiting for delivery;
//! 5. acknowledge, so the consumer commits the offsets.
//!
//! Every step is idempotent (ReplacingMergeTree, set semantics) and retried with
//! exponential backoff until it succeeds or the worker is told to stop; nothing is
//! acknowledged, so nothing is committed, before all of it succeeded.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clickhouse::{Client, Row};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use crate::kafka::dlq;
use super::engine::{CLOSED, PartialRow, Progress, Resume, RiderRows, TriggerOutput};
use super::metrics::Metrics;
use crate::time::{EpochMillis, format_millis, now_millis};

/// The merge query (see the file for its parameters).
pub const MERGE_SQL: &str = include_str!("../../sql/aggregate/merge.sql");
const PROGRESS_SQL: &str = include_str!("../../sql/aggregate/progress.sql");
const HORIZON_SQL: &str = include_str!("../../sql/aggregate/horizon.sql");

/// Table of the per-partition partials.
pub const PARTIALS_TABLE: &str = "city_window_partials";
/// Table of the (window, city, rider) pairs.
pub const RIDERS_TABLE: &str = "city_window_riders";
/// Table of the partitions' progress.
pub const PROGRESS_TABLE: &str = "aggregate_progress";
/// The progress row recording up to which horizon final rows were emitted.
pub const EMITTED_PARTITION: i32 = -1;

/// Changed windows per merge query (they travel as URL parameters).
const MERGE_CHUNK: usize = 500;
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What the sink writes where.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Consumer group (progress rows are per group).
    pub group_id: String,
    /// The input topic.
    pub topic: String,
    /// Kafka topic of the metrics rows.
    pub output_topic: String,
    /// ClickHouse table of the metrics rows.
    pub output_table: String,
    /// Window length, ms (bounds the window starts a merge reads).
    pub window_len: i64,
}

/// One trigger's worth of work for the sink.
pub struct Batch {
    /// The engine's output.
    pub output: TriggerOutput,
    /// Dead letters and late events produced since the previous batch.
    pub side_effects: Vec<DeliveryFuture>,
    /// Also emit the windows that became final for the whole topic (the owner of
    /// partition 0 does, and every worker at the end of a bounded run).
    pub finalize: bool,
    /// Partitions of the input topic.
    pub topic_partitions: i32,
}

/// The sink's answer to a batch: everything is durable.
#[derive(Clone, Debug, Default)]
pub struct Ack {
    /// Offsets that may now be committed.
    pub commits: Vec<(i32, i64)>,
    /// Metrics rows written.
    pub rows: usize,
    /// Final metrics rows written.
    pub finals: usize,
    /// The topic-wide finalization horizon seen (`i64::MIN`: not every partition
    /// has progress yet; [`CLOSED`]: every partition is closed).
    pub horizon: EpochMillis,
}

#[derive(Row, Serialize)]
struct RiderCh<'a> {
    city: &'a str,
    window_start: i64,
    window_end: i64,
    user_id: &'a str,
}

#[derive(Row, Serialize)]
struct PartialCh<'a> {
    city: &'a str,
    window_start: i64,
    window_end: i64,
    partition: i32,
    total_events: u64,
    requests: u64,
    accepted: u64,
    started: u64,
    completions: u64,
    cancellations: u64,
    fare_sum: f64,
    fare_count: u64,
    version: u64,
}

impl<'a> From<&'a PartialRow> for PartialCh<'a> {
    fn from(p: &'a PartialRow) -> Self {
        PartialCh {
            city: &p.city,
            window_start: p.window_start,
            window_end: p.window_end,
            partition: p.partition,
            total_events: p.counts.total,
            requests: p.counts.requests,
            accepted: p.counts.accepted,
            started: p.counts.started,
            completions: p.counts.completions,
            cancellations: p.counts.cancellations,
            fare_sum: p.fare_sum,
            fare_count: p.fare_count,
            version: p.version,
        }
    }
}

#[derive(Row, Serialize)]
struct ProgressCh<'a> {
    group_id: &'a str,
    topic: &'a str,
    partition: i32,
    finalized_until: i64,
    position: i64,
    effects_until: i64,
    epoch: u32,
    max_event_time: i64,
}

#[derive(Row, Deserialize)]
struct ProgressRead {
    partition: i32,
    finalized_until: i64,
    position: i64,
    effects_until: i64,
    epoch: u32,
}

#[derive(Row, Deserialize)]
struct HorizonRead {
    partitions: u64,
    horizon: i64,
}

/// One row of the output table (and of the aggregated topic).
#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MetricsRow {
    /// Window start, epoch ms.
    pub window_start: i64,
    /// Window end, epoch ms.
    pub window_end: i64,
    /// City.
    pub city: String,
    /// Events in the window.
    pub total_events: u64,
    /// `requested` events.
    pub requests: u64,
    /// `completed` events.
    pub completions: u64,
    /// `cancelled` events.
    pub cancellations: u64,
    /// Mean estimated fare of the window's events.
    pub avg_fare: f64,
    /// Exact number of distinct riders.
    pub unique_riders: u64,
    /// cancellations / requests (0 without requests).
    pub cancellation_rate: f64,
    /// completions / requests (0 without requests).
    pub completion_rate: f64,
    /// 1 once every partition passed the window's end.
    pub is_final: u8,
    /// When the row was computed, epoch ms.
    pub updated_at: i64,
}

#[derive(Serialize)]
struct WindowJson {
    start: String,
    end: String,
}

/// The aggregated topic's JSON: the seed's Spark `to_json(struct(*))` shape plus
/// the rates, `final` and `updated_at`.
#[derive(Serialize)]
struct OutputJson<'a> {
    window: WindowJson,
    city: &'a str,
    total_events: u64,
    requests: u64,
    completions: u64,
    cancellations: u64,
    avg_fare: f64,
    unique_riders: u64,
    cancellation_rate: f64,
    completion_rate: f64,
    #[serde(rename = "final")]
    is_final: bool,
    updated_at: String,
}

impl MetricsRow {
    /// The JSON object produced to the aggregated topic.
    pub fn to_json(&self) -> Vec<u8> {
        let j = OutputJson {
            window: WindowJson {
                start: format_millis(self.window_start),
                end: format_millis(self.window_end),
            },
            city: &self.city,
            total_events: self.total_events,
            requests: self.requests,
            completions: self.completions,
            cancellations: self.cancellations,
            avg_fare: self.avg_fare,
            unique_riders: self.unique_riders,
            cancellation_rate: self.cancellation_rate,
            completion_rate: self.completion_rate,
            is_final: self.is_final == 1,
            updated_at: format_millis(self.updated_at),
        };
        serde_json::to_vec(&j).unwrap_or_default()
    }
}

/// Reads the recorded progress of `partitions` (missing ones: [`Resume::default`]).
pub async fn read_progress(
    ch: &Client,
    group_id: &str,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<HashMap<i32, Resume>> {
    let rows = ch
        .query_raw(PROGRESS_SQL)
        .param("group_id", group_id)
        .param("topic", topic)
        .param("partitions", partitions)
        .fetch_all::<ProgressRead>()
        .await
        .context("cannot read aggregate_progress")?;
    let mut out: HashMap<i32, Resume> =
        partitions.iter().map(|&p| (p, Resume::default())).collect();
    for r in rows {
        out.insert(
            r.partition,
            Resume {
                finalized_until: r.finalized_until,
                position: r.position,
                effects_until: r.effects_until,
                epoch: r.epoch,
            },
        );
    }
    Ok(out)
}

/// Writes progress rows for `group_id` / `topic`.
pub async fn write_progress(
    ch: &Client,
    group_id: &str,
    topic: &str,
    rows: &[Progress],
) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = ch.insert::<ProgressCh<'_>>(PROGRESS_TABLE).await?;
    for r in rows {
        insert
            .write(&ProgressCh {
                group_id,
                topic,
                partition: r.partition,
                finalized_until: r.finalized_until,
                position: r.position,
                effects_until: r.effects_until,
                epoch: r.epoch,
                max_event_time: r.max_event_time,
            })
            .await?;
    }
    insert
        .end()
        .await
        .context("cannot write aggregate_progress")
}

/// The topic-wide horizon: `i64::MIN` until every partition has progress.
pub async fn read_horizon(
    ch: &Client,
    group_id: &str,
    topic: &str,
    topic_partitions: i32,
) -> anyhow::Result<EpochMillis> {
    let h = ch
        .query_raw(HORIZON_SQL)
        .param("group_id", group_id)
        .param("topic", topic)
        .param("partitions", topic_partitions)
        .fetch_one::<HorizonRead>()
        .await
        .context("cannot read the finalization horizon from aggregate_progress")?;
    Ok(if h.partitions < topic_partitions.max(0) as u64 {
        i64::MIN
    } else {
        h.horizon
    })
}

/// Writes batches to ClickHouse and the aggregated topic.
pub struct Sink {
    ch: Client,
    producer: FutureProducer,
    cfg: SinkConfig,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

/// The retry loop gave up because the worker is stopping.
#[derive(Debug)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the worker is stopping; the output was not made durable")
    }
}

impl std::error::Error for Stopped {}

impl Sink {
    /// A sink; `stop` makes the retry loops give up (the batch is then not acked).
    pub fn new(
        ch: Client,
        producer: FutureProducer,
        cfg: SinkConfig,
        metrics: Arc<Metrics>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Sink {
            ch,
            producer,
            cfg,
            metrics,
            stop,
        }
    }

    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let mut delay = BACKOFF_INITIAL;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.metrics.sink_retries.fetch_add(1, Ordering::Relaxed);
                    if self.stop.load(Ordering::Relaxed) {
                        return Err(e.context(Stopped));
                    }
                    tracing::warn!("{what} failed, retrying in {delay:?}: {e:#}");
                    let step = Duration::from_millis(50);
                    let mut waited = Duration::ZERO;
                    while waited < delay && !self.stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(step).await;
                        waited += step;
                    }
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Makes `batch` durable; returns the offsets to commit.
    pub async fn write(&mut self, batch: Batch) -> anyhow::Result<Ack> {
        let Batch {
            output,
            side_effects,
            finalize,
            topic_partitions,
        } = batch;
        let t0 = std::time::Instant::now();
        self.await_deliveries(side_effects).await?;
        let ch = &self.ch;
        self.retry("writing rider rows", || insert_riders(ch, &output.riders))
            .await?;
        self.retry("writing partials", || insert_partials(ch, &output.partials))
            .await?;
        let (group, topic) = (&self.cfg.group_id, &self.cfg.topic);
        self.retry("writing progress", || {
            write_progress(ch, group, topic, &output.progress)
        })
        .await?;
        let horizon = self
            .retry("reading the horizon", || {
                read_horizon(ch, group, topic, topic_partitions)
            })
            .await?;
        let (final_from, final_to) = if finalize {
            // Read every time: the finalizer role moves with partition 0.
            let emitted = self
                .retry("reading the emitted horizon", || async {
                    let p = read_progress(ch, group, topic, &[EMITTED_PARTITION]).await?;
                    Ok(p[&EMITTED_PARTITION].finalized_until)
                })
                .await?;
            if horizon > emitted {
                (emitted, horizon)
            } else {
                (0, 0)
            }
        } else {
            (0, 0)
        };

        let changed = output.changed_windows();
        let mut rows: Vec<MetricsRow> = Vec::new();
        if !changed.is_empty() || final_to > final_from {
            let mut chunks: Vec<&[_]> = changed.chunks(MERGE_CHUNK).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            let len = self.cfg.window_len;
            for (i, chunk) in chunks.into_iter().enumerate() {
                let range = if i == 0 {
                    (final_from, final_to)
                } else {
                    (0, 0)
                };
                let part = self
                    .retry("computing merged rows", || {
                        merge(ch, chunk, range, horizon, len)
                    })
                    .await?;
                rows.extend(part);
            }
            // A window in the final range may also be in a later chunk.
            rows.sort_by(|a, b| {
                (a.window_start, &a.city, a.window_end).cmp(&(
                    b.window_start,
                    &b.city,
                    b.window_end,
                ))
            });
            rows.dedup_by(|a, b| {
                (a.window_start, &a.city, a.window_end) == (b.window_start, &b.city, b.window_end)
            });
            let table = &self.cfg.output_table;
            self.retry("writing metrics rows", || insert_metrics(ch, table, &rows))
                .await?;
            self.produce_rows(&rows).await?;
        }
        if final_to > final_from {
            let row = Progress {
                partition: EMITTED_PARTITION,
                finalized_until: final_to,
                position: 0,
                effects_until: 0,
                epoch: 0,
                max_event_time: i64::MIN,
            };
            self.retry("recording the emitted horizon", || {
                write_progress(ch, group, topic, std::slice::from_ref(&row))
            })
            .await?;
        }
        let finals = rows.iter().filter(|r| r.is_final == 1).count();
        tracing::debug!(
            riders = output.riders.len(),
            partials = output.partials.len(),
            rows = rows.len(),
            finals,
            "trigger durable in {:?}",
            t0.elapsed()
        );
        self.metrics
            .output_rows
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        self.metrics
            .final_rows
            .fetch_add(finals as u64, Ordering::Relaxed);
        self.metrics.triggers.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .record_latency(&output.event_times, now_millis());
        Ok(Ack {
            commits: output.commits,
            rows: rows.len(),
            finals,
            horizon,
        })
    }

    /// Waits for every delivery, re-sending what failed, until all are delivered.
    async fn await_deliveries(&self, mut pending: Vec<DeliveryFuture>) -> anyhow::Result<()> {
        let mut delay = BACKOFF_INITIAL;
        while !pending.is_empty() {
            let mut failed = Vec::new();
            for f in pending.drain(..) {
                match f.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, msg))) => {
                        tracing::warn!("delivery to {} failed, re-sending: {e}", msg_topic(&msg));
                        failed.push(msg);
                    }
                    Err(_) => bail!("the Kafka producer was dropped before delivery"),
                }
            }
            if failed.is_empty() {
                break;
            }
            self.metrics.sink_retries.fetch_add(1, Ordering::Relaxed);
            if self.stop.load(Ordering::Relaxed) {
                return Err(anyhow::Error::new(Stopped));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF_MAX);
            let producer = self.producer.clone();
            pending = tokio::task::spawn_blocking(move || {
                failed
                    .iter()
                    .map(|m| dlq::resend(&producer, m))
                    .collect::<Vec<_>>()
            })
            .await
            .context("re-sending failed deliveries")?;
        }
        Ok(())
    }

    async fn produce_rows(&self, rows: &[MetricsRow]) -> anyhow::Result<()> {
        let mut futures = Vec::with_capacity(rows.len());
        for r in rows {
            let payload = r.to_json();
            let mut record = FutureRecord::to(&self.cfg.output_topic)
                .key(r.city.as_str())
                .payload(&payload[..]);
            loop {
                match self.producer.send_result(record) {
                    Ok(f) => {
                        futures.push(f);
                        break;
                    }
                    Err((e, back)) => {
                        record = back;
                        if self.stop.load(Ordering::Relaxed) {
                            return Err(anyhow::Error::new(e).context(Stopped));
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        self.await_deliveries(futures).await
    }
}

fn msg_topic(m: &rdkafka::message::OwnedMessage) -> String {
    use rdkafka::Message;
    m.topic().to_string()
}

async fn insert_riders(ch: &Client, rows: &RiderRows) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = ch.insert::<RiderCh<'_>>(RIDERS_TABLE).await?;
    for r in rows.iter() {
        insert
            .write(&RiderCh {
                city: r.city,
                window_start: r.window_start,
                window_end: r.window_end,
                user_id: r.user_id,
            })
            .await?;
    }
    insert.end().await.context("cannot write rider rows")
}

async fn insert_partials(ch: &Client, rows: &[PartialRow]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = ch.insert::<PartialCh<'_>>(PARTIALS_TABLE).await?;
    for r in rows {
        insert.write(&PartialCh::from(r)).await?;
    }
    insert.end().await.context("cannot write partials")
}

async fn insert_metrics(ch: &Client, table: &str, rows: &[MetricsRow]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = ch.insert::<MetricsRow>(table).await?;
    for r in rows {
        insert.write(r).await?;
    }
    insert
        .end()
        .await
        .with_context(|| format!("cannot write metrics rows to {table}"))
}

async fn merge(
    ch: &Client,
    windows: &[(Arc<str>, EpochMillis, EpochMillis)],
    (final_from, final_to): (EpochMillis, EpochMillis),
    horizon: EpochMillis,
    window_len: i64,
) -> anyhow::Result<Vec<MetricsRow>> {
    let cities: Vec<&str> = windows.iter().map(|w| &*w.0).collect();
    let starts: Vec<i64> = windows.iter().map(|w| w.1).collect();
    let ends: Vec<i64> = windows.iter().map(|w| w.2).collect();
    // Bounds of every selected window start: the changed ones, and the windows
    // ending in (from, to], i.e. starting in (from − len, to − len].
    let (mut min_start, mut max_start) = (
        starts.iter().copied().min().unwrap_or(i64::MAX),
        starts.iter().copied().max().unwrap_or(i64::MIN),
    );
    if final_to > final_from {
        min_start = min_start.min(final_from.saturating_sub(window_len).saturating_add(1));
        max_start = max_start.max(final_to.saturating_sub(window_len));
    }
    let to_param = |ms: i64| ms.clamp(0, 4_102_444_800_000);
    ch.query_raw(MERGE_SQL)
        .param("min_start", to_param(min_start))
        .param("max_start", to_param(max_start))
        .param("cities", cities)
        .param("starts", starts)
        .param("ends", ends)
        .param("final_from", final_from)
        .param("final_to", final_to)
        .param("horizon", horizon)
        .fetch_all::<MetricsRow>()
        .await
        .context("merge query failed")
}

/// Whether every partition of the topic is closed (a bounded run finished).
pub fn all_closed(horizon: EpochMillis) -> bool {
    horizon == CLOSED
}
