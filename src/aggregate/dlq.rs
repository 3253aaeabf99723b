//! Dead-letter and late-event producers: the original bytes and key, with headers
//! saying why ([`crate::events`] header names) and where the message came from.
//!
//! Production never blocks the consumer: each send returns a delivery future that
//! the sink awaits (re-sending on failure) before the offsets covering the message
//! are committed, so a dead letter is never lost; after a crash it may be written
//! twice (at-least-once).

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::events::{
    DETAIL_HEADER, REASON_HEADER, Rejection, SOURCE_OFFSET_HEADER, SOURCE_TOPIC_HEADER,
};
use crate::time::{EpochMillis, format_millis};

/// Header of a late event: the partition's finalized horizon it fell behind.
pub const WATERMARK_HEADER: &str = "ridectl-watermark";
/// Header of a late event: its event time.
pub const EVENT_TIME_HEADER: &str = "ridectl-event-time";
/// The reason header value of late events.
pub const LATE_REASON: &str = "late";

/// Where dead letters and late events go.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    dead_letter_topic: String,
    late_topic: String,
}

/// One message to re-route: its bytes and coordinates.
pub struct Source<'a> {
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

impl DeadLetters {
    /// Producers for the given topics.
    pub fn new(producer: FutureProducer, dead_letter_topic: &str, late_topic: &str) -> Self {
        DeadLetters {
            producer,
            dead_letter_topic: dead_letter_topic.to_string(),
            late_topic: late_topic.to_string(),
        }
    }

    fn source_headers(src: &Source<'_>) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(6)
            .insert(Header {
                key: SOURCE_TOPIC_HEADER,
                value: Some(src.topic),
            })
            .insert(Header {
                key: SOURCE_OFFSET_HEADER,
                value: Some(&format!("{}/{}", src.partition, src.offset)),
            })
    }

    /// Sends a rejected message to the dead-letter topic.
    pub fn dead_letter(&self, src: &Source<'_>, rejection: &Rejection) -> DeliveryFuture {
        let headers = Self::source_headers(src)
            .insert(Header {
                key: REASON_HEADER,
                value: Some(rejection.reason.as_str()),
            })
            .insert(Header {
                key: DETAIL_HEADER,
                value: Some(&rejection.detail),
            });
        self.send(&self.dead_letter_topic, src.key, src.payload, headers)
    }

    /// Sends a late event to the late-events topic.
    pub fn late(
        &self,
        src: &Source<'_>,
        event_time: EpochMillis,
        horizon: EpochMillis,
    ) -> DeliveryFuture {
        let headers = Self::source_headers(src)
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
            });
        self.send(&self.late_topic, src.key, src.payload, headers)
    }

    /// Sends a record, waiting while the local queue is full (never drops it).
    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> DeliveryFuture {
        let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        send_blocking(&self.producer, record)
    }
}

/// Enqueues a record, sleeping briefly while librdkafka's queue is full.
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

/// Re-sends a message whose delivery failed.
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
