//! The message stream of a run, pure and deterministic: the simulator driven by the
//! slot schedule, encoded, with the fault scenarios (`--late`, `--out-of-order`,
//! `--malformed`) applied. [`super::run`] paces it and hands it to a sink; tests
//! and other modules can iterate it directly.
//!
//! Ride slots are `ride_interval_ms` of simulated time apart; driver-location slots
//! are `driver_location_interval ÷ drivers` apart (each driver once per interval,
//! spread evenly). The two schedules are merged in simulated-time order.

use super::encode::{Encoder, Wire};
use super::pace::Slots;
use super::rng::{Rng, splitmix64};
use super::scenario::{Late, ResolvedScenarios};
use super::sim::{SimEvent, Simulator};
use crate::config::GeneratorConfig;
use crate::events::{EventType, LatLng, RejectReason};
use crate::time::EpochMillis;

/// Batch size within which `--out-of-order` shuffles emission.
pub const OUT_OF_ORDER_BATCH: usize = 16;

/// What a message is, for routing and counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A valid ride event (topic `ride_events`, key ride_id).
    Ride = 0,
    /// A malformed message meant for the dead-letter path (topic `ride_events`).
    Malformed = 1,
    /// A driver GPS update (topic `driver_locations`, key driver_id).
    Location = 2,
}

impl Kind {
    /// All kinds, by index.
    pub const ALL: [Kind; 3] = [Kind::Ride, Kind::Malformed, Kind::Location];
}

/// Everything that shapes the stream.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Simulated time of the first slot.
    pub start_ms: EpochMillis,
    /// Simulated milliseconds between ride slots.
    pub ride_interval_ms: f64,
    /// Each driver's simulated GPS interval; `None`: no driver locations.
    pub location_interval_ms: Option<f64>,
    /// Stop after this many valid ride events.
    pub max_ride_events: Option<u64>,
    /// Stop after this many ride slots (valid or malformed).
    pub max_ride_slots: Option<u64>,
    /// No slot at or after this simulated time (driver locations continue up to
    /// it after the ride stream ended).
    pub end_ms: Option<EpochMillis>,
    /// `--late`.
    pub late: Option<Late>,
    /// `--out-of-order`.
    pub out_of_order: bool,
    /// `--malformed`, as a fraction of ride slots.
    pub malformed: f64,
    /// `--surge` and `--cancel-spike`, bound to `start_ms`.
    pub scenarios: ResolvedScenarios,
    /// `--wire`: the form of ride events.
    pub wire: Wire,
}

/// One message, borrowed from the source until the next call.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// Routing and counting.
    pub kind: Kind,
    /// Kafka key.
    pub key: &'a [u8],
    /// Kafka value (one JSON line without the newline).
    pub payload: &'a [u8],
    /// Simulated offset of the message's slot from the start, ms (for pacing).
    pub sim_offset_ms: f64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    kind: Kind,
    key: (u32, u32),
    payload: (u32, u32),
}

/// Counts of what the source has produced so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Valid ride events.
    pub rides: u64,
    /// Malformed messages.
    pub malformed: u64,
    /// Driver locations.
    pub locations: u64,
}

/// The run's message stream.
#[derive(Debug)]
pub struct Source {
    cfg: SourceConfig,
    sim: Simulator,
    enc: Encoder,
    faults: Rng,
    ride_slots: Slots,
    loc_slots: Option<Slots>,
    next_ride_slot: u64,
    next_loc_slot: u64,
    counts: SourceCounts,
    drivers: usize,
    loc_interval_ms: i64,
    // The current batch: its bytes, entries (in emission order) and slot offsets.
    data: Vec<u8>,
    entries: Vec<Entry>,
    offsets: Vec<f64>,
    cursor: usize,
    done: bool,
}

/// The run id derived from a seed: 8 hex digits, in every event and ride id.
pub fn run_id(seed: u64) -> String {
    let mut s = seed ^ 0x005E_ED0F_2100;
    format!("{:08x}", splitmix64(&mut s) as u32)
}

impl Source {
    /// A stream for the generator configuration and `cfg`.
    pub fn new(gen_cfg: &GeneratorConfig, cfg: SourceConfig) -> Source {
        let sim = Simulator::new(gen_cfg, cfg.seed, cfg.scenarios.clone());
        let names: Vec<String> = sim.cities().iter().map(|c| c.name.clone()).collect();
        let enc = Encoder::new(&run_id(cfg.seed), &names).with_wire(cfg.wire);
        let drivers = sim.driver_count();
        let loc_slots = cfg
            .location_interval_ms
            .filter(|_| drivers > 0)
            .map(|i| Slots {
                interval_ms: i / drivers as f64,
            });
        let mut fault_seed = cfg.seed ^ 0xFA17_5EED;
        let faults = Rng::new(splitmix64(&mut fault_seed));
        Source {
            ride_slots: Slots {
                interval_ms: cfg.ride_interval_ms,
            },
            loc_interval_ms: cfg.location_interval_ms.unwrap_or(0.0) as i64,
            cfg,
            sim,
            enc,
            faults,
            loc_slots,
            next_ride_slot: 0,
            next_loc_slot: 0,
            counts: SourceCounts::default(),
            drivers,
            data: Vec::with_capacity(OUT_OF_ORDER_BATCH * 512),
            entries: Vec::with_capacity(OUT_OF_ORDER_BATCH),
            offsets: Vec::with_capacity(OUT_OF_ORDER_BATCH),
            cursor: 0,
            done: false,
        }
    }

    /// The run id in every event and ride id.
    pub fn run_id(&self) -> &str {
        self.enc.run_id()
    }

    /// What has been produced so far (including a batch not yet handed out).
    pub fn counts(&self) -> SourceCounts {
        self.counts
    }

    /// Rides in flight in the simulator.
    pub fn in_flight(&self) -> usize {
        self.sim.in_flight()
    }

    /// Simulated time of the next ride slot.
    pub fn next_ride_time(&self) -> EpochMillis {
        self.cfg.start_ms + self.ride_slots.offset_ms(self.next_ride_slot) as i64
    }

    /// The next message, or `None` when the run's limits are reached.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Message<'_>> {
        if self.cursor >= self.entries.len() {
            self.refill();
        }
        let i = self.cursor;
        let e = *self.entries.get(i)?;
        self.cursor += 1;
        let range = |r: (u32, u32)| &self.data[r.0 as usize..r.1 as usize];
        Some(Message {
            kind: e.kind,
            key: range(e.key),
            payload: range(e.payload),
            sim_offset_ms: self.offsets[i],
        })
    }

    fn refill(&mut self) {
        self.data.clear();
        self.entries.clear();
        self.offsets.clear();
        self.cursor = 0;
        let batch = if self.cfg.out_of_order {
            OUT_OF_ORDER_BATCH
        } else {
            1
        };
        while self.entries.len() < batch && self.produce_one() {}
        if self.entries.len() > 1 {
            // Fisher–Yates on the contents; the slot offsets stay in order, so the
            // pace is unchanged and only the order of timestamps is shuffled.
            for i in (1..self.entries.len()).rev() {
                let j = self.faults.below(i as u64 + 1) as usize;
                self.entries.swap(i, j);
            }
        }
    }

    /// Appends the next slot's message to the batch; false when the run is over.
    fn produce_one(&mut self) -> bool {
        if self.done {
            return false;
        }
        let rides_left = self
            .cfg
            .max_ride_events
            .is_none_or(|m| self.counts.rides < m);
        let ride_off = self.ride_slots.offset_ms(self.next_ride_slot);
        let end_off = self.cfg.end_ms.map(|e| (e - self.cfg.start_ms) as f64);
        let before_end = |off: f64| end_off.is_none_or(|e| off < e);
        let slots_left = self
            .cfg
            .max_ride_slots
            .is_none_or(|m| self.next_ride_slot < m);
        let ride_ok = rides_left && slots_left && before_end(ride_off);
        // Locations go up to the next ride slot; once the ride stream is over, up to
        // the end time if there is one (a paced --duration), else they stop too.
        let loc_limit = match (ride_ok, end_off) {
            (true, _) => ride_off,
            (false, Some(e)) => e,
            (false, None) => f64::NEG_INFINITY,
        };
        if let Some(ls) = self.loc_slots {
            loop {
                let loc_off = ls.offset_ms(self.next_loc_slot);
                if loc_off >= loc_limit {
                    break;
                }
                let j = (self.next_loc_slot % self.drivers as u64) as usize;
                self.next_loc_slot += 1;
                let t = self.cfg.start_ms + loc_off as i64;
                if let Some(loc) = self.sim.driver_location(j, t, self.loc_interval_ms) {
                    let start = self.data.len();
                    let mid = self.enc.location(&loc, &mut self.data);
                    self.push_entry(Kind::Location, start, mid, loc_off);
                    self.counts.locations += 1;
                    return true;
                }
            }
        }
        if !ride_ok {
            self.done = true;
            return false;
        }
        let t = self.cfg.start_ms + ride_off as i64;
        self.next_ride_slot += 1;
        let start = self.data.len();
        if self.cfg.malformed > 0.0 && self.faults.chance(self.cfg.malformed) {
            let n = self.counts.malformed;
            let reason = RejectReason::ALL[(n % RejectReason::ALL.len() as u64) as usize];
            let template = self.malformed_template(t, n);
            let mid = self.enc.malformed(reason, &template, &mut self.data);
            self.push_entry(Kind::Malformed, start, mid, ride_off);
            self.counts.malformed += 1;
            return true;
        }
        let ev = self.sim.next_ride_event(t);
        let ts = match self.cfg.late {
            Some(l) if self.faults.chance(l.fraction) => {
                t - i64::try_from(l.delay.as_millis()).unwrap_or(i64::MAX / 2)
            }
            _ => t,
        };
        let mid = self.enc.ride_event(&ev, ts, &mut self.data);
        self.push_entry(Kind::Ride, start, mid, ride_off);
        self.counts.rides += 1;
        true
    }

    fn push_entry(&mut self, kind: Kind, key_start: usize, payload_start: usize, off: f64) {
        self.entries.push(Entry {
            kind,
            key: (key_start as u32, payload_start as u32),
            payload: (payload_start as u32, self.data.len() as u32),
        });
        self.offsets.push(off);
    }

    fn malformed_template(&mut self, t: EpochMillis, n: u64) -> SimEvent {
        let cities = self.sim.cities();
        let ci = self.faults.below(cities.len() as u64) as usize;
        let b = cities[ci].bbox;
        let center = LatLng {
            lat: (b[0] + b[2]) / 2.0,
            lng: (b[1] + b[3]) / 2.0,
        };
        SimEvent {
            seq: self.sim.take_seq(),
            kind: EventType::Requested,
            timestamp: t,
            ride: n,
            city: ci as u16,
            user: 0,
            driver: None,
            pickup: center,
            dropoff: center,
            estimated_fare: 10.0,
            final_fare: None,
            cancelled_by: None,
        }
    }
}
