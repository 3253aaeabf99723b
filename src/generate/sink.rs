//! Where generated messages go: Kafka (one idempotent producer, every delivery
//! report counted), a JSON-lines file or stdout, or both.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};

use super::source::Kind;
use crate::config::PipelineConfig;
use crate::kafka::{Role, client_config};

/// A latency histogram with log-linear buckets (16 per power of two, about 4%
/// resolution), lock-free to record.
#[derive(Debug)]
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    max: AtomicU64,
}

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..(64 * SUB) as usize)
                .map(|_| AtomicU64::new(0))
                .collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        let shift = exp - SUB_BITS;
        let mantissa = (v >> shift) & (SUB - 1);
        (((u64::from(shift) + 1) << SUB_BITS) + mantissa) as usize
    }

    /// The smallest value of bucket `i`'s range and the range's width.
    fn bucket_low(i: usize) -> (u64, u64) {
        let i = i as u64;
        if i < SUB {
            return (i, 1);
        }
        let shift = (i >> SUB_BITS) - 1;
        let mantissa = i & (SUB - 1);
        ((SUB + mantissa) << shift, 1 << shift)
    }

    /// Records one value (microseconds, say).
    pub fn record(&self, v: u64) {
        if let Some(b) = self.buckets.get(Self::index(v)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The largest value recorded.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0..=1), the middle of its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let (low, width) = Self::bucket_low(i);
                return (low + width / 2).min(self.max());
            }
        }
        self.max()
    }
}

/// One counter per message kind, alone on its cache lines: the producing loop and
/// the delivery callback run on different cores and must not share lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PerKind([AtomicU64; 3]);

impl PerKind {
    /// Adds `n` for `kind`. Only the producing loop writes `attempted` and
    /// `bytes`, so for those a plain load and store (no locked instruction) would
    /// do; `fetch_add` on an unshared line costs about the same.
    #[inline]
    fn add(&self, kind: Kind, n: u64) {
        self.0[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, kind: Kind) -> u64 {
        self.0[kind as usize].load(Ordering::Relaxed)
    }
}

/// Counters per message kind, shared by the producing loop, the delivery
/// callback and the progress reporter.
#[derive(Debug, Default)]
pub struct Stats {
    attempted: PerKind,
    bytes: PerKind,
    delivered: PerKind,
    failed: PerKind,
    /// Delivery latency (enqueue to acknowledgement), microseconds.
    pub latency_us: Histogram,
    first_error: std::sync::Mutex<Option<String>>,
}

/// A snapshot of the counters of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Handed to the sink.
    pub attempted: u64,
    /// Acknowledged by the broker (or written to the file).
    pub delivered: u64,
    /// Finally failed (after the producer's retries), or not delivered by the end
    /// of the flush.
    pub failed: u64,
    /// Payload bytes attempted.
    pub bytes: u64,
}

impl Stats {
    /// Counts of one kind.
    pub fn counts(&self, kind: Kind) -> Counts {
        Counts {
            attempted: self.attempted.get(kind),
            delivered: self.delivered.get(kind),
            failed: self.failed.get(kind),
            bytes: self.bytes.get(kind),
        }
    }

    /// Counts over every kind.
    pub fn total(&self) -> Counts {
        Kind::ALL.iter().fold(Counts::default(), |a, &k| {
            let c = self.counts(k);
            Counts {
                attempted: a.attempted + c.attempted,
                delivered: a.delivered + c.delivered,
                failed: a.failed + c.failed,
                bytes: a.bytes + c.bytes,
            }
        })
    }

    #[inline]
    fn attempt(&self, kind: Kind, bytes: usize) {
        self.attempted.add(kind, 1);
        self.bytes.add(kind, bytes as u64);
    }

    #[inline]
    fn deliver(&self, kind: Kind) {
        self.delivered.add(kind, 1);
    }

    fn fail(&self, kind: Kind, n: u64, why: impl FnOnce() -> String) {
        self.failed.add(kind, n);
        if let Ok(mut e) = self.first_error.lock()
            && e.is_none()
        {
            *e = Some(why());
        }
    }

    /// The first delivery error seen, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Where messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Produce to the configured topics.
    Kafka,
    /// Write JSON lines to a file (`-`: stdout) instead of Kafka.
    File(PathBuf),
    /// Produce to Kafka and also write every message to the file.
    KafkaAndFile(PathBuf),
}

impl Output {
    /// True when a broker is needed.
    pub fn uses_kafka(&self) -> bool {
        matches!(self, Output::Kafka | Output::KafkaAndFile(_))
    }

    /// The file, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Output::Kafka => None,
            Output::File(p) | Output::KafkaAndFile(p) => Some(p),
        }
    }
}

/// The delivery callback: counts and measures every report.
struct DeliveryCounter {
    stats: Arc<Stats>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    /// The message's [`Kind`], as an index.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let kind = Kind::ALL[opaque.min(2)];
        match result {
            Ok(msg) => {
                self.stats.deliver(kind);
                // librdkafka's own enqueue timestamp: enqueue to acknowledgement, µs.
                // SAFETY: `msg` wraps a valid message for the duration of this call.
                let us = unsafe { rdkafka::bindings::rd_kafka_message_latency(msg.ptr()) };
                if us >= 0 {
                    self.stats.latency_us.record(us as u64);
                }
            }
            Err((e, _)) => self.stats.fail(kind, 1, || format!("delivery failed: {e}")),
        }
    }
}

/// A librdkafka topic handle, for the produce fast path.
struct TopicHandle(*mut rdkafka::bindings::rd_kafka_topic_t);

// SAFETY: librdkafka topic handles may be used from any thread.
unsafe impl Send for TopicHandle {}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_topic_new, destroyed once; messages in
        // flight hold their own references.
        unsafe { rdkafka::bindings::rd_kafka_topic_destroy(self.0) }
    }
}

/// The Kafka side: an idempotent producer configured from `kafka.producer`.
pub struct KafkaSink {
    // Declared before the producer: topic handles are released first.
    handles: [TopicHandle; 2],
    producer: ThreadedProducer<DeliveryCounter>,
    stats: Arc<Stats>,
    queue_full_waits: u64,
}

impl KafkaSink {
    /// A producer for `cfg` (`kafka.*`), writing ride events and malformed
    /// messages to `topics.ride_events` and locations to `topics.driver_locations`.
    pub fn new(cfg: &PipelineConfig, stats: Arc<Stats>) -> anyhow::Result<KafkaSink> {
        let mut cc = client_config(&cfg.kafka, Role::Producer);
        cc.set("client.id", "ridectl-generate");
        let producer: ThreadedProducer<DeliveryCounter> = cc
            .create_with_context(DeliveryCounter {
                stats: stats.clone(),
            })
            .context("cannot create the Kafka producer (check kafka.producer in pipeline.yaml)")?;
        let handle = |name: &str| -> anyhow::Result<TopicHandle> {
            let c = std::ffi::CString::new(name)
                .with_context(|| format!("topic name {name:?} contains a NUL byte"))?;
            // SAFETY: a valid client and NUL-terminated name; a null configuration
            // means the client's defaults.
            let rkt = unsafe {
                rdkafka::bindings::rd_kafka_topic_new(
                    producer.client().native_ptr(),
                    c.as_ptr(),
                    std::ptr::null_mut(),
                )
            };
            if rkt.is_null() {
                anyhow::bail!("cannot open topic {name} for producing");
            }
            Ok(TopicHandle(rkt))
        };
        Ok(KafkaSink {
            handles: [
                handle(&cfg.topics.ride_events.name)?,
                handle(&cfg.topics.driver_locations.name)?,
            ],
            producer,
            stats,
            queue_full_waits: 0,
        })
    }

    /// Enqueues one message (key ride_id or driver_id, partition by the key);
    /// waits while the producer's queue is full (never drops). Errors other than a
    /// full queue are counted as failures.
    ///
    /// This calls `rd_kafka_produce` with a topic handle opened once, rather than
    /// rdkafka's `send`, which allocates the topic name and looks the topic up for
    /// every message; the delivery report is the same (opaque = the [`Kind`]).
    pub fn send(&mut self, kind: Kind, key: &[u8], payload: &[u8]) {
        self.stats.attempt(kind, payload.len());
        let rkt = self.handles[usize::from(kind == Kind::Location)].0;
        let (key_ptr, key_len) = if key.is_empty() {
            (std::ptr::null(), 0)
        } else {
            (key.as_ptr().cast(), key.len())
        };
        loop {
            // SAFETY: `rkt` is a live handle of this producer; with MSG_F_COPY
            // librdkafka copies payload and key before returning, so the borrowed
            // slices outlive the call; the opaque is a plain integer.
            let rc = unsafe {
                rdkafka::bindings::rd_kafka_produce(
                    rkt,
                    rdkafka::producer::PARTITION_UA,
                    rdkafka::bindings::RD_KAFKA_MSG_F_COPY,
                    payload.as_ptr().cast_mut().cast(),
                    payload.len(),
                    key_ptr,
                    key_len,
                    kind as usize as *mut std::ffi::c_void,
                )
            };
            if rc == 0 {
                return;
            }
            // SAFETY: reads this thread's last librdkafka error.
            let err = RDKafkaErrorCode::from(unsafe { rdkafka::bindings::rd_kafka_last_error() });
            if err == RDKafkaErrorCode::QueueFull {
                self.queue_full_waits += 1;
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            self.stats
                .fail(kind, 1, || format!("cannot enqueue a message: {err}"));
            return;
        }
    }

    /// Waits up to `timeout` for every message to be acknowledged; whatever is
    /// still outstanding then is purged and counted as failed.
    pub fn flush(&mut self, timeout: Duration) {
        if self.producer.flush(timeout).is_err() {
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            // Purged messages get failing delivery reports: let them be counted.
            let _ = self.producer.flush(Duration::from_secs(2));
        }
        // The polling thread may still be running the callbacks of the last
        // reports it took off the queue: give it a moment to count them.
        let settle = std::time::Instant::now();
        while settle.elapsed() < Duration::from_secs(5) {
            let t = self.stats.total();
            if t.delivered + t.failed >= t.attempted {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Anything never reported is a failure too, never silently dropped.
        for kind in Kind::ALL {
            let c = self.stats.counts(kind);
            let missing = c.attempted.saturating_sub(c.delivered + c.failed);
            if missing > 0 {
                self.stats.fail(kind, missing, || {
                    "messages were not acknowledged before the flush timeout".into()
                });
            }
        }
    }

    /// How often the loop waited for room in the producer's queue.
    pub fn queue_full_waits(&self) -> u64 {
        self.queue_full_waits
    }
}

/// The file side: one message per line.
pub struct FileSink {
    out: BufWriter<Box<dyn Write + Send>>,
    path: PathBuf,
}

impl FileSink {
    /// Creates (truncates) `path`; `-` is stdout.
    pub fn create(path: &Path) -> anyhow::Result<FileSink> {
        let w: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
            )
        };
        Ok(FileSink {
            out: BufWriter::with_capacity(1 << 20, w),
            path: path.to_path_buf(),
        })
    }

    /// Writes one line.
    pub fn write(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        self.out
            .write_all(payload)
            .and_then(|()| self.out.write_all(b"\n"))
            .with_context(|| format!("cannot write to {}", self.path.display()))
    }

    /// Flushes buffered lines.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("cannot write to {}", self.path.display()))
    }
}

/// Kafka, a file, or both.
pub enum Sink {
    /// Produce only.
    Kafka(KafkaSink),
    /// Write only: a line written counts as delivered.
    File(FileSink, Arc<Stats>),
    /// Produce and write; deliveries are Kafka's.
    Both(KafkaSink, FileSink),
}

impl Sink {
    /// Sends one message.
    #[inline]
    pub fn send(&mut self, kind: Kind, key: &[u8], payload: &[u8]) -> anyhow::Result<()> {
        match self {
            Sink::Kafka(k) => k.send(kind, key, payload),
            Sink::File(f, stats) => {
                stats.attempt(kind, payload.len());
                f.write(payload)?;
                stats.deliver(kind);
            }
            Sink::Both(k, f) => {
                f.write(payload)?;
                k.send(kind, key, payload);
            }
        }
        Ok(())
    }

    /// Flushes: waits up to `timeout` for Kafka's acknowledgements.
    pub fn flush(&mut self, timeout: Duration) -> anyhow::Result<()> {
        match self {
            Sink::Kafka(k) => k.flush(timeout),
            Sink::File(f, _) => f.flush()?,
            Sink::Both(k, f) => {
                f.flush()?;
                k.flush(timeout);
            }
        }
        Ok(())
    }

    /// How often the loop waited for room in the producer's queue.
    pub fn queue_full_waits(&self) -> u64 {
        match self {
            Sink::Kafka(k) | Sink::Both(k, _) => k.queue_full_waits(),
            Sink::File(..) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.max(), 10_000);
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5000.0 - 1.0).abs() < 0.05, "{p50}");
        assert!((p99 / 9900.0 - 1.0).abs() < 0.05, "{p99}");
        for v in [0u64, 1, 15, 16, 17, 1000, 123_456_789, u64::MAX / 2] {
            let (low, width) = Histogram::bucket_low(Histogram::index(v));
            assert!(low <= v && v < low + width, "{v}: {low}+{width}");
        }
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
