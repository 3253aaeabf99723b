//! `ridectl dlq`: what was set aside, and putting it back after a fix.
//!
//! Reads the dead-letter topic (or, with `late`, the late-events topic) from its
//! start to its current end without joining a group ([`crate::kafka::read`]), as
//! [`SideRecord`]s. A bad message is identified by its source coordinates, so copies
//! left by a writer's crash are counted once ([`crate::kafka::dlq`] explains why
//! there is one writer).
//!
//! Replay re-produces the original bytes and key to the source topic, with a
//! `ridectl-replay-of` header, and writes a replay marker to the side topic; both
//! in one Kafka transaction (`transactional.id` [`REPLAY_TRANSACTIONAL_ID`], so two
//! replayers fence each other). A message with a marker is never replayed again.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Serialize;

use crate::config::PipelineConfig;
use crate::kafka::dlq::{
    CONSUMER_HEADER, MARKER_HEADER, REASON_HEADER, REPLAY_OF_HEADER, SOURCE_OFFSET_HEADER,
    SOURCE_TOPIC_HEADER, SideKind, SideRecord,
};
use crate::kafka::{self, Role};
use crate::time::{EpochMillis, format_millis};

/// The `transactional.id` of the replayer.
pub const REPLAY_TRANSACTIONAL_ID: &str = "ridectl-dlq-replay";

/// Messages re-produced per transaction.
const REPLAY_CHUNK: usize = 500;

/// Which records a command looks at.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// The late-events topic instead of the dead-letter topic.
    pub late: bool,
    /// Only this reason.
    pub reason: Option<String>,
    /// Only records written at or after this time (epoch ms).
    pub since: Option<EpochMillis>,
}

impl Selection {
    /// The side topic this selection reads.
    pub fn topic<'a>(&self, cfg: &'a PipelineConfig) -> &'a str {
        if self.late {
            &cfg.topics.late_events.name
        } else {
            &cfg.topics.dead_letter.name
        }
    }

    fn matches(&self, r: &SideRecord) -> bool {
        let reason_ok = match (&self.reason, r.reason()) {
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let since_ok = match (self.since, r.timestamp) {
            (Some(since), Some(t)) => t >= since,
            (Some(_), None) => false,
            (None, _) => true,
        };
        reason_ok && since_ok
    }
}

/// Every record of the side topic of `sel` (unfiltered), oldest first per partition.
pub async fn read(
    cfg: &PipelineConfig,
    sel: &Selection,
    timeout: Duration,
) -> anyhow::Result<Vec<SideRecord>> {
    let k = cfg.kafka.clone();
    let topic = sel.topic(cfg).to_string();
    tokio::task::spawn_blocking(move || {
        kafka::read::scan_topic(&k, &topic, timeout, |m| SideRecord::from_message(m))
    })
    .await
    .context("the topic reader panicked")?
}

/// The set-aside records of `records` that `sel` picks, one per bad message (the
/// first copy), with whether each has been replayed.
pub fn select<'a>(records: &'a [SideRecord], sel: &Selection) -> Vec<(&'a SideRecord, bool)> {
    let replayed: HashSet<_> = records
        .iter()
        .filter(|r| matches!(r.kind, SideKind::ReplayMarker { .. }))
        .map(SideRecord::source_key)
        .collect();
    let mut seen = HashSet::new();
    records
        .iter()
        .filter(|r| r.reason().is_some() && sel.matches(r))
        .filter(|r| seen.insert(r.source_key()))
        .map(|r| (r, replayed.contains(&r.source_key())))
        .collect()
}

/// One line of `dlq stats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatRow {
    /// Reason header.
    pub reason: String,
    /// Source topic.
    pub source_topic: String,
    /// Distinct bad messages.
    pub messages: u64,
    /// Of which replayed.
    pub replayed: u64,
}

/// Counts per (reason, source topic).
pub fn stats(records: &[SideRecord], sel: &Selection) -> Vec<StatRow> {
    let mut by: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for (r, replayed) in select(records, sel) {
        let e = by
            .entry((
                r.reason().unwrap_or_default().to_string(),
                r.source_topic.clone(),
            ))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(replayed);
    }
    by.into_iter()
        .map(|((reason, source_topic), (messages, replayed))| StatRow {
            reason,
            source_topic,
            messages,
            replayed,
        })
        .collect()
}

/// One line of `dlq list`.
#[derive(Clone, Debug, Serialize)]
pub struct ListRow {
    /// When the record was written (ISO-8601), if known.
    pub time: Option<String>,
    /// `topic/partition/offset` of the original message.
    pub source: String,
    /// Reason.
    pub reason: String,
    /// Detail.
    pub detail: String,
    /// The consumer that set it aside.
    pub consumer: String,
    /// Replayed already.
    pub replayed: bool,
    /// The first bytes of the message (lossy UTF-8, at most `preview` bytes).
    pub preview: String,
    /// Its length in bytes.
    pub bytes: usize,
}

/// The newest `limit` selected records, newest last.
pub fn list(records: &[SideRecord], sel: &Selection, limit: usize, preview: usize) -> Vec<ListRow> {
    let mut rows: Vec<_> = select(records, sel);
    rows.sort_by_key(|(r, _)| (r.timestamp, r.partition, r.offset));
    let skip = rows.len().saturating_sub(limit);
    rows.into_iter()
        .skip(skip)
        .map(|(r, replayed)| {
            let cut = &r.payload[..r.payload.len().min(preview)];
            ListRow {
                time: r.timestamp.map(format_millis),
                source: format!(
                    "{}/{}/{}",
                    r.source_topic, r.source_partition, r.source_offset
                ),
                reason: r.reason().unwrap_or_default().to_string(),
                detail: r.detail.clone(),
                consumer: r.consumer.clone(),
                replayed,
                preview: String::from_utf8_lossy(cut).into_owned(),
                bytes: r.payload.len(),
            }
        })
        .collect()
}

/// What a replay did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplaySummary {
    /// Selected bad messages.
    pub selected: u64,
    /// Replayed before (skipped).
    pub already_replayed: u64,
    /// Re-produced now (0 in a dry run).
    pub replayed: u64,
    /// Would be re-produced (dry run) or were.
    pub candidates: u64,
    /// Per source topic, the messages re-produced (or that would be).
    pub by_topic: BTreeMap<String, u64>,
}

/// Replays the selected, not yet replayed messages (see the module docs);
/// `progress` is called after each transaction with the count so far.
pub async fn replay(
    cfg: &PipelineConfig,
    sel: &Selection,
    dry_run: bool,
    timeout: Duration,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<ReplaySummary> {
    let records = read(cfg, sel, timeout).await?;
    let picked = select(&records, sel);
    let mut s = ReplaySummary {
        selected: picked.len() as u64,
        ..ReplaySummary::default()
    };
    let todo: Vec<&SideRecord> = picked
        .iter()
        .filter(|(_, replayed)| !replayed)
        .map(|(r, _)| *r)
        .collect();
    s.already_replayed = s.selected - todo.len() as u64;
    s.candidates = todo.len() as u64;
    for r in &todo {
        *s.by_topic.entry(r.source_topic.clone()).or_default() += 1;
    }
    if dry_run || todo.is_empty() {
        return Ok(s);
    }
    let side_topic = sel.topic(cfg).to_string();
    let producer: FutureProducer = kafka::client_config(&cfg.kafka, Role::Producer)
        .set("transactional.id", REPLAY_TRANSACTIONAL_ID)
        .set("enable.idempotence", "true")
        .create()
        .context("cannot create the replay producer")?;
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.init_transactions(timeout))
        .await
        .context("init_transactions panicked")?
        .context("cannot start a Kafka transaction (is the transaction log available?)")?;
    let total = todo.len() as u64;
    for chunk in todo.chunks(REPLAY_CHUNK) {
        producer
            .begin_transaction()
            .context("cannot begin a transaction")?;
        let result = replay_chunk(&producer, &side_topic, chunk).await;
        match result {
            Ok(()) => {
                let p = producer.clone();
                tokio::task::spawn_blocking(move || p.commit_transaction(timeout))
                    .await
                    .context("commit_transaction panicked")?
                    .context("cannot commit the replay transaction (nothing of it is visible)")?;
            }
            Err(e) => {
                let p = producer.clone();
                let _ = tokio::task::spawn_blocking(move || p.abort_transaction(timeout)).await;
                return Err(
                    e.context("replay aborted (this transaction's messages are not visible)")
                );
            }
        }
        s.replayed += chunk.len() as u64;
        progress(s.replayed, total);
    }
    Ok(s)
}

/// Re-produces `chunk` and writes its markers, inside the open transaction.
async fn replay_chunk(
    producer: &FutureProducer,
    side_topic: &str,
    chunk: &[&SideRecord],
) -> anyhow::Result<()> {
    let mut copies = Vec::with_capacity(chunk.len());
    for r in chunk {
        let of = format!("{side_topic}/{}/{}", r.partition, r.offset);
        let headers = OwnedHeaders::new().insert(Header {
            key: REPLAY_OF_HEADER,
            value: Some(&of),
        });
        let mut record = FutureRecord::<[u8], [u8]>::to(&r.source_topic)
            .payload(r.payload.as_slice())
            .headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        copies.push(kafka::dlq::send_blocking(producer, record));
    }
    let mut markers = Vec::with_capacity(chunk.len());
    for (r, copy) in chunk.iter().zip(copies) {
        let delivered = copy
            .await
            .context("the producer closed")?
            .map_err(|(e, _)| anyhow::anyhow!("re-producing to {} failed: {e}", r.source_topic))?;
        let to = format!(
            "{}/{}/{}",
            r.source_topic, delivered.partition, delivered.offset
        );
        let source = format!("{}/{}", r.source_partition, r.source_offset);
        let headers = OwnedHeaders::new_with_capacity(5)
            .insert(Header {
                key: SOURCE_TOPIC_HEADER,
                value: Some(&r.source_topic),
            })
            .insert(Header {
                key: SOURCE_OFFSET_HEADER,
                value: Some(&source),
            })
            .insert(Header {
                key: MARKER_HEADER,
                value: Some(&to),
            })
            .insert(Header {
                key: REASON_HEADER,
                value: Some("replayed"),
            })
            .insert(Header {
                key: CONSUMER_HEADER,
                value: Some(REPLAY_TRANSACTIONAL_ID),
            });
        let mut record = FutureRecord::<[u8], [u8]>::to(side_topic).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_slice());
        }
        markers.push(kafka::dlq::send_blocking(producer, record));
    }
    for m in markers {
        m.await
            .context("the producer closed")?
            .map_err(|(e, _)| anyhow::anyhow!("writing a replay marker failed: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, src: i64, kind: SideKind, t: i64) -> SideRecord {
        SideRecord {
            partition: 0,
            offset,
            timestamp: Some(t),
            kind,
            detail: String::new(),
            source_topic: "ride-events".into(),
            source_partition: 1,
            source_offset: src,
            consumer: String::new(),
            key: None,
            payload: b"{oops".to_vec(),
        }
    }

    fn bad(reason: &str) -> SideKind {
        SideKind::SetAside {
            reason: reason.into(),
        }
    }

    #[test]
    fn copies_count_once_and_markers_mark_replayed() {
        let records = vec![
            rec(0, 10, bad("invalid_json"), 1_000),
            rec(1, 10, bad("invalid_json"), 1_001), // a crash copy
            rec(2, 11, bad("wrong_type"), 2_000),
            rec(3, 12, bad("invalid_json"), 3_000),
            rec(4, 10, SideKind::ReplayMarker { to: "x".into() }, 4_000),
        ];
        let all = Selection::default();
        let picked = select(&records, &all);
        assert_eq!(picked.len(), 3);
        assert!(picked[0].1 && !picked[1].1 && !picked[2].1);
        assert_eq!(
            stats(&records, &all),
            vec![
                StatRow {
                    reason: "invalid_json".into(),
                    source_topic: "ride-events".into(),
                    messages: 2,
                    replayed: 1
                },
                StatRow {
                    reason: "wrong_type".into(),
                    source_topic: "ride-events".into(),
                    messages: 1,
                    replayed: 0
                },
            ]
        );
        let since = Selection {
            since: Some(2_000),
            reason: Some("invalid_json".into()),
            ..Selection::default()
        };
        let rows = list(&records, &since, 10, 3);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source, "ride-events/1/12");
        assert_eq!(rows[0].preview, "{oo");
    }
}
