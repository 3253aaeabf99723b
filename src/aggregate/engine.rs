//! The aggregation state machine: pure, deterministic, no I/O.
//!
//! The worker feeds it every consumed message ([`Engine::ingest`]) and calls
//! [`Engine::trigger`] every trigger interval; a trigger returns what must be made
//! durable (changed per-partition partial rows, newly seen riders, per-partition
//! progress) and the offsets that may be committed once it is. The golden tests drive
//! this type directly with explicit wall-clock values.
//!
//! State is kept per (Kafka partition, city, window) so that a revoked partition's
//! state is simply dropped and its new owner rebuilds it by replay (see
//! `docs/aggregate.md` for the whole recovery design).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;

use crate::config::AggregationConfig;
use crate::events::{Contract, EventType, Rejection};
use crate::time::EpochMillis;

use super::window::WindowSpec;

/// `finalized_until` of a partition closed by a bounded run: every window is final.
pub const CLOSED: EpochMillis = i64::MAX;

/// Fast hasher for the engine's small-key maps.
type Fast = foldhash::fast::FixedState;

/// The engine's settings, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Window length and slide.
    pub windows: WindowSpec,
    /// Allowed lateness: a partition's watermark is its highest event time minus this.
    pub watermark_delay: i64,
    /// Events further than this ahead of the wall clock are rejected.
    pub max_clock_skew: i64,
    /// A caught-up partition that received nothing for this long stops holding the
    /// watermark back.
    pub idle_timeout: i64,
}

impl EngineConfig {
    /// The engine settings of `aggregation` in pipeline.yaml.
    pub fn from_config(a: &AggregationConfig) -> Self {
        EngineConfig {
            windows: WindowSpec::new(a.window.as_millis_i64(), a.slide.as_millis_i64()),
            watermark_delay: a.watermark.as_millis_i64(),
            max_clock_skew: a.max_clock_skew.as_millis_i64(),
            idle_timeout: a.idle_partition_timeout.as_millis_i64(),
        }
    }
}

/// Event counts of one (partition, city, window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every event.
    pub total: u64,
    /// `requested` events.
    pub requests: u64,
    /// `accepted` events.
    pub accepted: u64,
    /// `started` events.
    pub started: u64,
    /// `completed` events.
    pub completions: u64,
    /// `cancelled` events.
    pub cancellations: u64,
}

impl Counts {
    fn add(&mut self, t: EventType) {
        self.total += 1;
        match t {
            EventType::Requested => self.requests += 1,
            EventType::Accepted => self.accepted += 1,
            EventType::Started => self.started += 1,
            EventType::Completed => self.completions += 1,
            EventType::Cancelled => self.cancellations += 1,
        }
    }
}

/// What happened to one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Ingest {
    /// Counted in at least one open window.
    Accepted,
    /// Below the partition's recorded progress and only in windows already final (or
    /// rejected): it was fully handled before a restart or rebalance; no side effect.
    Replayed,
    /// Every window of the event is already final: produce it to the late topic.
    Late {
        /// The event's time.
        event_time: EpochMillis,
        /// The partition's finalized horizon it fell behind.
        horizon: EpochMillis,
    },
    /// Malformed or out of range: produce it to the dead-letter topic.
    Rejected(Rejection),
    /// The partition is not assigned to this engine (or the offset was seen already).
    Ignored,
}

/// One changed (partition, city, window) partial aggregate, to upsert.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialRow {
    /// Kafka partition.
    pub partition: i32,
    /// City name.
    pub city: Arc<str>,
    /// Window start, epoch ms.
    pub window_start: EpochMillis,
    /// Window end (exclusive), epoch ms.
    pub window_end: EpochMillis,
    /// Event counts.
    pub counts: Counts,
    /// Sum of `estimated_fare`.
    pub fare_sum: f64,
    /// Number of fares summed.
    pub fare_count: u64,
    /// Replacement version: `epoch << 40 | next offset`; grows with the content
    /// within an epoch, and a recompute's epoch replaces everything before it.
    pub version: u64,
}

/// A rider seen for the first time in a (partition, city, window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiderRow<'a> {
    /// City name.
    pub city: &'a str,
    /// Window start, epoch ms.
    pub window_start: EpochMillis,
    /// Window end, epoch ms.
    pub window_end: EpochMillis,
    /// The rider.
    pub user_id: &'a str,
}

/// The riders of a trigger, compactly: user ids in one arena, 24 bytes per row
/// (a backfill trigger can carry a million of them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RiderRows {
    cities: Vec<Arc<str>>,
    arena: String,
    rows: Vec<PendingRider>,
    window_len: i64,
}

impl RiderRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows.
    pub fn iter(&self) -> impl Iterator<Item = RiderRow<'_>> {
        self.rows.iter().map(|r| RiderRow {
            city: &self.cities[r.city as usize],
            window_start: r.start,
            window_end: r.start + self.window_len,
            user_id: &self.arena[r.at as usize..(r.at + r.len) as usize],
        })
    }
}

/// A partition's progress, persisted every trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Kafka partition.
    pub partition: i32,
    /// Every window of this partition ending at or before this is final.
    pub finalized_until: EpochMillis,
    /// Offsets below this were processed in this epoch: after a restart, the horizon
    /// is held until the replay reaches it (the rebuilt state is then exactly the
    /// state that was recorded).
    pub position: i64,
    /// Offsets below this had their dead letters and late events produced (kept
    /// across recomputes, so history is not dead-lettered twice).
    pub effects_until: i64,
    /// Recompute generation (bumped by `--from`/`--from-beginning`).
    pub epoch: u32,
    /// Highest event time seen in the partition (`i64::MIN`: none).
    pub max_event_time: EpochMillis,
}

/// Everything a trigger asks the sink to make durable, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggerOutput {
    /// Riders first seen since the previous trigger.
    pub riders: RiderRows,
    /// Partials that changed since the previous trigger (final ones included).
    pub partials: Vec<PartialRow>,
    /// Progress of every owned partition.
    pub progress: Vec<Progress>,
    /// Offsets to commit once the above is durable: `(partition, next offset)`.
    pub commits: Vec<(i32, i64)>,
    /// The worker watermark used (None: not known yet).
    pub watermark: Option<EpochMillis>,
    /// Fresh events counted since the previous trigger, as `(event time bucket start,
    /// count)` in 10 ms buckets, for the output-latency metric.
    pub event_times: Vec<(EpochMillis, u64)>,
}

impl TriggerOutput {
    /// The distinct (city, window start, window end) of the changed partials.
    pub fn changed_windows(&self) -> Vec<(Arc<str>, EpochMillis, EpochMillis)> {
        let mut v: Vec<_> = self
            .partials
            .iter()
            .map(|p| (p.city.clone(), p.window_start, p.window_end))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Counters since the engine started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Messages consumed.
    pub consumed: u64,
    /// Events counted in at least one window.
    pub accepted: u64,
    /// Messages skipped as already processed before a restart/rebalance.
    pub replayed: u64,
    /// Late events per city.
    pub late: BTreeMap<String, u64>,
    /// Dead-lettered messages per reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

struct WindowState {
    counts: Counts,
    fare_sum: f64,
    fare_count: u64,
    /// 64-bit fingerprints (xxh3) of the riders seen; decides which riders to write.
    riders: HashSet<u64, Fast>,
    first_offset: i64,
    dirty: bool,
}

/// A rider to write: indexes into a string arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingRider {
    city: u32,
    start: EpochMillis,
    at: u32,
    len: u32,
}

struct PartitionState {
    windows: BTreeMap<(EpochMillis, u32), WindowState>,
    max_event_time: Option<EpochMillis>,
    finalized_until: EpochMillis,
    /// Offsets below this had their side effects produced before.
    replay_until: i64,
    /// The horizon does not move while the position is below this.
    hold_until: i64,
    epoch: u32,
    /// Next offset to process, once known.
    position: Option<i64>,
    /// Position at which the consumer reported end-of-partition, if still there.
    eof_at: Option<i64>,
    last_activity: EpochMillis,
    arena: String,
    new_riders: Vec<PendingRider>,
}

/// Recorded progress of a partition, read from ClickHouse on assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Windows ending at or before this are final (`i64::MIN`: none).
    pub finalized_until: EpochMillis,
    /// Offsets below this were processed in this epoch (see [`Progress::position`]).
    pub position: i64,
    /// Offsets below this had their side effects produced.
    pub effects_until: i64,
    /// Recompute generation.
    pub epoch: u32,
}

impl Default for Resume {
    fn default() -> Self {
        Resume {
            finalized_until: i64::MIN,
            position: 0,
            effects_until: 0,
            epoch: 0,
        }
    }
}

/// City names interned to small ids, with the late count of each.
#[derive(Default)]
struct Cities {
    ids: HashMap<Box<str>, u32, Fast>,
    names: Vec<Arc<str>>,
    late: Vec<u64>,
}

impl Cities {
    fn id(&mut self, city: &str) -> u32 {
        if let Some(&id) = self.ids.get(city) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(Arc::from(city));
        self.ids.insert(Box::from(city), id);
        self.late.push(0);
        id
    }
}

/// The windowed aggregation state machine of one worker.
pub struct Engine {
    cfg: EngineConfig,
    partitions: BTreeMap<i32, PartitionState>,
    cities: Cities,
    stats: EngineStats,
    event_times: Vec<(EpochMillis, u64)>,
}

fn fingerprint(s: &str) -> u64 {
    twox_hash::XxHash3_64::oneshot(s.as_bytes())
}

impl Engine {
    /// An engine with no partitions.
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            partitions: BTreeMap::new(),
            cities: Cities::default(),
            stats: EngineStats::default(),
            event_times: Vec::new(),
        }
    }

    /// Takes ownership of a partition, resuming from its recorded progress.
    /// `start` is the offset consumption starts from, when known; `now` the wall clock.
    pub fn assign(&mut self, partition: i32, resume: Resume, start: Option<i64>, now: EpochMillis) {
        self.partitions.insert(
            partition,
            PartitionState {
                windows: BTreeMap::new(),
                max_event_time: None,
                finalized_until: resume.finalized_until,
                replay_until: resume.effects_until.max(resume.position),
                hold_until: resume.position,
                epoch: resume.epoch,
                position: start,
                eof_at: None,
                last_activity: now,
                arena: String::new(),
                new_riders: Vec::new(),
            },
        );
    }

    /// Drops a partition and its state (it was revoked; its new owner replays it).
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// The owned partitions.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    /// The next offset to process of a partition, when known.
    pub fn position(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition).and_then(|p| p.position)
    }

    /// Records that the consumer reached the end of a partition at `offset`.
    pub fn partition_eof(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            if p.position.is_none_or(|pos| offset >= pos) {
                p.position = Some(offset);
            }
            p.eof_at = p.position;
        }
    }

    /// Whether the consumer reported the partition caught up at its position.
    pub fn caught_up(&self, partition: i32) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|p| p.eof_at.is_some() && p.eof_at == p.position)
    }

    /// Counters since start.
    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats.clone();
        for (name, n) in self.cities.names.iter().zip(&self.cities.late) {
            if *n > 0 {
                s.late.insert(name.to_string(), *n);
            }
        }
        s
    }

    /// Number of (partition, city, window) states held.
    pub fn open_windows(&self) -> usize {
        self.partitions.values().map(|p| p.windows.len()).sum()
    }

    /// Processes one message of `partition` at `offset`; `now` is the wall clock.
    pub fn ingest(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
        now: EpochMillis,
    ) -> Ingest {
        let Engine {
            cfg,
            partitions,
            cities,
            stats,
            event_times,
        } = self;
        let Some(p) = partitions.get_mut(&partition) else {
            return Ingest::Ignored;
        };
        p.position = Some(offset + 1);
        p.eof_at = None;
        p.last_activity = now;
        let replay = offset < p.replay_until;
        stats.consumed += 1;
        let reject = |stats: &mut EngineStats, r: Rejection| {
            if replay {
                stats.replayed += 1;
                return Ingest::Replayed;
            }
            *stats.rejected.entry(r.reason.as_str()).or_default() += 1;
            Ingest::Rejected(r)
        };

        let contract = Contract {
            max_clock_skew: cfg.max_clock_skew,
        };
        let ev = match contract.ride_event(payload, now) {
            Ok(ev) => ev,
            Err(r) => return reject(stats, r),
        };
        let t = ev.event_time;
        let w = cfg.windows;
        p.max_event_time = Some(p.max_event_time.map_or(t, |m| m.max(t)));
        let horizon = p.finalized_until;
        if w.last_end(t) <= horizon {
            if replay {
                stats.replayed += 1;
                return Ingest::Replayed;
            }
            let city = cities.id(&ev.city);
            cities.late[city as usize] += 1;
            return Ingest::Late {
                event_time: t,
                horizon,
            };
        }
        let city = cities.id(&ev.city);
        // A rider is counted when the event names one (the contract makes user_id
        // optional); a fare when it carries one.
        let user = ev.user_id.as_deref().filter(|u| !u.is_empty());
        let fp = user.map(fingerprint);
        // The user id is copied to the arena at most once per event, and only when a
        // window sees the rider for the first time.
        let mut arena_ref: Option<(u32, u32)> = None;
        for start in w.starts(t) {
            if start + w.len <= horizon {
                break; // this and older windows are final: update only the open ones
            }
            let ws = p
                .windows
                .entry((start, city))
                .or_insert_with(|| WindowState {
                    counts: Counts::default(),
                    fare_sum: 0.0,
                    fare_count: 0,
                    riders: HashSet::default(),
                    first_offset: offset,
                    dirty: false,
                });
            ws.counts.add(ev.event_type);
            if let Some(fare) = ev.estimated_fare {
                ws.fare_sum += fare;
                ws.fare_count += 1;
            }
            ws.dirty = true;
            let (Some(fp), Some(user)) = (fp, user) else {
                continue;
            };
            if ws.riders.insert(fp) {
                let (at, len) = *arena_ref.get_or_insert_with(|| {
                    let at = p.arena.len() as u32;
                    p.arena.push_str(user);
                    (at, user.len() as u32)
                });
                p.new_riders.push(PendingRider {
                    city,
                    start,
                    at,
                    len,
                });
            }
        }
        if !replay {
            let bucket = t - t.rem_euclid(10);
            match event_times.last_mut() {
                Some((b, n)) if *b == bucket => *n += 1,
                _ => event_times.push((bucket, 1)),
            }
        }
        stats.accepted += 1;
        Ingest::Accepted
    }

    /// The watermark of the worker at `now`: the minimum over the partitions that
    /// are not idle of (highest event time − delay); when every partition is idle,
    /// the maximum. `None` while a non-idle partition has seen no event.
    pub fn watermark(&self, now: EpochMillis) -> Option<EpochMillis> {
        let delay = self.cfg.watermark_delay;
        let mut active_min: Option<Option<EpochMillis>> = None;
        let mut all_max: Option<EpochMillis> = None;
        for p in self.partitions.values() {
            let wm = p.max_event_time.map(|m| m.saturating_sub(delay));
            if let Some(wm) = wm {
                all_max = Some(all_max.map_or(wm, |x| x.max(wm)));
            }
            if !self.is_idle(p, now) {
                active_min = Some(match (active_min, wm) {
                    (None, wm) => wm,
                    (Some(None), _) | (Some(_), None) => None,
                    (Some(Some(a)), Some(b)) => Some(a.min(b)),
                });
            }
        }
        match active_min {
            Some(wm) => wm,
            None => all_max,
        }
    }

    fn is_idle(&self, p: &PartitionState, now: EpochMillis) -> bool {
        p.eof_at.is_some()
            && p.eof_at == p.position
            && now - p.last_activity >= self.cfg.idle_timeout
    }

    /// Marks every owned partition closed: all its windows become final at the next
    /// trigger (bounded runs, after consuming to the end offsets).
    pub fn close_all(&mut self) {
        for p in self.partitions.values_mut() {
            p.finalized_until = CLOSED;
        }
    }

    /// Advances every partition's finalized horizon to the watermark, finalizes the
    /// windows it passed (dropping their state), and returns what changed.
    pub fn trigger(&mut self, now: EpochMillis) -> TriggerOutput {
        let wm = self.watermark(now);
        let w = self.cfg.windows;
        let mut out = TriggerOutput {
            watermark: wm,
            event_times: std::mem::take(&mut self.event_times),
            ..TriggerOutput::default()
        };
        let names = &self.cities.names;
        out.riders.cities = names.clone();
        out.riders.window_len = w.len;
        for (&partition, p) in self.partitions.iter_mut() {
            // While replaying what was processed before, the horizon stays where it
            // was recorded: the rebuilt state is exactly the state at that position.
            let replaying = p
                .position
                .map_or(p.hold_until > 0, |pos| pos < p.hold_until);
            if let (Some(wm), false) = (wm, replaying) {
                p.finalized_until = p.finalized_until.max(wm);
            }
            let horizon = p.finalized_until;
            let position = p.position.unwrap_or(0);
            let version = (u64::from(p.epoch) << 40) | position.max(0) as u64;
            let shift = out.riders.arena.len() as u32;
            out.riders.arena.push_str(&p.arena);
            out.riders
                .rows
                .extend(p.new_riders.drain(..).map(|r| PendingRider {
                    at: r.at + shift,
                    ..r
                }));
            p.arena.clear();
            // Windows with end <= horizon are final: split them off and drop them.
            let open = match horizon.checked_sub(w.len) {
                Some(last_final_start) => p.windows.split_off(&(last_final_start + 1, 0)),
                None => std::mem::take(&mut p.windows),
            };
            let finals = std::mem::replace(&mut p.windows, open);
            let emit = |(start, city): (EpochMillis, u32), ws: &WindowState| PartialRow {
                partition,
                city: names[city as usize].clone(),
                window_start: start,
                window_end: start + w.len,
                counts: ws.counts,
                fare_sum: ws.fare_sum,
                fare_count: ws.fare_count,
                version,
            };
            for (key, ws) in finals.iter().filter(|(_, ws)| ws.dirty) {
                out.partials.push(emit(*key, ws));
            }
            let mut commit = position;
            for (key, ws) in p.windows.iter_mut() {
                commit = commit.min(ws.first_offset);
                if ws.dirty {
                    out.partials.push(emit(*key, ws));
                    ws.dirty = false;
                }
            }
            if p.position.is_some() {
                out.commits.push((partition, commit));
            }
            out.progress.push(Progress {
                partition,
                finalized_until: horizon,
                position: p.position.unwrap_or(0).max(p.hold_until),
                effects_until: p.position.unwrap_or(0).max(p.replay_until),
                epoch: p.epoch,
                max_event_time: p.max_event_time.unwrap_or(i64::MIN),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RejectReason;

    const MIN: i64 = 60_000;
    const T0: i64 = 1_764_158_400_000; // 2025-11-26T12:00:00Z, a whole hour

    fn cfg() -> EngineConfig {
        EngineConfig {
            windows: WindowSpec::new(5 * MIN, MIN),
            watermark_delay: 30_000,
            max_clock_skew: 5 * MIN,
            idle_timeout: 10_000,
        }
    }

    fn ev(kind: &str, city: &str, user: &str, t: i64, fare: f64) -> Vec<u8> {
        format!(
            r#"{{"event_id":"e","event_type":"{kind}","ride_id":"r","timestamp":"{}","city":"{city}",
            "estimated_fare":{fare},"user_id":"{user}","pickup":{{"lat":1,"lng":1}},"dropoff":{{"lat":1,"lng":1}}}}"#,
            crate::time::format_millis(t)
        )
        .into_bytes()
    }

    fn engine(parts: &[i32]) -> Engine {
        let mut e = Engine::new(cfg());
        for &p in parts {
            e.assign(p, Resume::default(), Some(0), T0);
        }
        e
    }

    #[test]
    fn an_event_updates_its_five_windows() {
        let mut e = engine(&[0]);
        let now = T0 + 10 * MIN;
        assert_eq!(
            e.ingest(
                0,
                0,
                &ev("requested", "berlin", "u1", T0 + 150_000, 10.0),
                now
            ),
            Ingest::Accepted
        );
        let out = e.trigger(now);
        assert_eq!(out.partials.len(), 5);
        assert_eq!(out.riders.len(), 5);
        let starts: Vec<i64> = out.partials.iter().map(|p| p.window_start - T0).collect();
        assert_eq!(starts, vec![-2 * MIN, -MIN, 0, MIN, 2 * MIN]);
        assert!(out.partials.iter().all(|p| p.counts.requests == 1
            && p.fare_sum == 10.0
            && p.window_end - p.window_start == 5 * MIN));
        // Nothing changed: the next trigger writes nothing but progress.
        let out = e.trigger(now + 1000);
        assert!(out.partials.is_empty() && out.riders.is_empty());
        assert_eq!(out.progress.len(), 1);
    }

    #[test]
    fn riders_are_written_once_per_window() {
        let mut e = engine(&[0]);
        let now = T0 + 10 * MIN;
        for (i, user) in ["u1", "u2", "u1", "u1"].iter().enumerate() {
            e.ingest(
                0,
                i as i64,
                &ev("requested", "oslo", user, T0 + 1000, 1.0),
                now,
            );
        }
        let out = e.trigger(now);
        assert_eq!(out.riders.len(), 10, "2 riders x 5 windows");
        assert!(out.partials.iter().all(|p| p.counts.total == 4));
        e.ingest(0, 4, &ev("started", "oslo", "u2", T0 + 2000, 1.0), now);
        e.ingest(0, 5, &ev("started", "oslo", "u3", T0 + 2000, 1.0), now);
        let out = e.trigger(now);
        assert_eq!(out.riders.len(), 5);
        assert!(
            out.riders
                .iter()
                .all(|r| r.user_id == "u3" && r.city == "oslo")
        );
    }

    #[test]
    fn watermark_is_the_min_over_active_partitions_and_ignores_idle_ones() {
        let mut e = engine(&[0, 1]);
        let now = T0;
        e.ingest(0, 0, &ev("requested", "a", "u", T0 - 60_000, 1.0), now);
        assert_eq!(e.watermark(now), None, "partition 1 has seen nothing yet");
        e.ingest(1, 0, &ev("requested", "a", "u", T0 - 120_000, 1.0), now);
        assert_eq!(e.watermark(now), Some(T0 - 150_000));
        // Partition 1 is caught up; after the idle timeout it stops holding back.
        e.partition_eof(1, 1);
        assert_eq!(e.watermark(now + 9_999), Some(T0 - 150_000));
        assert_eq!(e.watermark(now + 10_000), Some(T0 - 90_000));
        // A partition with a backlog is never idle, however long it is quiet.
        e.partition_eof(0, 1);
        assert_eq!(
            e.watermark(now + 20_000),
            Some(T0 - 90_000),
            "all idle: max"
        );
        e.ingest(
            1,
            1,
            &ev("requested", "a", "u", T0 - 110_000, 1.0),
            now + 20_000,
        );
        assert_eq!(e.watermark(now + 20_000), Some(T0 - 140_000));
    }

    #[test]
    fn windows_finalize_when_the_watermark_passes_their_end() {
        let mut e = engine(&[0]);
        let now = T0 + 100 * MIN;
        e.ingest(0, 0, &ev("requested", "a", "u", T0 + 30_000, 2.0), now);
        let out = e.trigger(now);
        assert_eq!(out.partials.len(), 5);
        assert_eq!(
            out.commits,
            vec![(0, 0)],
            "windows open: commit stays at offset 0"
        );
        // Watermark = T0+1m+30s−30s = T0+1m: windows ending at or before it are final.
        e.ingest(0, 1, &ev("completed", "a", "u", T0 + 90_000, 2.0), now);
        let out = e.trigger(now);
        assert_eq!(out.watermark, Some(T0 + MIN));
        assert_eq!(out.progress[0].finalized_until, T0 + MIN);
        // Windows [T0-4m,T0+1m) is final: it did not change so no row; 5 more changed.
        assert_eq!(e.open_windows(), 5, "[T0-3m, T0+1m] remain open");
        assert_eq!(out.partials.len(), 5);
        assert_eq!(out.commits, vec![(0, 0)]);
        // Move far ahead: everything before is final, commit moves to the new event.
        e.ingest(0, 2, &ev("requested", "a", "u", T0 + 30 * MIN, 2.0), now);
        let out = e.trigger(now);
        assert_eq!(e.open_windows(), 5);
        assert_eq!(out.commits, vec![(0, 2)]);
    }

    #[test]
    fn late_events_are_reported_and_partially_late_ones_update_open_windows() {
        let mut e = engine(&[0]);
        let now = T0 + 100 * MIN;
        e.ingest(
            0,
            0,
            &ev("requested", "a", "u", T0 + 10 * MIN + 30_000, 1.0),
            now,
        );
        e.trigger(now); // horizon T0+10m
        let late = e.ingest(0, 1, &ev("requested", "a", "u", T0 + 5 * MIN - 1, 1.0), now);
        assert_eq!(
            late,
            Ingest::Late {
                event_time: T0 + 5 * MIN - 1,
                horizon: T0 + 10 * MIN
            }
        );
        assert_eq!(e.stats().late.get("a"), Some(&1));
        // At T0+7m: windows starting T0+3m..T0+5m end at or before T0+10m (final);
        // T0+6m and T0+7m are open.
        assert_eq!(
            e.ingest(0, 2, &ev("cancelled", "a", "u", T0 + 7 * MIN, 1.0), now),
            Ingest::Accepted
        );
        let out = e.trigger(now);
        let mut starts: Vec<i64> = out.partials.iter().map(|p| p.window_start - T0).collect();
        starts.sort();
        assert_eq!(starts, vec![6 * MIN, 7 * MIN]);
    }

    #[test]
    fn bad_input_is_rejected_with_its_reason_and_never_moves_the_watermark() {
        let mut e = engine(&[0]);
        let now = T0;
        let r = |x: Ingest| match x {
            Ingest::Rejected(r) => r.reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(r(e.ingest(0, 0, b"{oops", now)), RejectReason::InvalidJson);
        let future = ev("requested", "a", "u", now + 5 * MIN + 1, 1.0);
        assert_eq!(
            r(e.ingest(0, 1, &future, now)),
            RejectReason::TimestampOutOfRange
        );
        assert_eq!(e.watermark(now), None);
        let ok_skew = ev("requested", "a", "u", now + 5 * MIN, 1.0);
        assert_eq!(e.ingest(0, 2, &ok_skew, now), Ingest::Accepted);
        assert_eq!(e.stats().rejected.get("invalid_json"), Some(&1));
        assert_eq!(e.stats().rejected.get("timestamp_out_of_range"), Some(&1));
    }

    #[test]
    fn replay_below_recorded_progress_has_no_side_effects_and_rebuilds_open_windows() {
        // First life: offsets 0..3, trigger, horizon T0+1m.
        let now = T0 + 100 * MIN;
        let msgs = [
            ev("requested", "a", "u1", T0 - 2 * MIN, 3.0),
            b"garbage".to_vec(),
            ev("requested", "a", "u2", T0 + 30_000, 5.0),
            ev("accepted", "a", "u2", T0 + 90_000, 5.0),
        ];
        let mut e = engine(&[0]);
        for (o, m) in msgs.iter().enumerate() {
            e.ingest(0, o as i64, m, now);
        }
        let first = e.trigger(now);
        let progress = first.progress[0];
        let commit = first.commits[0].1;
        assert_eq!(commit, 0);
        // Restart: resume from the recorded progress, replay from the commit.
        let mut e2 = Engine::new(cfg());
        e2.assign(
            0,
            Resume {
                finalized_until: progress.finalized_until,
                position: progress.position,
                effects_until: progress.effects_until,
                epoch: 0,
            },
            Some(commit),
            now,
        );
        let outcomes: Vec<Ingest> = msgs
            .iter()
            .enumerate()
            .map(|(o, m)| e2.ingest(0, o as i64, m, now))
            .collect();
        assert_eq!(outcomes[1], Ingest::Replayed, "no second dead letter");
        let second = e2.trigger(now);
        // Same open windows, same content.
        let open = |o: &TriggerOutput| {
            let mut v: Vec<_> = o
                .partials
                .iter()
                .filter(|p| p.window_end > progress.finalized_until)
                .map(|p| (p.window_start, p.counts, p.fare_sum as i64))
                .collect();
            v.sort_by_key(|x| x.0);
            v
        };
        assert_eq!(open(&first), open(&second));
        assert_eq!(second.progress[0].finalized_until, progress.finalized_until);
    }

    #[test]
    fn close_all_finalizes_everything() {
        let mut e = engine(&[0, 3]);
        let now = T0 + 100 * MIN;
        e.ingest(0, 0, &ev("requested", "a", "u1", T0, 3.0), now);
        e.trigger(now);
        e.close_all();
        let out = e.trigger(now);
        assert_eq!(e.open_windows(), 0);
        assert!(out.progress.iter().all(|p| p.finalized_until == CLOSED));
        assert_eq!(out.commits, vec![(0, 1), (3, 0)]);
    }
}
