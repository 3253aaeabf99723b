//! Reading a whole topic, bounded: every partition from its low watermark to the
//! high watermark it had when the read started, without joining a consumer group
//! or committing anything. Shared by `ridectl verify` (whole topics against
//! ClickHouse) and `ridectl dlq` (the side topics). Transactional producers (the dlq
//! replayer) are read committed, librdkafka's default.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::kafka::{self, Role};

/// One message read back.
#[derive(Clone, Debug)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Payload bytes (empty for a null payload).
    pub payload: Vec<u8>,
    /// Headers (values as UTF-8, lossily).
    pub headers: HashMap<String, String>,
}

/// Reads every message of `topic` present when the call starts (blocking), as
/// [`Record`]s. Fails if the topic does not exist or the read does not finish
/// within `timeout`.
pub fn read_topic(k: &KafkaConfig, topic: &str, timeout: Duration) -> anyhow::Result<Vec<Record>> {
    scan_topic(k, topic, timeout, |m| {
        Some(Record {
            partition: m.partition(),
            offset: m.offset(),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers: headers(m),
        })
    })
}

/// Reads every message of `topic` present when the call starts (blocking), keeping
/// what `keep` maps it to. Fails like [`read_topic`].
pub fn scan_topic<T>(
    k: &KafkaConfig,
    topic: &str,
    timeout: Duration,
    mut keep: impl FnMut(&BorrowedMessage<'_>) -> Option<T>,
) -> anyhow::Result<Vec<T>> {
    let started = Instant::now();
    let consumer: BaseConsumer = kafka::client_config(k, Role::Consumer)
        // Never used to join or commit: assign() only.
        .set("group.id", "ridectl-verify")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .context("cannot create the Kafka consumer")?;
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    let Some(t) = md.topics().first() else {
        bail!("topic {topic} not found");
    };
    if t.error().is_some() || t.partitions().is_empty() {
        bail!("topic {topic} does not exist");
    }
    let mut tpl = TopicPartitionList::new();
    // Partition -> the offset it must reach.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), timeout)
            .with_context(|| format!("cannot read the offsets of {topic}/{}", p.id()))?;
        if low < high {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))
                .context("bad start offset")?;
            ends.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer
        .assign(&tpl)
        .with_context(|| format!("cannot assign {topic}"))?;
    while !ends.is_empty() {
        if started.elapsed() > timeout {
            bail!(
                "reading {topic} did not finish within {timeout:?} ({} partitions left)",
                ends.len()
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let (p, o) = (m.partition(), m.offset());
                if ends.get(&p).is_some_and(|end| o < *end)
                    && let Some(t) = keep(&m)
                {
                    out.push(t);
                }
                if ends.get(&p).is_some_and(|end| o + 1 >= *end) {
                    ends.remove(&p);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                // At the high watermark (transaction markers may end a partition
                // without a message at end - 1).
                if let Ok(pos) = consumer.position()
                    && let Some(e) = pos.find_partition(topic, p)
                    && let (Offset::Offset(o), Some(end)) = (e.offset(), ends.get(&p))
                    && o >= *end
                {
                    ends.remove(&p);
                }
            }
            Some(Err(e)) => tracing::warn!("reading {topic}: {e}"),
        }
    }
    Ok(out)
}

/// A message's headers, values as UTF-8 (lossily).
pub fn headers(m: &BorrowedMessage<'_>) -> HashMap<String, String> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|x| {
                    let v = String::from_utf8_lossy(x.value.unwrap_or_default());
                    (x.key.to_string(), v.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}
