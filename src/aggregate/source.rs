//! The consumer thread: a `BaseConsumer` polled on a dedicated OS thread that owns
//! the [`Engine`], routes bad and late messages, runs the triggers, hands their
//! output to the sink task and commits what the sink acknowledged.
//!
//! Rebalances are handled inside the consumer's callbacks, before partitions change
//! hands: on revoke the worker flushes (trigger → sink → commit) and drops the
//! partitions' state; on assign it reads their recorded progress from ClickHouse and
//! resumes from the committed offsets (replaying the open windows).

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::DeliveryFuture;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;

use crate::kafka::dlq::{DeadLetterRole, Origin, SideOutputs};
use super::engine::{Engine, Ingest};
use super::metrics::{Metrics, Snapshot};
use super::sink::{self, Ack, Batch};
use crate::throttle::{LogThrottle, held_back};
use crate::time::{EpochMillis, now_millis};

/// A repeated Kafka error is logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// Errors returned by poll() (the consumer thread's own).
static POLL_ERRORS: LogThrottle = LogThrottle::new(ERROR_LOG_EVERY);

/// How long a revoke or a shutdown waits for the sink before giving up (the state is
/// then simply replayed by the next owner).
const FLUSH_WAIT: Duration = Duration::from_secs(8);
/// Messages between two checks of the clock, the sink's answers and the bounded end.
const HOUSEKEEPING_EVERY: usize = 256;
/// Events consumed since the last trigger above which consumption pauses while the
/// sink is still busy with the previous batch (bounds memory during backfills).
const BACKLOG_LIMIT: u64 = 200_000;

/// What the consumer thread needs.
pub struct SourceParts {
    /// The engine (no partitions yet).
    pub engine: Engine,
    /// Dead-letter and late producers.
    pub side_outputs: SideOutputs,
    /// Whether rejected messages are dead-lettered here or only counted
    /// ([`DeadLetterRole`]: the ingest group writes them).
    pub dead_letter_role: DeadLetterRole,
    /// Batches to the sink task.
    pub batches: tokio::sync::mpsc::Sender<Batch>,
    /// The sink's answers, in order.
    pub acks: Receiver<anyhow::Result<Ack>>,
    /// ClickHouse, to read progress on assignment.
    pub ch: clickhouse::Client,
    /// The runtime the ClickHouse client runs on.
    pub rt: Handle,
    /// Consumer group.
    pub group_id: String,
    /// Input topic.
    pub topic: String,
    /// Its partition count.
    pub topic_partitions: i32,
    /// Bounded run: the end offset of every partition, recorded at start.
    pub ends: Option<HashMap<i32, i64>>,
    /// Trigger interval.
    pub trigger: Duration,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
    /// Set on SIGINT/SIGTERM.
    pub shutdown: Arc<AtomicBool>,
}

/// How the consumer thread ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A bounded run consumed to its end offsets and made everything durable.
    Bounded,
    /// Stopped by a signal after a final flush and commit.
    Stopped,
    /// Stopped by a signal; the final flush did not complete in time (nothing lost:
    /// the offsets were not committed).
    StoppedUnflushed,
}

struct Worker {
    p: SourceParts,
    side_effects: Vec<DeliveryFuture>,
    in_flight: Option<Instant>,
    paused: bool,
    /// Messages consumed since the last trigger.
    pending: u64,
    closing: bool,
    committed: BTreeMap<i32, i64>,
    topic_c: CString,
}

/// The consumer context: the worker state, reachable from the rebalance callbacks.
pub struct Ctx {
    worker: Mutex<Worker>,
    /// librdkafka's errors, repeated on every poll while a broker is down.
    errors: LogThrottle,
}

impl ClientContext for Ctx {
    fn error(&self, error: KafkaError, reason: &str) {
        // End-of-partition events sometimes arrive here, without their partition;
        // caught-up partitions are also detected from the high watermark.
        if let KafkaError::Global(RDKafkaErrorCode::PartitionEOF) | KafkaError::PartitionEOF(_) =
            error
        {
            return;
        }
        if let Some(held) = self.errors.allow() {
            tracing::error!("librdkafka: {error}: {reason}{}", held_back(held));
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let parts = partitions_of(tpl);
                self.lock().on_revoke(consumer, &parts);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts = partitions_of(tpl);
            self.lock().on_assign(consumer, &parts);
        }
    }
}

impl Ctx {
    fn lock(&self) -> MutexGuard<'_, Worker> {
        // A panic while holding the lock aborts the thread anyway; keep going.
        self.worker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// Builds the consumer context.
pub fn context(parts: SourceParts) -> anyhow::Result<Ctx> {
    let topic_c = CString::new(parts.topic.clone()).context("topic name has a NUL byte")?;
    Ok(Ctx {
        worker: Mutex::new(Worker {
            p: parts,
            side_effects: Vec::new(),
            in_flight: None,
            paused: false,
            pending: 0,
            closing: false,
            committed: BTreeMap::new(),
            topic_c,
        }),
        errors: LogThrottle::new(ERROR_LOG_EVERY),
    })
}

impl Worker {
    fn handle(&mut self, m: &BorrowedMessage<'_>, now: EpochMillis) {
        self.pending += 1;
        let payload = m.payload().unwrap_or_default();
        let (partition, offset) = (m.partition(), m.offset());
        match self.p.engine.ingest(partition, offset, payload, now) {
            Ingest::Accepted | Ingest::Replayed | Ingest::Ignored => {}
            Ingest::Rejected(r) => {
                if self.p.dead_letter_role == DeadLetterRole::Writer {
                    let src = self.source(m, payload);
                    let f = self.p.side_outputs.dead_letter(&src, &r);
                    self.side_effects.push(f);
                }
            }
            Ingest::Late {
                event_time,
                horizon,
            } => {
                let src = self.source(m, payload);
                let f = self.p.side_outputs.late(&src, event_time, horizon);
                self.side_effects.push(f);
            }
        }
    }

    fn source<'a>(&'a self, m: &'a BorrowedMessage<'a>, payload: &'a [u8]) -> Origin<'a> {
        Origin {
            topic: &self.p.topic,
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload,
        }
    }

    /// The high watermark librdkafka last saw for a partition (no network call).
    fn cached_high_watermark(&self, consumer: &BaseConsumer<Ctx>, partition: i32) -> Option<i64> {
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid for the consumer's lifetime, the topic
        // is a NUL-terminated string that outlives the call, and the out-parameters
        // point to live locals.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                consumer.client().native_ptr(),
                self.topic_c.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }

    fn on_eof(&mut self, consumer: &BaseConsumer<Ctx>, partition: i32) {
        let at = self
            .cached_high_watermark(consumer, partition)
            .or_else(|| self.p.engine.position(partition));
        if let Some(at) = at {
            self.p.engine.partition_eof(partition, at);
        }
    }

    /// Runs a trigger and hands its output to the sink. `finalize_all`: the last
    /// trigger of a bounded run (emit every window that is final topic-wide).
    fn trigger(&mut self, consumer: &BaseConsumer<Ctx>, finalize_all: bool) {
        let now = now_millis();
        self.pending = 0;
        // A partition whose position reached the high watermark is caught up.
        for p in self.p.engine.partitions() {
            if let Some(hw) = self.cached_high_watermark(consumer, p)
                && Some(hw) == self.p.engine.position(p)
                && !self.p.engine.caught_up(p)
            {
                self.p.engine.partition_eof(p, hw);
            }
        }
        let output = self.p.engine.trigger(now);
        self.publish(consumer, output.watermark);
        let owns_first = self.p.engine.partitions().first() == Some(&0);
        let batch = Batch {
            output,
            side_effects: std::mem::take(&mut self.side_effects),
            finalize: owns_first || finalize_all,
            topic_partitions: self.p.topic_partitions,
        };
        if self.p.batches.blocking_send(batch).is_err() {
            tracing::error!("the sink task is gone; no more output");
            return;
        }
        self.in_flight = Some(Instant::now());
    }

    fn publish(&self, consumer: &BaseConsumer<Ctx>, watermark: Option<EpochMillis>) {
        let e = &self.p.engine;
        let lag = e
            .partitions()
            .into_iter()
            .filter_map(|p| {
                let hw = self.cached_high_watermark(consumer, p)?;
                Some((p, (hw - e.position(p).unwrap_or(hw)).max(0)))
            })
            .collect();
        self.p.metrics.publish(Snapshot {
            stats: e.stats(),
            watermark,
            open_windows: e.open_windows(),
            lag,
        });
    }

    /// Takes the sink's answer if there is one (waiting up to `wait`) and commits
    /// its offsets (asynchronously; [`Worker::flush`] commits synchronously).
    /// Returns it (None: none arrived).
    fn take_ack(&mut self, consumer: &BaseConsumer<Ctx>, wait: Duration) -> Option<Ack> {
        self.take_ack_with(consumer, wait, CommitMode::Async)
    }

    fn take_ack_with(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        wait: Duration,
        mode: CommitMode,
    ) -> Option<Ack> {
        self.in_flight?;
        let ack = if wait.is_zero() {
            match self.p.acks.try_recv() {
                Ok(a) => a,
                Err(_) => return None,
            }
        } else {
            match self.p.acks.recv_timeout(wait) {
                Ok(a) => a,
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    self.in_flight = None;
                    return None;
                }
            }
        };
        self.in_flight = None;
        if self.paused {
            if let Ok(tpl) = consumer.assignment() {
                let _ = consumer.resume(&tpl);
            }
            self.paused = false;
        }
        match ack {
            Ok(ack) => {
                self.commit(consumer, &ack.commits, mode);
                Some(ack)
            }
            Err(e) => {
                tracing::warn!("output not made durable: {e:#}");
                None
            }
        }
    }

    /// Commits the offsets of owned partitions: asynchronously only those that
    /// changed; synchronously all of them (the last commit before a hand-over or exit
    /// must not be left in flight).
    fn commit(&mut self, consumer: &BaseConsumer<Ctx>, offsets: &[(i32, i64)], mode: CommitMode) {
        let owned = self.p.engine.partitions();
        let sync = matches!(mode, CommitMode::Sync);
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in offsets {
            if owned.contains(&p) && (sync || self.committed.get(&p) != Some(&o)) {
                let _ = tpl.add_partition_offset(&self.p.topic, p, Offset::Offset(o));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                for &(p, o) in offsets {
                    if owned.contains(&p) {
                        self.committed.insert(p, o);
                    }
                }
            }
            Err(e) => tracing::warn!("offset commit failed (the next one covers it): {e}"),
        }
    }

    /// Triggers once more and waits for the sink, then commits synchronously.
    /// Returns the ack, or None when the sink did not answer within `wait`.
    fn flush(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        finalize_all: bool,
        wait: Option<Duration>,
    ) -> Option<Ack> {
        let deadline = wait.map(|w| Instant::now() + w);
        let remaining = || {
            deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            })
        };
        while self.in_flight.is_some() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            self.take_ack(consumer, remaining().min(Duration::from_millis(200)));
        }
        self.trigger(consumer, finalize_all);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) || self.in_flight.is_none() {
                return None;
            }
            let wait = remaining().min(Duration::from_millis(200));
            if let Some(ack) = self.take_ack_with(consumer, wait, CommitMode::Sync) {
                return Some(ack);
            }
        }
    }

    fn on_revoke(&mut self, consumer: &BaseConsumer<Ctx>, parts: &[i32]) {
        if self.closing {
            return;
        }
        tracing::info!("partitions revoked: {parts:?}; flushing before handing them over");
        if self.flush(consumer, false, Some(FLUSH_WAIT)).is_none() {
            tracing::warn!(
                "could not flush within {FLUSH_WAIT:?}; the next owner replays from the last commit"
            );
        }
        for p in parts {
            self.p.engine.revoke(*p);
            self.committed.remove(p);
        }
    }

    fn on_assign(&mut self, consumer: &BaseConsumer<Ctx>, parts: &[i32]) {
        if parts.is_empty() || self.closing {
            return;
        }
        let resume = loop {
            let read = self.p.rt.block_on(sink::read_progress(
                &self.p.ch,
                &self.p.group_id,
                &self.p.topic,
                parts,
            ));
            match read {
                Ok(r) => break r,
                Err(e) if self.p.shutdown.load(Ordering::Relaxed) => {
                    tracing::warn!("cannot read progress while stopping: {e:#}");
                    return;
                }
                Err(e) => {
                    tracing::warn!("cannot read progress, retrying: {e:#}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            let _ = tpl.add_partition(&self.p.topic, *p);
        }
        let committed: HashMap<i32, i64> =
            match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
                Ok(t) => t
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(
                        "cannot read committed offsets ({e}); positions learnt from messages"
                    );
                    HashMap::new()
                }
            };
        let now = now_millis();
        for p in parts {
            let r = resume.get(p).copied().unwrap_or_default();
            let start = committed.get(p).copied();
            self.p.engine.assign(*p, r, start, now);
            if let Some(o) = start {
                self.committed.insert(*p, o);
            }
        }
        tracing::info!(
            "partitions assigned: {parts:?} (resuming from committed offsets {:?})",
            committed
        );
    }

    /// Bounded runs, for a worker that owns no partition: the group's committed
    /// offsets reached the end offsets of every partition (others did the work).
    fn group_reached_ends(&self, consumer: &BaseConsumer<Ctx>) -> bool {
        let Some(ends) = &self.p.ends else {
            return false;
        };
        let mut tpl = TopicPartitionList::new();
        for p in ends.keys() {
            let _ = tpl.add_partition(&self.p.topic, *p);
        }
        let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
            return false;
        };
        committed.elements().iter().all(|e| {
            let end = ends.get(&e.partition()).copied().unwrap_or(0);
            match e.offset() {
                Offset::Offset(o) => o >= end,
                _ => end == 0,
            }
        })
    }

    /// Bounded runs: every owned partition reached its end offset.
    fn bounded_done(&self) -> bool {
        let Some(ends) = &self.p.ends else {
            return false;
        };
        let parts = self.p.engine.partitions();
        !parts.is_empty()
            && parts.iter().all(|p| {
                let end = ends.get(p).copied().unwrap_or(0);
                self.p.engine.position(*p).is_some_and(|pos| pos >= end)
            })
    }
}

/// Runs the consumer loop until the end of a bounded run or a shutdown signal.
pub fn run(consumer: BaseConsumer<Ctx>) -> anyhow::Result<Ending> {
    let ctx = consumer.context().clone();
    let (topic, shutdown, bounded, trigger) = {
        let w = ctx.lock();
        let p = &w.p;
        (
            p.topic.clone(),
            p.shutdown.clone(),
            p.ends.is_some(),
            p.trigger,
        )
    };
    consumer
        .subscribe(&[&topic])
        .with_context(|| format!("cannot subscribe to {topic}"))?;
    let mut next_trigger = Instant::now() + trigger;
    let stall_after = (trigger * 5).max(Duration::from_millis(5000));
    let mut since_housekeeping = 0usize;
    loop {
        if shutdown.load(Ordering::Relaxed) {
            tracing::info!("stopping: flushing and committing");
            return Ok(finish(ctx.lock(), &consumer, false, Ending::Stopped));
        }
        let timeout = next_trigger
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        // Never poll with the worker locked: rebalance callbacks run inside poll()
        // and lock it themselves.
        let item = consumer.poll(timeout);
        let mut w = ctx.lock();
        let idle = match item {
            Some(Ok(m)) => {
                w.handle(&m, now_millis());
                false
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                w.on_eof(&consumer, p);
                true
            }
            Some(Err(e)) => {
                if let Some(held) = POLL_ERRORS.allow() {
                    tracing::warn!(
                        "consumer error (librdkafka retries): {e}{}",
                        held_back(held)
                    );
                }
                true
            }
            None => true,
        };
        since_housekeeping += 1;
        if !idle && since_housekeeping < HOUSEKEEPING_EVERY {
            continue;
        }
        since_housekeeping = 0;
        w.take_ack(&consumer, Duration::ZERO);
        let mut triggered = false;
        if Instant::now() >= next_trigger {
            next_trigger = Instant::now() + trigger;
            if w.in_flight.is_none() {
                w.trigger(&consumer, false);
                triggered = true;
            }
        }
        if let Some(since) = w.in_flight
            && !w.paused
        {
            let stalled = since.elapsed() > stall_after;
            if stalled || w.pending >= BACKLOG_LIMIT {
                if stalled {
                    tracing::warn!("output is stalled; pausing consumption until it recovers");
                }
                if let Ok(tpl) = consumer.assignment() {
                    let _ = consumer.pause(&tpl);
                }
                w.paused = true;
            }
        }
        if bounded && w.bounded_done() {
            tracing::info!("bounded run: end offsets reached; finalizing every window");
            w.p.engine.close_all();
            return Ok(finish(w, &consumer, true, Ending::Bounded));
        }
        if bounded && triggered && w.p.engine.partitions().is_empty() {
            // No partitions for this worker. The trigger just sent reports the
            // topic-wide horizon in its ack: done when every partition is closed and
            // the group consumed up to the end offsets recorded at start.
            let closed = w
                .take_ack(&consumer, FLUSH_WAIT)
                .is_some_and(|ack| sink::all_closed(ack.horizon));
            if closed && w.group_reached_ends(&consumer) {
                return Ok(finish(w, &consumer, true, Ending::Bounded));
            }
        }
    }
}

/// The last flush and commit, then leaving the group. A bounded run (`bounded`:
/// finalizer, no deadline) waits for the sink as long as it takes, a stop for at
/// most [`FLUSH_WAIT`]; `StoppedUnflushed` when the sink did not confirm.
fn finish(
    mut w: MutexGuard<'_, Worker>,
    consumer: &BaseConsumer<Ctx>,
    bounded: bool,
    done: Ending,
) -> Ending {
    let wait = (!bounded).then_some(FLUSH_WAIT);
    let flushed = w.flush(consumer, bounded, wait).is_some();
    w.closing = true;
    drop(w);
    consumer.unsubscribe();
    if flushed {
        done
    } else {
        Ending::StoppedUnflushed
    }
}
