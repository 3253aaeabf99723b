//! `ridectl ingest`: raw events from Kafka into ClickHouse, exactly once in effect.
//!
//! One consumer reads `ride-events` and `driver-locations`. Messages are validated
//! (the same rules as the aggregation worker) and gathered into per-partition
//! batches. When one batch is full (`ingest.batch_max_rows`) or old enough
//! (`ingest.batch_max_wait`), every non-empty batch is written together as a
//! *round* — one INSERT per table, however many partitions — in four steps, each
//! retried with exponential backoff until it succeeds or the worker is told to stop:
//!
//! 1. commit each batch's *intent* (its offset range, as commit metadata), all
//!    partitions in one commit;
//! 2. produce the rejected messages to the dead-letter topic;
//! 3. insert the rows, one INSERT per table, with a deduplication token derived
//!    from every (topic, partition, first offset, last offset) of the round (a
//!    retried INSERT is dropped by ClickHouse);
//! 4. commit the offsets after the batches, in one commit.
//!
//! A crash anywhere replays each announced batch with the same range (see
//! [`batch`]), alone: a replayed `ride_events` batch is inserted only if none of
//! its offsets is in the table (a round's INSERT is atomic: all its rows or none),
//! with the token `topic:partition:first:last`, so no row is lost or doubled.
//! `driver_locations` keeps the latest row per driver: a replay there is
//! idempotent. The dead-letter topic is at-least-once across a crash.
//!
//! Fewer, larger inserts are what ClickHouse wants (each INSERT makes a part): a
//! round every `batch_max_wait` per table instead of one per partition.
//!
//! A rebalance (a broker paused or lost expires the member; the partitions come
//! back) is handled like a restart: messages polled before a partition was revoked
//! are dropped, its uncommitted batch too, and fetching resumes at the committed
//! offset, where offsets already written are skipped and a pending intent cuts the
//! first batch (see `IngestContext`). One worker per group is what the fault suite
//! (docs/faults.md) checks; see there for several.

pub mod batch;
pub mod rows;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;

use crate::clickhouse::Access;
use crate::config::PipelineConfig;
use crate::events::Contract;
use crate::kafka::dlq::{self, Origin, SideOutputs};
use crate::kafka::{self, Role};
use crate::shutdown::Shutdown;
use crate::throttle::{LogThrottle, held_back};
use batch::{Batch, DeadLetter, Rows};
use rows::{DriverLocationRow, RideEventRow};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct IngestOptions {
    /// Stop at the end offsets present at start (tests, backfills).
    pub bounded: bool,
    /// Start from the earliest offsets when the group has no committed offset.
    pub from_beginning: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestSummary {
    /// Messages read.
    pub consumed: u64,
    /// Ride event rows inserted.
    pub ride_rows: u64,
    /// Driver location rows inserted.
    pub location_rows: u64,
    /// Messages sent to the dead-letter topic, by reason.
    pub dead_letters: HashMap<&'static str, u64>,
    /// Rounds written (each one INSERT per table, all partitions' batches).
    pub batches: u64,
    /// Insert attempts that failed and were retried.
    pub retries: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// A repeated Kafka error is logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Partitions revoked by a rebalance, with the assignment generation that revoked
/// them, drained by the main loop; librdkafka's errors, rate-limited (they repeat
/// on every poll while a broker is down).
///
/// The generation tells stale messages apart: the poll thread tags each message
/// with the generation current when poll() returned it, and rebalance callbacks run
/// inside poll(), so a message polled before a partition was revoked carries an
/// older generation than the revocation, and every message fetched after it (from
/// the committed offset again) a newer or equal one.
struct IngestContext {
    revoked: Mutex<Vec<(String, i32, u64)>>,
    generation: AtomicU64,
    errors: LogThrottle,
}

impl Default for IngestContext {
    fn default() -> Self {
        IngestContext {
            revoked: Mutex::default(),
            generation: AtomicU64::new(0),
            errors: LogThrottle::new(ERROR_LOG_EVERY),
        }
    }
}

impl ClientContext for IngestContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if let Some(held) = self.errors.allow() {
            tracing::error!("librdkafka: {error}: {reason}{}", held_back(held));
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance
            && let Ok(mut r) = self.revoked.lock()
        {
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            r.extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition(), generation)),
            );
        }
    }
}

type IngestConsumer = BaseConsumer<IngestContext>;

/// The offset each (topic, partition) must reach in a bounded run.
type EndOffsets = HashMap<(String, i32), i64>;

/// One consumed message, owned, as the poll thread hands it over.
struct Polled {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// The assignment generation when it was polled (see [`IngestContext`]).
    generation: u64,
}

/// Polls the consumer on a dedicated thread and hands messages over a bounded
/// channel: when the writer falls behind, the channel fills and polling waits
/// (backpressure), while librdkafka keeps its own prefetch bounded.
///
/// When a poll returns nothing, every message fetched so far has been sent, and the
/// poller records the consumer's positions in `idle_at`: a bounded run reads them
/// to finish partitions that end in a transaction marker (no message at end − 1,
/// e.g. after `ridectl dlq replay`).
fn spawn_poller(
    consumer: Arc<IngestConsumer>,
    tx: tokio::sync::mpsc::Sender<Polled>,
    stop: Arc<AtomicBool>,
    idle_at: Arc<Mutex<HashMap<(String, i32), i64>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let errors = LogThrottle::new(ERROR_LOG_EVERY);
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(100)) {
                None => {
                    if let Ok(pos) = consumer.position()
                        && let Ok(mut idle) = idle_at.lock()
                    {
                        for e in pos.elements() {
                            if let Offset::Offset(o) = e.offset() {
                                idle.insert((e.topic().to_string(), e.partition()), o);
                            }
                        }
                    }
                }
                Some(Ok(m)) => {
                    let polled = Polled {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        generation: consumer.context().generation.load(Ordering::SeqCst),
                    };
                    if tx.blocking_send(polled).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    if let Some(held) = errors.allow() {
                        tracing::warn!("consumer error: {e}{}", held_back(held));
                    }
                }
            }
        }
    })
}

/// Per-partition progress known to the loop.
struct PartitionState {
    batch: Option<Batch>,
    /// The end of a replayed intent, applied to the next batch.
    pending_cut: Option<i64>,
    /// Offsets below this were written and committed already (a batch that was
    /// being written when the partition was revoked and assigned again): skipped.
    skip_below: i64,
}

struct Worker<'a> {
    cfg: &'a PipelineConfig,
    consumer: Arc<IngestConsumer>,
    side_outputs: SideOutputs,
    ch: clickhouse::Client,
    parts: HashMap<(String, i32), PartitionState>,
    /// The generation at which each partition was last revoked: messages polled
    /// before it are stale and skipped.
    revoked_at: HashMap<(String, i32), u64>,
    summary: IngestSummary,
    shutdown: Shutdown,
}

/// Runs the ingest worker until `shutdown` fires (or, bounded, until the end offsets
/// present at start are written).
pub async fn run(
    cfg: &PipelineConfig,
    opts: IngestOptions,
    shutdown: Shutdown,
) -> anyhow::Result<IngestSummary> {
    let started = Instant::now();
    let topics = [
        cfg.topics.ride_events.name.clone(),
        cfg.topics.driver_locations.name.clone(),
    ];
    let timeout = cfg.kafka.connect_timeout.get();
    let kcfg = cfg.kafka.clone();
    tokio::task::spawn_blocking(move || kafka::cluster_info(&kcfg, timeout)).await??;
    // Refused credentials end the run at once; ClickHouse being down does not (the
    // inserts are retried with backoff until it is back).
    match crate::clickhouse::version(&cfg.clickhouse, Duration::from_secs(3)).await {
        Err(e) if e.chain().any(|c| c.is::<crate::exit::AuthFailed>()) => return Err(e),
        Err(e) => tracing::warn!("{e:#}; inserts will be retried until it answers"),
        Ok(_) => {}
    }

    let mut cc = kafka::client_config(&cfg.kafka, Role::Consumer);
    cc.set("group.id", &cfg.ingest.group_id)
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            if opts.from_beginning || opts.bounded {
                "earliest"
            } else {
                "latest"
            },
        )
        // Inserts may be retried for minutes while ClickHouse is down: stay in the group.
        .set("max.poll.interval.ms", "3600000");
    let consumer: IngestConsumer = cc
        .create_with_context(IngestContext::default())
        .context("cannot create the ingest consumer")?;
    let producer: FutureProducer = kafka::client_config(&cfg.kafka, Role::Producer)
        .create()
        .context("cannot create the dead-letter producer")?;

    let targets = if opts.bounded {
        let (assignment, targets) = bounded_assignment(&consumer, &topics, timeout)?;
        consumer.assign(&assignment).context("assign partitions")?;
        Some(targets)
    } else {
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&refs).context("subscribe")?;
        None
    };
    let consumer = Arc::new(consumer);
    let (tx, rx) = tokio::sync::mpsc::channel(10_000);
    let stop = Arc::new(AtomicBool::new(false));
    let idle_at = Arc::new(Mutex::new(HashMap::new()));
    let poller = spawn_poller(consumer.clone(), tx, stop.clone(), idle_at.clone());
    let worker = Worker {
        cfg,
        consumer,
        side_outputs: SideOutputs::new(
            producer,
            &cfg.topics.dead_letter.name,
            &cfg.topics.late_events.name,
            dlq::consumer_name(&cfg.ingest.group_id),
        ),
        ch: crate::clickhouse::try_client(&cfg.clickhouse, Access::Write)?,
        parts: HashMap::new(),
        revoked_at: HashMap::new(),
        summary: IngestSummary::default(),
        shutdown,
    };
    // The loop owns the receiver: when it returns, the poll thread's next send fails.
    let result = worker.run_loop(rx, targets, idle_at).await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || poller.join()).await;
    let mut summary = result?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// For a bounded run: every partition of `topics` assigned at the group's committed
/// offset (earliest where none), and the end offset each partition must reach —
/// only partitions that have something left to read.
fn bounded_assignment(
    c: &IngestConsumer,
    topics: &[String],
    timeout: Duration,
) -> anyhow::Result<(TopicPartitionList, EndOffsets)> {
    let mut all = TopicPartitionList::new();
    for t in topics {
        let md = c
            .fetch_metadata(Some(t), timeout)
            .with_context(|| format!("metadata of {t}"))?;
        for topic in md.topics() {
            anyhow::ensure!(
                topic.error().is_none(),
                "topic {t} does not exist (run `ridectl topics create`)"
            );
            for p in topic.partitions() {
                all.add_partition(t, p.id());
            }
        }
    }
    let committed = kafka::committed_offsets(c, all, timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut targets = HashMap::new();
    for e in committed.elements() {
        let (t, p) = (e.topic(), e.partition());
        let (low, high) = c
            .fetch_watermarks(t, p, timeout)
            .with_context(|| format!("watermarks of {t}/{p}"))?;
        let start = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        assignment.add_partition_offset(t, p, Offset::Offset(start.max(low)))?;
        if start.max(low) < high {
            targets.insert((t.to_string(), p), high);
        }
    }
    Ok((assignment, targets))
}

impl Worker<'_> {
    async fn run_loop(
        mut self,
        mut rx: tokio::sync::mpsc::Receiver<Polled>,
        mut targets: Option<EndOffsets>,
        idle_at: Arc<Mutex<HashMap<(String, i32), i64>>>,
    ) -> anyhow::Result<IngestSummary> {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_log = Instant::now();
        let mut shutdown = self.shutdown.clone();
        loop {
            if targets.as_ref().is_some_and(HashMap::is_empty) {
                break;
            }
            tokio::select! {
                msg = rx.recv() => {
                    let Some(m) = msg else { break };
                    // Revocations first: a message polled after one must not meet
                    // the state of the previous assignment.
                    self.drop_revoked();
                    let key = (m.topic.clone(), m.partition);
                    if self.revoked_at.get(&key).is_some_and(|g| m.generation < *g) {
                        // Fetched before the partition was revoked; it comes again
                        // from the committed offset.
                        continue;
                    }
                    self.accept(&m.topic, m.partition, m.offset, m.key, &m.payload).await?;
                    if let Some(t) = targets.as_mut() {
                        let key = (m.topic, m.partition);
                        if t.get(&key).is_some_and(|end| m.offset + 1 >= *end) {
                            t.remove(&key);
                        }
                    }
                }
                _ = tick.tick() => {
                    // The poller was idle at these positions after sending every
                    // message below them; with the channel empty, all were accepted.
                    if let Some(t) = targets.as_mut()
                        && rx.is_empty()
                        && let Ok(idle) = idle_at.lock()
                    {
                        t.retain(|k, end| idle.get(k).is_none_or(|pos| pos < end));
                    }
                }
                _ = shutdown.wait() => break,
            }
            self.drop_revoked();
            self.flush(false).await?;
            if last_log.elapsed() >= Duration::from_secs(10) {
                last_log = Instant::now();
                let s = &self.summary;
                tracing::info!(
                    consumed = s.consumed,
                    ride_rows = s.ride_rows,
                    location_rows = s.location_rows,
                    dead_letters = s.dead_letters.values().sum::<u64>(),
                    retries = s.retries,
                    "ingest progress"
                );
            }
        }
        self.flush(true).await?;
        Ok(self.summary)
    }

    fn drop_revoked(&mut self) {
        let revoked: Vec<(String, i32, u64)> = self
            .consumer
            .context()
            .revoked
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        for (topic, partition, generation) in revoked {
            // Uncommitted work is replayed by the partition's next owner.
            let key = (topic, partition);
            self.parts.remove(&key);
            self.revoked_at.insert(key, generation);
        }
    }

    /// Adds one message to its partition's batch.
    async fn accept(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        self.summary.consumed += 1;
        let is_rides = topic == self.cfg.topics.ride_events.name;
        let k = (topic.to_string(), partition);
        if !self.parts.contains_key(&k) {
            // First message since assignment: the committed offset says what was
            // written already, a pending intent decides the first cut.
            let Some((committed, cut)) = self.load_intent(topic, partition, offset).await? else {
                // Stopping: nothing of this partition was accepted or committed.
                return Ok(());
            };
            self.parts.insert(
                k.clone(),
                PartitionState {
                    batch: None,
                    pending_cut: cut,
                    skip_below: committed.unwrap_or(offset),
                },
            );
        }
        let Some(state) = self.parts.get_mut(&k) else {
            return Ok(());
        };
        if offset < state.skip_below {
            // Written and committed before a rebalance handed the partition back.
            return Ok(());
        }
        let batch = state.batch.get_or_insert_with(|| {
            Batch::new(topic, partition, offset, is_rides, state.pending_cut.take())
        });
        if offset != batch.last + 1 {
            // A gap (compaction, deleted records) is fine; a step back is a replay.
            anyhow::ensure!(
                offset > batch.last,
                "offset went backwards on {topic}/{partition}: {} after {}",
                offset,
                batch.last
            );
        }
        batch.last = offset;
        let contract = Contract::from_config(self.cfg);
        let now = crate::time::now_millis();
        let rejection = match &mut batch.rows {
            Rows::Rides(rows) => match contract.ride_event(payload, now) {
                Ok(ev) => {
                    rows.push(RideEventRow::new(&ev, topic, partition, offset));
                    None
                }
                Err(r) => Some(r),
            },
            Rows::Locations(rows) => match contract.driver_location(payload, now) {
                Ok(loc) => {
                    rows.push(DriverLocationRow::new(&loc, partition, offset));
                    None
                }
                Err(r) => Some(r),
            },
        };
        if let Some(rejection) = rejection {
            batch.dead.push(DeadLetter {
                offset,
                key,
                payload: payload.to_vec(),
                rejection,
            });
        }
        Ok(())
    }

    /// For the first message (at `offset`) after an assignment: the committed
    /// offset when it is at or beyond `offset` (everything below it was written: a
    /// batch finished while the partition changed hands), and the end of the intent
    /// committed there, if any (the batch starting at the committed offset must end
    /// there). Retried with backoff while the broker does not answer; `None` when
    /// shutdown interrupted the retries.
    async fn load_intent(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> anyhow::Result<Option<(Option<i64>, Option<i64>)>> {
        let backoff = Backoff::from(self.cfg);
        let (consumer, sd, retries) = (&self.consumer, &self.shutdown, &mut self.summary.retries);
        let found = Mutex::new(None);
        let read = || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            let result = kafka::committed_offsets(consumer, tpl, Duration::from_secs(30));
            let found = &found;
            async move {
                let committed = result?;
                let first = committed.elements().first().and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some((o, e.metadata().to_string())),
                    _ => None,
                });
                if let Ok(mut f) = found.lock() {
                    *f = first;
                }
                Ok(())
            }
        };
        if !backoff
            .retry("read committed offset", sd, retries, read)
            .await
        {
            return Ok(None);
        }
        let found = found.into_inner().unwrap_or_default();
        let Some((committed, metadata)) = found.filter(|(o, _)| *o >= offset) else {
            return Ok(Some((None, None)));
        };
        if committed > offset {
            tracing::info!(
                "{topic}/{partition}: offsets {offset}..{committed} were written before the \
                 partition was assigned again; skipping them"
            );
        }
        let intent = batch::parse_intent(&metadata).filter(|(first, _)| *first == committed);
        if let Some((first, last)) = intent {
            tracing::info!(
                "{topic}/{partition}: replaying batch {first}..={last} announced before a restart"
            );
        }
        Ok(Some((Some(committed), intent.map(|(_, last)| last))))
    }

    /// Writes what is due: complete replayed batches one by one, then, when a batch
    /// is full or old enough (or `all`), every other non-empty batch in rounds of at
    /// most `batch_max_rows` rows.
    async fn flush(&mut self, all: bool) -> anyhow::Result<()> {
        let (max_rows, max_wait) = (
            self.cfg.ingest.batch_max_rows,
            self.cfg.ingest.batch_max_wait.get(),
        );
        let replayed: Vec<(String, i32)> = self
            .parts
            .iter()
            .filter(|(_, s)| {
                s.batch
                    .as_ref()
                    .is_some_and(|b| b.replayed && b.is_full(max_rows, max_wait))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in replayed {
            let Some(batch) = self.parts.get_mut(&k).and_then(|s| s.batch.take()) else {
                continue;
            };
            if !self.write_replayed(batch).await? {
                return Ok(());
            }
        }
        let open = |b: &Batch| !b.replayed && b.messages() > 0;
        let due = self.parts.values().any(|s| {
            s.batch
                .as_ref()
                .is_some_and(|b| open(b) && b.is_full(max_rows, max_wait))
        });
        if !(due || all) {
            return Ok(());
        }
        let mut keys: Vec<(String, i32)> = self
            .parts
            .iter()
            .filter(|(_, s)| s.batch.as_ref().is_some_and(open))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        let mut round: Vec<Batch> = Vec::new();
        let mut rows = 0u64;
        for k in keys {
            let Some(batch) = self.parts.get_mut(&k).and_then(|s| s.batch.take()) else {
                continue;
            };
            rows += batch.rows.len() as u64;
            round.push(batch);
            if rows >= max_rows {
                if !self.write_round(std::mem::take(&mut round)).await? {
                    return Ok(());
                }
                rows = 0;
            }
        }
        if !round.is_empty() && !self.write_round(round).await? {
            return Ok(());
        }
        Ok(())
    }

    /// Produces the rejected messages of `batches` to the dead-letter topic.
    async fn dead_letters(&mut self, batches: &[Batch]) -> anyhow::Result<()> {
        // Enqueue every record first, then wait for the deliveries: awaiting each in
        // turn would wait out linger.ms per record.
        let mut pending = Vec::new();
        for batch in batches {
            for d in &batch.dead {
                let origin = Origin {
                    topic: &batch.topic,
                    partition: batch.partition,
                    offset: d.offset,
                    key: d.key.as_deref(),
                    payload: &d.payload,
                };
                pending.push((self.side_outputs.dead_letter(&origin, &d.rejection), d));
            }
        }
        for (delivery, d) in pending {
            {
                delivery
                    .await
                    .map_err(|_| anyhow::anyhow!("dead-letter producer closed"))?
                    .map_err(|(e, _)| anyhow::anyhow!("dead-letter produce failed: {e}"))?;
                *self
                    .summary
                    .dead_letters
                    .entry(d.rejection.reason.as_str())
                    .or_default() += 1;
            }
        }
        Ok(())
    }

    /// Counts the rows of written batches.
    fn account(&mut self, batches: &[Batch]) {
        for b in batches {
            match &b.rows {
                Rows::Rides(r) => self.summary.ride_rows += r.len() as u64,
                Rows::Locations(r) => self.summary.location_rows += r.len() as u64,
            }
        }
        self.summary.batches += 1;
    }

    /// Writes batches of several partitions as one round (module docs); returns
    /// false when shutdown interrupted the retries (nothing is lost: the batches
    /// are replayed from their intents).
    async fn write_round(&mut self, batches: Vec<Batch>) -> anyhow::Result<bool> {
        let backoff = Backoff::from(self.cfg);
        let intents: Vec<(&str, i32, i64, String)> = batches
            .iter()
            .map(|b| {
                let meta = batch::intent_metadata(b.first, b.last);
                (b.topic.as_str(), b.partition, b.first, meta)
            })
            .collect();
        let (consumer, sd) = (&self.consumer, &self.shutdown);
        let commit_intents = || async { commit(consumer, &intents) };
        if !backoff
            .retry(
                "commit intents",
                sd,
                &mut self.summary.retries,
                commit_intents,
            )
            .await
        {
            return Ok(false);
        }
        self.dead_letters(&batches).await?;
        for rides in [true, false] {
            let part: Vec<&Batch> = batches
                .iter()
                .filter(|b| matches!(b.rows, Rows::Rides(_)) == rides && !b.rows.is_empty())
                .collect();
            if part.is_empty() {
                continue;
            }
            let token = batch::round_token(
                part.iter()
                    .map(|b| (b.topic.as_str(), b.partition, b.first, b.last)),
            );
            let ch = &self.ch;
            let write = || insert(ch.clone(), &part, token.clone());
            if !backoff
                .retry("insert", &self.shutdown, &mut self.summary.retries, write)
                .await
            {
                return Ok(false);
            }
        }
        if !self.commit_after(&batches).await {
            return Ok(false);
        }
        self.account(&batches);
        Ok(true)
    }

    /// Commits the offsets after `batches` in one commit, retried; false when
    /// shutdown interrupted the retries.
    async fn commit_after(&mut self, batches: &[Batch]) -> bool {
        let done: Vec<(&str, i32, i64, String)> = batches
            .iter()
            .map(|b| (b.topic.as_str(), b.partition, b.last + 1, String::new()))
            .collect();
        let (consumer, sd) = (&self.consumer, &self.shutdown);
        let commit_done = || async { commit(consumer, &done) };
        Backoff::from(self.cfg)
            .retry("commit", sd, &mut self.summary.retries, commit_done)
            .await
    }

    /// Writes a batch replayed from an intent, alone (module docs); false when
    /// shutdown interrupted the retries.
    async fn write_replayed(&mut self, batch: Batch) -> anyhow::Result<bool> {
        let backoff = Backoff::from(self.cfg);
        self.dead_letters(std::slice::from_ref(&batch)).await?;
        let found = std::cell::Cell::new(false);
        if let Rows::Rides(rows) = &batch.rows
            && !rows.is_empty()
        {
            let ch = &self.ch;
            let (lo, hi) = rows.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
                (lo.min(r.timestamp), hi.max(r.timestamp))
            });
            let found = &found;
            let check = || async {
                found.set(
                    written_before(ch, batch.partition, batch.first, batch.last, lo, hi).await?,
                );
                anyhow::Ok(())
            };
            if !backoff
                .retry(
                    "check a replayed batch",
                    &self.shutdown,
                    &mut self.summary.retries,
                    check,
                )
                .await
            {
                return Ok(false);
            }
        }
        let landed = found.get();
        if landed {
            tracing::info!(
                "{}/{}: batch {}..={} was written before the restart; not inserting it again",
                batch.topic,
                batch.partition,
                batch.first,
                batch.last
            );
        } else if !batch.rows.is_empty() {
            let token = batch.token();
            let ch = &self.ch;
            let part = [&batch];
            let write = || insert(ch.clone(), &part, token.clone());
            if !backoff
                .retry("insert", &self.shutdown, &mut self.summary.retries, write)
                .await
            {
                return Ok(false);
            }
        }
        if !self.commit_after(std::slice::from_ref(&batch)).await {
            return Ok(false);
        }
        if !landed {
            self.account(std::slice::from_ref(&batch));
        }
        Ok(true)
    }
}

/// Whether any row of `ride_events` comes from `partition` at offsets
/// `first..=last` (event times `lo..=hi` narrow the scan to the batch's span).
async fn written_before(
    ch: &clickhouse::Client,
    partition: i32,
    first: i64,
    last: i64,
    lo: i64,
    hi: i64,
) -> anyhow::Result<bool> {
    let n = ch
        .query(
            "SELECT count() FROM ride_events \
             WHERE timestamp BETWEEN fromUnixTimestamp64Milli(?) AND fromUnixTimestamp64Milli(?) \
               AND kafka_partition = ? AND kafka_offset BETWEEN ? AND ?",
        )
        .bind(lo)
        .bind(hi)
        .bind(partition)
        .bind(first)
        .bind(last)
        .fetch_one::<u64>()
        .await
        .context("look for a replayed batch in ride_events")?;
    Ok(n > 0)
}

/// Commits `(topic, partition, offset, metadata)` for every entry at once,
/// synchronously.
fn commit(c: &IngestConsumer, entries: &[(&str, i32, i64, String)]) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset, metadata) in entries {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        if let Some(mut e) = tpl.find_partition(topic, *partition) {
            e.set_metadata(metadata);
        }
    }
    c.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .context("offset commit")
}

/// Exponential backoff between retries of a failed step.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    initial: Duration,
    max: Duration,
}

impl From<&PipelineConfig> for Backoff {
    fn from(cfg: &PipelineConfig) -> Self {
        Backoff {
            initial: cfg.ingest.retry_initial_backoff.get(),
            max: cfg.ingest.retry_max_backoff.get(),
        }
    }
}

impl Backoff {
    /// Runs `op` until it succeeds; false when `shutdown` fired first.
    async fn retry<F, Fut>(
        self,
        what: &str,
        shutdown: &Shutdown,
        retries: &mut u64,
        mut op: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let mut delay = self.initial;
        loop {
            match op().await {
                Ok(()) => return true,
                Err(e) => {
                    *retries += 1;
                    tracing::warn!("{what} failed, retrying in {delay:?}: {e:#}");
                }
            }
            let mut sd = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = sd.wait() => return false,
            }
            delay = (delay * 2).min(self.max);
        }
    }
}

/// Inserts the rows of `batches` (all of one table) as one INSERT with `token`.
async fn insert(ch: clickhouse::Client, batches: &[&Batch], token: String) -> anyhow::Result<()> {
    let ch = ch
        .with_setting("insert_deduplication_token", token)
        .with_setting("insert_deduplicate", "1")
        .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1");
    let Some(first) = batches.first() else {
        return Ok(());
    };
    match first.rows {
        Rows::Rides(_) => {
            let mut ins = ch.insert::<RideEventRow>("ride_events").await?;
            for b in batches {
                if let Rows::Rides(rows) = &b.rows {
                    for r in rows {
                        ins.write(r).await?;
                    }
                }
            }
            ins.end().await.context("insert into ride_events")?;
        }
        Rows::Locations(_) => {
            let mut ins = ch.insert::<DriverLocationRow>("driver_locations").await?;
            for b in batches {
                if let Rows::Locations(rows) = &b.rows {
                    for r in rows {
                        ins.write(r).await?;
                    }
                }
            }
            ins.end().await.context("insert into driver_locations")?;
        }
    }
    Ok(())
}
