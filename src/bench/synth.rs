//! A small deterministic ride-event source for the aggregation benchmark and tests:
//! a fixed seed gives the same events, in event-time order, with a realistic mix of
//! lifecycle steps, several cities and rides spanning windows. (`ridectl generate`
//! is the full generator; this one exists so the benchmark needs nothing else.)

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::events::{CancelledBy, EventType, LatLng, RideEvent, SCHEMA_VERSION};
use crate::time::{EpochMillis, format_millis};

/// SplitMix64: tiny, fast, and stable across crate versions.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `[lo, hi]`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// Random seed.
    pub seed: u64,
    /// Event time of the first ride request.
    pub start: EpochMillis,
    /// Ride requests per second of event time.
    pub requests_per_sec: f64,
    /// Cities: (name, rider pool size, relative weight).
    pub cities: Vec<(String, u32, f64)>,
}

impl SynthConfig {
    /// Five cities; about `events_per_min` events per minute of event time.
    pub fn new(seed: u64, start: EpochMillis, events_per_min: f64) -> Self {
        let cities = [
            ("berlin", 3000, 0.35),
            ("vienna", 2000, 0.25),
            ("prague", 1500, 0.2),
            ("warsaw", 1000, 0.15),
            ("bratislava", 300, 0.05),
        ];
        SynthConfig {
            seed,
            start,
            // A ride produces 3.8 events on average.
            requests_per_sec: events_per_min / 60.0 / 3.8,
            cities: cities
                .iter()
                .map(|(n, r, w)| (n.to_string(), *r, *w))
                .collect(),
        }
    }
}

/// One generated event: its Kafka key (ride id), JSON value and event time.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthEvent {
    /// Kafka key.
    pub key: String,
    /// JSON value.
    pub json: String,
    /// Event time.
    pub time: EpochMillis,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    time: EpochMillis,
    seq: u64,
    ride: u64,
    city: usize,
    user: u32,
    fare_cents: i64,
    kind: u8,
    /// Remaining steps: 0 = none after this one.
    next: u8,
}

/// An endless, deterministic stream of ride events in event-time order.
pub struct Synth {
    cfg: SynthConfig,
    rng: SplitMix,
    heap: BinaryHeap<Reverse<Pending>>,
    next_request: f64,
    rides: u64,
    seq: u64,
    weights: Vec<f64>,
}

/// Rides start this long before `start` (their events before it are skipped), so
/// the stream begins in a steady state with rides in every stage.
const WARM_UP: EpochMillis = 30 * 60_000;

const REQUESTED: u8 = 0;
const ACCEPTED: u8 = 1;
const STARTED: u8 = 2;
const COMPLETED: u8 = 3;
const CANCELLED_RIDER: u8 = 4;
const CANCELLED_DRIVER: u8 = 5;

impl Synth {
    /// A stream for `cfg`.
    pub fn new(cfg: SynthConfig) -> Self {
        let first_request = (cfg.start - WARM_UP) as f64;
        let total: f64 = cfg.cities.iter().map(|c| c.2).sum();
        let mut acc = 0.0;
        let weights = cfg
            .cities
            .iter()
            .map(|c| {
                acc += c.2 / total;
                acc
            })
            .collect();
        Synth {
            rng: SplitMix::new(cfg.seed),
            next_request: first_request,
            cfg,
            heap: BinaryHeap::new(),
            rides: 0,
            seq: 0,
            weights,
        }
    }

    fn schedule(&mut self, p: Pending) {
        self.seq += 1;
        self.heap.push(Reverse(Pending { seq: self.seq, ..p }));
    }

    fn new_ride(&mut self) {
        let t = self.next_request as EpochMillis;
        let gap = -(1.0 - self.rng.unit()).ln() / self.cfg.requests_per_sec * 1000.0;
        self.next_request += gap;
        let u = self.rng.unit();
        let city = self.weights.iter().position(|w| u < *w).unwrap_or(0);
        let user = self.rng.range(1, i64::from(self.cfg.cities[city].1)) as u32;
        let fare_cents = self.rng.range(250, 4500);
        self.rides += 1;
        self.schedule(Pending {
            time: t,
            seq: 0,
            ride: self.rides,
            city,
            user,
            fare_cents,
            kind: REQUESTED,
            next: 1,
        });
    }

    fn follow_up(&mut self, p: &Pending) {
        let r = self.rng.unit();
        let (kind, delay) = match p.kind {
            REQUESTED if r < 0.06 => (CANCELLED_RIDER, self.rng.range(5_000, 180_000)),
            REQUESTED => (ACCEPTED, self.rng.range(3_000, 60_000)),
            ACCEPTED if r < 0.04 => (CANCELLED_RIDER, self.rng.range(5_000, 180_000)),
            ACCEPTED if r < 0.07 => (CANCELLED_DRIVER, self.rng.range(5_000, 180_000)),
            ACCEPTED => (STARTED, self.rng.range(60_000, 420_000)),
            STARTED => (COMPLETED, self.rng.range(180_000, 1_500_000)),
            _ => return,
        };
        self.schedule(Pending {
            time: p.time + delay,
            kind,
            next: u8::from(matches!(kind, ACCEPTED | STARTED)),
            ..p.clone()
        });
    }

    fn render(&self, p: &Pending) -> SynthEvent {
        let (name, ..) = &self.cfg.cities[p.city];
        let kind = match p.kind {
            REQUESTED => EventType::Requested,
            ACCEPTED => EventType::Accepted,
            STARTED => EventType::Started,
            COMPLETED => EventType::Completed,
            _ => EventType::Cancelled,
        };
        let ride_id = format!("ride-{:08x}", p.ride);
        let fare = p.fare_cents as f64 / 100.0;
        let ev = RideEvent {
            event_id: format!("ev-{:08x}-{}", p.ride, p.kind),
            schema_version: SCHEMA_VERSION,
            event_type: kind,
            ride_id: ride_id.clone(),
            timestamp: format_millis(p.time),
            city: name.clone(),
            estimated_fare: fare,
            user_id: format!("{name}-user-{}", p.user),
            driver_id: matches!(p.kind, ACCEPTED | STARTED | COMPLETED | CANCELLED_DRIVER)
                .then(|| format!("{name}-driver-{}", p.ride % 97)),
            pickup: LatLng {
                lat: 48.0 + (p.ride % 100) as f64 / 1000.0,
                lng: 16.0 + (p.ride % 77) as f64 / 1000.0,
            },
            dropoff: LatLng {
                lat: 48.05 + (p.ride % 91) as f64 / 1000.0,
                lng: 16.05 + (p.ride % 53) as f64 / 1000.0,
            },
            final_fare: (p.kind == COMPLETED).then_some(fare * 1.05),
            cancelled_by: match p.kind {
                CANCELLED_RIDER => Some(CancelledBy::Rider),
                CANCELLED_DRIVER => Some(CancelledBy::Driver),
                _ => None,
            },
        };
        SynthEvent {
            key: ride_id,
            json: serde_json::to_string(&ev).unwrap_or_default(),
            time: p.time,
        }
    }
}

impl Iterator for Synth {
    type Item = SynthEvent;

    fn next(&mut self) -> Option<SynthEvent> {
        loop {
            // New rides until the earliest pending event precedes the next request.
            while self
                .heap
                .peek()
                .is_none_or(|Reverse(p)| p.time as f64 > self.next_request)
            {
                self.new_ride();
            }
            let Reverse(p) = self.heap.pop()?;
            if p.next > 0 || p.kind == REQUESTED {
                self.follow_up(&p);
            }
            if p.time >= self.cfg.start {
                return Some(self.render(&p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::parse_ride_event;

    #[test]
    fn deterministic_ordered_and_valid() {
        let cfg = SynthConfig::new(7, 1_764_158_400_000, 6000.0);
        let a: Vec<SynthEvent> = Synth::new(cfg.clone()).take(5000).collect();
        let b: Vec<SynthEvent> = Synth::new(cfg).take(5000).collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].time <= w[1].time));
        let mut kinds = std::collections::HashMap::new();
        for e in &a {
            let v = parse_ride_event(e.json.as_bytes()).expect("valid");
            assert_eq!(v.event_time, e.time);
            *kinds.entry(v.event_type).or_insert(0) += 1;
        }
        assert_eq!(kinds.len(), 5, "every lifecycle step occurs: {kinds:?}");
        // About 6000 events per minute of event time.
        let minutes = (a[4999].time - a[0].time) as f64 / 60_000.0;
        assert!((0.5..1.5).contains(&minutes), "{minutes}");
    }
}
