//! Side outputs of the consumers: dead letters (messages that break the wire
//! contract, [`crate::events`]) and late events (valid, but behind the aggregation
//! watermark). One header builder, one producer and one record model for every
//! consumer and for `ridectl dlq`.
//!
//! ## One dead letter per bad message
//!
//! Several consumer groups read `ride-events` (ingest, aggregate, the Spark engine,
//! whatever comes next); each validates with the same rules. If each wrote what it
//! rejects, the dead-letter topic would hold one copy per group. So exactly one
//! group **writes** dead letters: the ingest group (`ingest.group_id`), the stage of
//! record that reads every source topic and stores every valid message. Every other
//! consumer is an **observer**: it applies the same contract, skips what fails it
//! and counts it (`ridectl_aggregate_rejected_total`), but produces nothing. The
//! choice is made in one place, [`DeadLetterRole::for_group`], so a new consumer
//! cannot double the topic by accident: it is an observer unless it is the ingest
//! group. Within the writing group each partition has one owner, so each bad message
//! has one writer.
//!
//! Across a crash the writer is at-least-once (the record is produced before the
//! offset commit). Every record carries its source coordinates
//! (`ridectl-source-topic`, `ridectl-source-offset` = `partition/offset`), which
//! identify the bad message; readers ([`SideRecord::source_key`]) count a message
//! once however many copies a crash left.
//!
//! Late events have one writer by construction: lateness is the aggregation
//! worker's notion (its watermark), and only it routes them.
//!
//! ## Replays
//!
//! `ridectl dlq replay` re-produces a record's original bytes and key to its source
//! topic with a [`REPLAY_OF_HEADER`] naming the dead letter, and in the same Kafka
//! transaction writes a *replay marker* to the dead-letter topic itself (headers
//! only: [`MARKER_HEADER`] and the source coordinates). A replayed message whose
//! marker exists is never replayed again, and the transaction makes the pair atomic.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::events::Rejection;
use crate::time::{EpochMillis, format_millis};

/// Header: why the message was set aside (a [`crate::events::RejectReason`] or `late`).
pub const REASON_HEADER: &str = "ridectl-reason";
/// Header: what exactly was wrong, for humans.
pub const DETAIL_HEADER: &str = "ridectl-detail";
/// Header: the topic the message was read from.
pub const SOURCE_TOPIC_HEADER: &str = "ridectl-source-topic";
/// Header: `partition/offset` of the message in its source topic.
pub const SOURCE_OFFSET_HEADER: &str = "ridectl-source-offset";
/// Header: the consumer that set it aside (`group@host:pid`).
pub const CONSUMER_HEADER: &str = "ridectl-consumer";
/// Header of a late event: the partition's finalized horizon it fell behind.
pub const WATERMARK_HEADER: &str = "ridectl-watermark";
/// Header of a late event: its event time.
pub const EVENT_TIME_HEADER: &str = "ridectl-event-time";
/// Header of a re-produced message: `topic/partition/offset` of the dead letter it
/// replays.
pub const REPLAY_OF_HEADER: &str = "ridectl-replay-of";
/// Header of a replay marker in the dead-letter topic: `topic/partition/offset` of
/// the re-produced message.
pub const MARKER_HEADER: &str = "ridectl-replayed-to";
/// The reason header value of late events.
pub const LATE_REASON: &str = "late";

/// Whether a consumer group writes dead letters or only counts what it rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterRole {
    /// Produces each rejected message to the dead-letter topic.
    Writer,
    /// Skips and counts rejected messages; the writer group dead-letters them.
    Observer,
}

impl DeadLetterRole {
    /// The role of `group_id`: the writer is the ingest group, every other group
    /// observes (see the module docs).
    pub fn for_group(group_id: &str, ingest_group_id: &str) -> DeadLetterRole {
        if group_id == ingest_group_id {
            DeadLetterRole::Writer
        } else {
            DeadLetterRole::Observer
        }
    }
}

/// The name a consumer signs its side outputs with: `group@host:pid`.
pub fn consumer_name(group_id: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{group_id}@{host}:{}", std::process::id())
}

/// Where a message came from: its coordinates, key and bytes.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// Topic it was read from.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Kafka key, if any.
    pub key: Option<&'a [u8]>,
    /// The original value bytes.
    pub payload: &'a [u8],
}

/// The headers every side output carries: source coordinates and consumer.
fn origin_headers(origin: &Origin<'_>, consumer: &str) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(7)
        .insert(Header {
            key: SOURCE_TOPIC_HEADER,
            value: Some(origin.topic),
        })
        .insert(Header {
            key: SOURCE_OFFSET_HEADER,
            value: Some(&format!("{}/{}", origin.partition, origin.offset)),
        })
        .insert(Header {
            key: CONSUMER_HEADER,
            value: Some(consumer),
        })
}

/// The headers of a dead letter.
pub fn dead_letter_headers(origin: &Origin<'_>, consumer: &str, r: &Rejection) -> OwnedHeaders {
    origin_headers(origin, consumer)
        .insert(Header {
            key: REASON_HEADER,
            value: Some(r.reason.as_str()),
        })
        .insert(Header {
            key: DETAIL_HEADER,
            value: Some(&r.detail),
        })
}

/// The headers of a late event.
pub fn late_headers(
    origin: &Origin<'_>,
    consumer: &str,
    event_time: EpochMillis,
    horizon: EpochMillis,
) -> OwnedHeaders {
    origin_headers(origin, consumer)
        .insert(Header {
            key: REASON_HEADER,
            value: Some(LATE_REASON),
        })
        .insert(Header {
            key: WATERMARK_HEADER,
            value: Some(&format_millis(horizon)),
        })
        .insert(Header {
            key: EVENT_TIME_HEADER,
            value: Some(&format_millis(event_time)),
        })
}

/// The producer of side outputs for one consumer.
#[derive(Clone)]
pub struct SideOutputs {
    producer: FutureProducer,
    dead_letter_topic: String,
    late_topic: String,
    consumer: String,
}

impl SideOutputs {
    /// Side outputs to the given topics, signed with `consumer` ([`consumer_name`]).
    pub fn new(
        producer: FutureProducer,
        dead_letter_topic: &str,
        late_topic: &str,
        consumer: String,
    ) -> Self {
        SideOutputs {
            producer,
            dead_letter_topic: dead_letter_topic.to_string(),
            late_topic: late_topic.to_string(),
            consumer,
        }
    }

    /// Sends a rejected message to the dead-letter topic (original bytes and key).
    pub fn dead_letter(&self, origin: &Origin<'_>, rejection: &Rejection) -> DeliveryFuture {
        let headers = dead_letter_headers(origin, &self.consumer, rejection);
        self.send(&self.dead_letter_topic, origin, headers)
    }

    /// Sends a late event to the late-events topic (original bytes and key).
    pub fn late(
        &self,
        origin: &Origin<'_>,
        event_time: EpochMillis,
        horizon: EpochMillis,
    ) -> DeliveryFuture {
        let headers = late_headers(origin, &self.consumer, event_time, horizon);
        self.send(&self.late_topic, origin, headers)
    }

    fn send(&self, topic: &str, origin: &Origin<'_>, headers: OwnedHeaders) -> DeliveryFuture {
        let mut record = FutureRecord::to(topic)
            .payload(origin.payload)
            .headers(headers);
        if let Some(k) = origin.key {
            record = record.key(k);
        }
        send_blocking(&self.producer, record)
    }
}

/// Enqueues a record, sleeping briefly while librdkafka's queue is full (never drops
/// it).
pub fn send_blocking<K: rdkafka::message::ToBytes + ?Sized>(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, K, [u8]>,
) -> DeliveryFuture {
    loop {
        match producer.send_result(record) {
            Ok(f) => return f,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, r)) => {
                // Any other enqueue error (a bad topic name, a message too large) is
                // permanent for this record; wait and try again rather than lose it.
                tracing::warn!("cannot enqueue a message for {}: {e}; retrying", r.topic);
                record = r;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Re-sends a message whose delivery failed (same topic, key, bytes and headers).
pub fn resend(producer: &FutureProducer, msg: &OwnedMessage) -> DeliveryFuture {
    let mut record = FutureRecord::to(msg.topic()).payload(msg.payload().unwrap_or_default());
    if let Some(k) = msg.key() {
        record = record.key(k);
    }
    if let Some(h) = msg.headers() {
        record = record.headers(h.as_borrowed().detach());
    }
    send_blocking(producer, record)
}

/// What a record of the dead-letter or late topic is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideKind {
    /// A set-aside message (dead letter or late event), with its reason.
    SetAside {
        /// `ridectl-reason`.
        reason: String,
    },
    /// A replay marker: the message was re-produced to `to` (`topic/partition/offset`).
    ReplayMarker {
        /// Where the replayed copy went.
        to: String,
    },
}

/// One record of a side topic, as `ridectl dlq` reads it.
#[derive(Clone, Debug)]
pub struct SideRecord {
    /// Partition in the side topic.
    pub partition: i32,
    /// Offset in the side topic.
    pub offset: i64,
    /// Record timestamp (epoch ms), when the broker has one.
    pub timestamp: Option<EpochMillis>,
    /// Dead letter, late event or replay marker.
    pub kind: SideKind,
    /// `ridectl-detail` (dead letters), or the event time (late events).
    pub detail: String,
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: i32,
    /// Source offset.
    pub source_offset: i64,
    /// The consumer that set it aside ('' for records written before the header).
    pub consumer: String,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original bytes.
    pub payload: Vec<u8>,
}

impl SideRecord {
    /// Reads a record; `None` for one without ridectl's source headers (not ours).
    pub fn from_message<M: Message>(m: &M) -> Option<SideRecord> {
        let headers = m.headers()?;
        let get = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let source_topic = get(SOURCE_TOPIC_HEADER)?;
        let (p, o) = get(SOURCE_OFFSET_HEADER)?
            .split_once('/')
            .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))?;
        let kind = match get(MARKER_HEADER) {
            Some(to) => SideKind::ReplayMarker { to },
            None => SideKind::SetAside {
                reason: get(REASON_HEADER).unwrap_or_else(|| "unknown".into()),
            },
        };
        let detail = get(DETAIL_HEADER)
            .or_else(|| get(EVENT_TIME_HEADER).map(|t| format!("event time {t}")))
            .unwrap_or_default();
        Some(SideRecord {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            kind,
            detail,
            source_topic,
            source_partition: p,
            source_offset: o,
            consumer: get(CONSUMER_HEADER).unwrap_or_default(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().unwrap_or_default().to_vec(),
        })
    }

    /// The identity of the bad message: its source coordinates. Copies of one
    /// message (a writer's crash replay) share it.
    pub fn source_key(&self) -> (String, i32, i64) {
        (
            self.source_topic.clone(),
            self.source_partition,
            self.source_offset,
        )
    }

    /// The reason, for set-aside records.
    pub fn reason(&self) -> Option<&str> {
        match &self.kind {
            SideKind::SetAside { reason } => Some(reason),
            SideKind::ReplayMarker { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RejectReason;
    use rdkafka::Timestamp;

    #[test]
    fn only_the_ingest_group_writes_dead_letters() {
        let ingest = "ridectl-ingest";
        assert_eq!(
            DeadLetterRole::for_group(ingest, ingest),
            DeadLetterRole::Writer
        );
        for other in ["ridectl-aggregate", "ridectl-spark", "a-third-consumer"] {
            assert_eq!(
                DeadLetterRole::for_group(other, ingest),
                DeadLetterRole::Observer
            );
        }
    }

    #[test]
    fn a_dead_letter_reads_back_with_its_source_and_consumer() {
        let origin = Origin {
            topic: "ride-events",
            partition: 4,
            offset: 77,
            key: Some(b"ride-1"),
            payload: b"{not json",
        };
        let r = Rejection {
            reason: RejectReason::InvalidJson,
            detail: "key must be a string at line 1 column 2".into(),
        };
        let h = dead_letter_headers(&origin, "ridectl-ingest@h:1", &r);
        let m = OwnedMessage::new(
            Some(origin.payload.to_vec()),
            Some(b"ride-1".to_vec()),
            "ride-events-dlq".into(),
            Timestamp::CreateTime(1_000),
            2,
            9,
            Some(h),
        );
        let rec = SideRecord::from_message(&m).unwrap();
        assert_eq!(rec.reason(), Some("invalid_json"));
        assert_eq!(rec.source_key(), ("ride-events".to_string(), 4, 77));
        assert_eq!(rec.consumer, "ridectl-ingest@h:1");
        assert_eq!(rec.payload, b"{not json");
        assert_eq!((rec.partition, rec.offset), (2, 9));
    }
}
