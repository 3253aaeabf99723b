//! Per-partition batches and their exactly-once bookkeeping (pure, no I/O).
//!
//! A batch covers the contiguous offsets `first..=last` of one partition. Before it
//! is inserted (with the other partitions' batches of its round, see the module
//! above), its range is committed to Kafka as an *intent* (offset `first`, with
//! metadata `ridectl-ingest:FIRST-LAST`). If the process dies before the final
//! commit, the restart sees the intent and cuts the replayed batch at the same
//! `last`; the replay is inserted alone, with the token
//! `topic:partition:first:last`, unless its offsets are already in the table. A
//! round's token ([`round_token`]) covers a retried INSERT of the same round.

use std::time::Instant;

use super::rows::{DriverLocationRow, RideEventRow};
use crate::events::Rejection;

const INTENT_PREFIX: &str = "ridectl-ingest:";

/// The commit metadata announcing a batch.
pub fn intent_metadata(first: i64, last: i64) -> String {
    format!("{INTENT_PREFIX}{first}-{last}")
}

/// The `(first, last)` of an intent, if `metadata` is one.
pub fn parse_intent(metadata: &str) -> Option<(i64, i64)> {
    let (a, b) = metadata.strip_prefix(INTENT_PREFIX)?.split_once('-')?;
    let (first, last) = (a.parse().ok()?, b.parse().ok()?);
    (first <= last).then_some((first, last))
}

/// The deduplication token of a batch.
pub fn dedup_token(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}:{partition}:{first}:{last}")
}

/// The deduplication token of a round: every batch's range, in a stable order.
pub fn round_token<'a>(batches: impl Iterator<Item = (&'a str, i32, i64, i64)>) -> String {
    let mut parts: Vec<String> = batches
        .map(|(t, p, first, last)| dedup_token(t, p, first, last))
        .collect();
    parts.sort();
    let hash = twox_hash::XxHash3_64::oneshot(parts.join(",").as_bytes());
    format!("round:{}:{hash:016x}", parts.len())
}

/// A rejected message waiting for the dead-letter topic.
#[derive(Debug)]
pub struct DeadLetter {
    /// Offset of the original message.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its bytes, unchanged.
    pub payload: Vec<u8>,
    /// Why it was rejected.
    pub rejection: Rejection,
}

/// The rows of a batch: one table per source topic.
#[derive(Debug)]
pub enum Rows {
    /// `ride_events` rows.
    Rides(Vec<RideEventRow>),
    /// `driver_locations` rows.
    Locations(Vec<DriverLocationRow>),
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Rows::Rides(r) => r.len(),
            Rows::Locations(r) => r.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch being filled, then written.
#[derive(Debug)]
pub struct Batch {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// First offset covered.
    pub first: i64,
    /// Last offset covered.
    pub last: i64,
    /// When the first message arrived.
    pub started: Instant,
    /// Valid rows.
    pub rows: Rows,
    /// Rejected messages.
    pub dead: Vec<DeadLetter>,
    /// Cut the batch at this offset (replaying an intent).
    pub cut_at: Option<i64>,
    /// Replays an intent: written alone, after checking whether it landed.
    pub replayed: bool,
}

impl Batch {
    /// An empty batch starting at `offset`.
    pub fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        rides: bool,
        cut_at: Option<i64>,
    ) -> Batch {
        Batch {
            topic: topic.to_string(),
            partition,
            first: offset,
            last: offset - 1,
            started: Instant::now(),
            rows: if rides {
                Rows::Rides(Vec::new())
            } else {
                Rows::Locations(Vec::new())
            },
            dead: Vec::new(),
            cut_at: cut_at.filter(|c| *c >= offset),
            replayed: cut_at.is_some_and(|c| c >= offset),
        }
    }

    /// Messages covered (rows + dead letters).
    pub fn messages(&self) -> i64 {
        self.last - self.first + 1
    }

    /// The token of the insert.
    pub fn token(&self) -> String {
        dedup_token(&self.topic, self.partition, self.first, self.last)
    }

    /// True when the batch must be written now.
    pub fn is_full(&self, max_rows: u64, max_wait: std::time::Duration) -> bool {
        if self.messages() <= 0 {
            return false;
        }
        match self.cut_at {
            Some(cut) => self.last >= cut,
            None => self.messages() as u64 >= max_rows || self.started.elapsed() >= max_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip() {
        assert_eq!(parse_intent(&intent_metadata(100, 180)), Some((100, 180)));
        assert_eq!(parse_intent(""), None);
        assert_eq!(parse_intent("ridectl-ingest:9-3"), None);
        assert_eq!(parse_intent("something else"), None);
        assert_eq!(
            dedup_token("ride-events", 3, 100, 180),
            "ride-events:3:100:180"
        );
    }

    #[test]
    fn round_tokens_ignore_order_and_tell_compositions_apart() {
        let a = round_token([("t", 1, 0, 9), ("t", 0, 5, 7)].into_iter());
        let b = round_token([("t", 0, 5, 7), ("t", 1, 0, 9)].into_iter());
        let c = round_token([("t", 0, 5, 8), ("t", 1, 0, 9)].into_iter());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("round:2:"));
    }

    #[test]
    fn a_replayed_intent_cuts_at_the_same_offset_regardless_of_time_and_size() {
        let mut b = Batch::new("t", 0, 100, true, Some(180));
        b.last = 150;
        assert!(
            !b.is_full(10, std::time::Duration::ZERO),
            "not before the intent's end"
        );
        b.last = 180;
        assert!(b.is_full(1_000_000, std::time::Duration::from_secs(3600)));
        let mut fresh = Batch::new("t", 0, 0, true, None);
        assert!(
            !fresh.is_full(10, std::time::Duration::ZERO),
            "empty batches never flush"
        );
        fresh.last = 9;
        assert!(fresh.is_full(10, std::time::Duration::from_secs(3600)));
    }
}
