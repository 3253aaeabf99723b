//! The ride lifecycle simulator: pure, no I/O, no wall clock.
//!
//! The caller hands out emission *slots*, each with a simulated time that never
//! decreases. At every slot [`Simulator::next_ride_event`] emits the earliest
//! pending lifecycle step of an in-flight ride if it is due (its due time is at or
//! before the slot time), and otherwise starts a new ride (a `requested` event). An
//! emitted event's timestamp is the slot time, so every ride's timestamps are
//! non-decreasing and the whole stream is in timestamp order; a ride's next step is
//! scheduled from the time its previous event was actually emitted.
//!
//! A ride is one of:
//!
//! ```text
//! requested ─▶ cancelled (rider)                                    rider_cancel_before_accept
//! requested ─▶ accepted ─▶ cancelled (rider | driver)               rider_cancel_after_accept, driver_cancel
//! requested ─▶ accepted ─▶ started ─▶ completed                     otherwise
//! ```
//!
//! with delays drawn uniformly from `generator.lifecycle` (`accept_delay`,
//! `pickup_delay`, `cancel_delay`) and a trip time of distance ÷ `avg_speed_kmh`.
//! New rides pick a city by weight (× any active `--surge` factor), a rider from
//! the city's pool, a pick-up point in its bounding box and a drop-off a few
//! kilometres away; the fare is `(base_fare + per_km × km) × surge`.
//!
//! Memory is bounded by the rides in flight: request rate (in simulated time) ×
//! ride lifetime.
//!
//! Driver GPS updates come from [`Simulator::driver_location`]; a driver is
//! `on_trip` from acceptance to the ride's planned end, and now and then goes
//! `offline` for a while.

use super::rng::Rng;
use super::scenario::ResolvedScenarios;
use crate::config::{CityConfig, GeneratorConfig, LifecycleConfig};
use crate::events::{CancelledBy, DriverStatus, EventType, LatLng};
use crate::time::EpochMillis;

const NO_DRIVER: u32 = u32::MAX;
/// Mean trip distance above the 0.8 km minimum (exponentially distributed).
const MEAN_EXTRA_KM: f64 = 5.0;
/// Longest trip, km.
const MAX_TRIP_KM: f64 = 35.0;
/// Shortest trip time.
const MIN_TRIP_MS: i64 = 60_000;
const _: () = assert!(std::mem::size_of::<Ride>() == 48);
/// Average time a driver stays online before going offline.
const MEAN_SHIFT_MS: f64 = 4.0 * 3_600_000.0;
/// How long a driver stays offline: `[min, max]`.
const OFFLINE_MS: (i64, i64) = (10 * 60_000, 90 * 60_000);

/// One configured city, ready for the simulator.
#[derive(Clone, Debug)]
pub struct CityModel {
    /// City name (as in events).
    pub name: String,
    /// Relative share of requests.
    pub weight: f64,
    /// `[min_lat, min_lng, max_lat, max_lng]`.
    pub bbox: [f64; 4],
    /// Fare base amount.
    pub base_fare: f64,
    /// Fare per km.
    pub per_km: f64,
    /// Rider pool size.
    pub riders: u32,
    /// Driver pool size.
    pub drivers: u32,
}

impl From<&CityConfig> for CityModel {
    fn from(c: &CityConfig) -> Self {
        CityModel {
            name: c.name.clone(),
            weight: c.weight,
            bbox: c.bbox,
            base_fare: c.base_fare,
            per_km: c.per_km,
            riders: c.riders.max(1),
            drivers: c.drivers.max(1),
        }
    }
}

/// One emitted ride event: everything needed to write the wire form. Ids are
/// numbers here; [`super::encode`] spells them out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimEvent {
    /// Sequence number of the event in the run (unique: the `event_id`).
    pub seq: u64,
    /// Lifecycle step.
    pub kind: EventType,
    /// Event time (the slot's simulated time).
    pub timestamp: EpochMillis,
    /// Sequence number of the ride in the run (the `ride_id`).
    pub ride: u64,
    /// Index of the city.
    pub city: u16,
    /// Rider number within the city's pool.
    pub user: u32,
    /// Driver number within the city's pool, once one accepted.
    pub driver: Option<u32>,
    /// Pick-up point (6 decimals).
    pub pickup: LatLng,
    /// Drop-off point (6 decimals).
    pub dropoff: LatLng,
    /// The ride's fare estimate (cents).
    pub estimated_fare: f64,
    /// Charged fare, on `completed`.
    pub final_fare: Option<f64>,
    /// Who cancelled, on `cancelled`.
    pub cancelled_by: Option<CancelledBy>,
}

/// One driver GPS update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocationEvent {
    /// Index of the city.
    pub city: u16,
    /// Driver number within the city's pool.
    pub driver: u32,
    /// Latitude (6 decimals).
    pub lat: f64,
    /// Longitude (6 decimals).
    pub lng: f64,
    /// Availability.
    pub status: DriverStatus,
    /// Event time.
    pub timestamp: EpochMillis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Complete,
    RiderCancelsBeforeAccept,
    RiderCancelsAfterAccept,
    DriverCancels,
}

#[derive(Clone, Copy, Debug)]
/// An in-flight ride, compact (48 bytes: one cache line) because the rides are
/// read in due order, which is random in memory. Coordinates are micro-degrees and
/// fares cents, exactly what the wire carries.
struct Ride {
    ride: u64,
    pickup: [i32; 2],
    dropoff: [i32; 2],
    user: u32,
    driver: u32,
    estimated_cents: u32,
    final_cents: u32,
    trip_secs: u32,
    city: u16,
    outcome: Outcome,
    next: EventType,
}

/// Micro-degrees of a coordinate (the 6 decimals on the wire).
fn micro(x: f64) -> i32 {
    round_half_away(x * 1e6) as i32
}

/// Cents of an amount.
fn cents(x: f64) -> u32 {
    round_half_away(x.max(0.0) * 100.0) as u32
}

/// `f64::round` without the libm call.
#[inline]
pub(crate) fn round_half_away(x: f64) -> f64 {
    let a = (x.abs() + 0.5) as i64 as f64;
    if x < 0.0 { -a } else { a }
}

fn lat_lng(p: [i32; 2]) -> LatLng {
    LatLng {
        lat: f64::from(p[0]) / 1e6,
        lng: f64::from(p[1]) / 1e6,
    }
}

#[derive(Clone, Copy, Debug)]
struct Driver {
    city: u16,
    local: u32,
    lat: f64,
    lng: f64,
    busy_until: EpochMillis,
    offline_until: EpochMillis,
}

/// Lifecycle delays in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Delays {
    p_before: f64,
    p_after: f64,
    p_driver: f64,
    accept: (i64, i64),
    pickup: (i64, i64),
    cancel: (i64, i64),
    speed_km_per_ms: f64,
}

impl From<&LifecycleConfig> for Delays {
    fn from(l: &LifecycleConfig) -> Self {
        let ms = |d: &[crate::units::HumanDuration; 2]| {
            (
                d[0].as_millis_i64(),
                d[1].as_millis_i64().max(d[0].as_millis_i64()),
            )
        };
        Delays {
            p_before: l.rider_cancel_before_accept,
            p_after: l.rider_cancel_after_accept,
            p_driver: l.driver_cancel,
            accept: ms(&l.accept_delay),
            pickup: ms(&l.pickup_delay),
            cancel: ms(&l.cancel_delay),
            speed_km_per_ms: l.avg_speed_kmh.max(1.0) / 3_600_000.0,
        }
    }
}

/// The simulator. Deterministic: the same configuration, seed, scenarios and slot
/// times give the same events.
#[derive(Clone, Debug)]
pub struct Simulator {
    cities: Vec<CityModel>,
    delays: Delays,
    scenarios: ResolvedScenarios,
    rng: Rng,
    rides: Vec<Ride>,
    free: Vec<u32>,
    /// Pending lifecycle steps: due time → slot in `rides`.
    pending: RadixQueue,
    next_ride: u64,
    next_seq: u64,
    drivers: Vec<Driver>,
    /// First global driver index of each city.
    driver_base: Vec<u32>,
    last_slot: EpochMillis,
}

/// A monotone priority queue (a radix heap): the simulator only ever takes out
/// the earliest entry once it is due at slot time `t`, and only puts in entries due
/// at or after `t`, so keys never go below the last one taken. Entries sit in
/// buckets by the highest bit in which they differ from that last key; taking the
/// minimum redistributes one bucket into lower ones. O(1) amortized per entry and
/// cache-friendly, unlike a binary heap of a few hundred thousand rides.
#[derive(Clone, Debug)]
struct RadixQueue {
    /// The last key taken out (every entry is at or above it).
    last: u64,
    buckets: Vec<Vec<(u64, u32)>>,
    /// The smallest key in each bucket (`u64::MAX` when empty).
    mins: [u64; 65],
    /// Bit `i` set: bucket `i` is not empty.
    nonempty: u128,
    len: usize,
}

impl Default for RadixQueue {
    fn default() -> Self {
        RadixQueue {
            last: 0,
            buckets: vec![Vec::new(); 65],
            mins: [u64::MAX; 65],
            nonempty: 0,
            len: 0,
        }
    }
}

/// Order-preserving map of a time to an unsigned key.
fn time_key(t: EpochMillis) -> u64 {
    (t as u64) ^ (1 << 63)
}

impl RadixQueue {
    fn bucket_of(&self, key: u64) -> usize {
        (64 - (key ^ self.last).leading_zeros()) as usize
    }

    fn put(&mut self, key: u64, slot: u32) {
        let b = self.bucket_of(key);
        self.buckets[b].push((key, slot));
        self.mins[b] = self.mins[b].min(key);
        self.nonempty |= 1 << b;
    }

    /// Adds an entry due at `due` (never before the last slot time asked for).
    fn push(&mut self, due: EpochMillis, slot: u32) {
        let key = time_key(due).max(self.last);
        self.put(key, slot);
        self.len += 1;
    }

    /// Takes out the earliest entry if it is due at `t`.
    fn pop_due(&mut self, t: EpochMillis) -> Option<u32> {
        if self.nonempty == 0 {
            return None;
        }
        let b = self.nonempty.trailing_zeros() as usize;
        let min = self.mins[b];
        if min > time_key(t) {
            return None;
        }
        if b > 0 {
            // Move the bucket holding the minimum down, relative to the new last key.
            self.last = min;
            let items = std::mem::take(&mut self.buckets[b]);
            self.mins[b] = u64::MAX;
            self.nonempty &= !(1 << b);
            for &(k, s) in &items {
                self.put(k, s);
            }
            // Keep the allocation for the next time this bucket fills.
            let mut items = items;
            items.clear();
            self.buckets[b] = items;
        }
        let bucket0 = &mut self.buckets[0];
        let (_, slot) = bucket0.pop()?;
        if bucket0.is_empty() {
            self.nonempty &= !1;
            self.mins[0] = u64::MAX;
        }
        self.len -= 1;
        Some(slot)
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Great-circle distance in km.
pub fn haversine_km(a: LatLng, b: LatLng) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlng = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

fn clamp_to(b: &[f64; 4], lat: f64, lng: f64) -> (f64, f64) {
    (lat.clamp(b[0], b[2]), lng.clamp(b[1], b[3]))
}

impl Simulator {
    /// A simulator for the configured cities and lifecycle, seeded with `seed`.
    /// `scenarios` are already bound to the run's start time.
    pub fn new(cfg: &GeneratorConfig, seed: u64, scenarios: ResolvedScenarios) -> Simulator {
        let cities: Vec<CityModel> = cfg.cities.iter().map(CityModel::from).collect();
        let mut rng = Rng::new(seed);
        let mut drivers = Vec::new();
        let mut driver_base = Vec::with_capacity(cities.len());
        for (ci, c) in cities.iter().enumerate() {
            driver_base.push(drivers.len() as u32);
            for local in 0..c.drivers {
                drivers.push(Driver {
                    city: ci as u16,
                    local,
                    lat: rng.range_f64(c.bbox[0], c.bbox[2]),
                    lng: rng.range_f64(c.bbox[1], c.bbox[3]),
                    busy_until: i64::MIN,
                    offline_until: i64::MIN,
                });
            }
        }
        Simulator {
            cities,
            delays: Delays::from(&cfg.lifecycle),
            scenarios,
            rng,
            rides: Vec::new(),
            free: Vec::new(),
            pending: RadixQueue::default(),
            next_ride: 0,
            next_seq: 0,
            drivers,
            driver_base,
            last_slot: i64::MIN,
        }
    }

    /// The cities, by index.
    pub fn cities(&self) -> &[CityModel] {
        &self.cities
    }

    /// Rides started and not yet completed or cancelled.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Rides started so far.
    pub fn rides_started(&self) -> u64 {
        self.next_ride
    }

    /// Drivers in all cities (the number of GPS updates per interval, at most).
    pub fn driver_count(&self) -> usize {
        self.drivers.len()
    }

    /// Takes the next event sequence number (also used for malformed messages, so
    /// that every `event_id` in a run is unique).
    pub fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// The ride event for the slot at simulated time `t` (never earlier than the
    /// previous slot's; an earlier `t` is treated as the previous one).
    pub fn next_ride_event(&mut self, t: EpochMillis) -> SimEvent {
        let t = t.max(self.last_slot);
        self.last_slot = t;
        match self.pending.pop_due(t) {
            Some(slot) => self.advance(slot, t),
            None => self.new_ride(t),
        }
    }

    fn surge_factor(&self, city: usize, t: EpochMillis) -> f64 {
        self.scenarios
            .surges
            .iter()
            .filter(|s| s.city == city && (s.from_ms..s.to_ms).contains(&t))
            .map(|s| s.factor)
            .product()
    }

    fn pick_city(&mut self, t: EpochMillis) -> usize {
        let n = self.cities.len();
        if n <= 1 {
            return 0;
        }
        let surged = !self.scenarios.surges.is_empty();
        let weight = |s: &Self, i: usize| {
            let w = s.cities[i].weight;
            if surged { w * s.surge_factor(i, t) } else { w }
        };
        let total: f64 = (0..n).map(|i| weight(self, i)).sum();
        let mut u = self.rng.f64() * total;
        for i in 0..n {
            let w = weight(self, i);
            if u < w {
                return i;
            }
            u -= w;
        }
        n - 1
    }

    fn outcome(&mut self, city: usize, t: EpochMillis) -> Outcome {
        let d = self.delays;
        let (mut pb, mut pa, mut pd) = (d.p_before, d.p_after, d.p_driver);
        let spike = self
            .scenarios
            .spikes
            .iter()
            .filter(|s| s.city == city && (s.from_ms..s.to_ms).contains(&t))
            .map(|s| s.rate)
            .fold(None, |acc: Option<f64>, r| {
                Some(acc.map_or(r, |a| a.max(r)))
            });
        if let Some(rate) = spike {
            let sum = pb + pa + pd;
            let (wb, wa, wd) = if sum > 0.0 {
                (pb / sum, pa / sum, pd / sum)
            } else {
                (0.5, 0.3, 0.2)
            };
            (pb, pa, pd) = (rate * wb, rate * wa, rate * wd);
        }
        let u = self.rng.f64();
        if u < pb {
            Outcome::RiderCancelsBeforeAccept
        } else if u < pb + pa {
            Outcome::RiderCancelsAfterAccept
        } else if u < pb + pa + pd {
            Outcome::DriverCancels
        } else {
            Outcome::Complete
        }
    }

    fn new_ride(&mut self, t: EpochMillis) -> SimEvent {
        let ci = self.pick_city(t);
        let c = &self.cities[ci];
        let (bbox, base, per_km, riders) = (c.bbox, c.base_fare, c.per_km, c.riders);
        let user = self.rng.below(u64::from(riders)) as u32;
        let p_lat = self.rng.range_f64(bbox[0], bbox[2]);
        let p_lng = self.rng.range_f64(bbox[1], bbox[3]);
        // Drop-off: 0.8 km plus an exponential distance, in a random direction,
        // kept inside the city.
        let km = (0.8 - MEAN_EXTRA_KM * (1.0 - self.rng.f64()).ln()).min(MAX_TRIP_KM);
        let bearing = self.rng.range_f64(0.0, std::f64::consts::TAU);
        let dlat = km * bearing.cos() / 111.32;
        let dlng = km * bearing.sin() / (111.32 * p_lat.to_radians().cos().max(0.01));
        let (d_lat, d_lng) = clamp_to(&bbox, p_lat + dlat, p_lng + dlng);
        let pickup = [micro(p_lat), micro(p_lng)];
        let dropoff = [micro(d_lat), micro(d_lng)];
        let dist = haversine_km(lat_lng(pickup), lat_lng(dropoff));
        let surge = if self.scenarios.surges.is_empty() {
            1.0
        } else {
            self.surge_factor(ci, t)
        };
        let estimated_cents = cents((base + per_km * dist) * surge);
        let final_cents = cents((base + per_km * dist * self.rng.range_f64(0.95, 1.2)) * surge);
        let trip_ms = ((dist / self.delays.speed_km_per_ms) * self.rng.range_f64(0.85, 1.25))
            .max(MIN_TRIP_MS as f64);
        let outcome = self.outcome(ci, t);
        let ride = Ride {
            ride: self.next_ride,
            city: ci as u16,
            user,
            driver: NO_DRIVER,
            pickup,
            dropoff,
            estimated_cents,
            final_cents,
            trip_secs: (trip_ms / 1000.0) as u32,
            outcome,
            next: if outcome == Outcome::RiderCancelsBeforeAccept {
                EventType::Cancelled
            } else {
                EventType::Accepted
            },
        };
        self.next_ride += 1;
        let d = self.delays;
        let due = t + if ride.next == EventType::Cancelled {
            self.rng.range_ms(d.cancel.0, d.cancel.1)
        } else {
            self.rng.range_ms(d.accept.0, d.accept.1)
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.rides[s as usize] = ride;
                s
            }
            None => {
                self.rides.push(ride);
                (self.rides.len() - 1) as u32
            }
        };
        self.pending.push(due, slot);
        self.event(&ride, EventType::Requested, t)
    }

    fn event(&mut self, r: &Ride, kind: EventType, t: EpochMillis) -> SimEvent {
        SimEvent {
            seq: self.take_seq(),
            kind,
            timestamp: t,
            ride: r.ride,
            city: r.city,
            user: r.user,
            driver: (r.driver != NO_DRIVER).then_some(r.driver),
            pickup: lat_lng(r.pickup),
            dropoff: lat_lng(r.dropoff),
            estimated_fare: f64::from(r.estimated_cents) / 100.0,
            final_fare: (kind == EventType::Completed).then(|| f64::from(r.final_cents) / 100.0),
            cancelled_by: (kind == EventType::Cancelled).then_some(
                if r.outcome == Outcome::DriverCancels {
                    CancelledBy::Driver
                } else {
                    CancelledBy::Rider
                },
            ),
        }
    }

    fn advance(&mut self, slot: u32, t: EpochMillis) -> SimEvent {
        let mut r = self.rides[slot as usize];
        let kind = r.next;
        let d = self.delays;
        let next_due = match kind {
            EventType::Accepted => {
                let c = r.city as usize;
                r.driver = self.rng.below(u64::from(self.cities[c].drivers)) as u32;
                let (next, delay) = match r.outcome {
                    Outcome::Complete => (
                        EventType::Started,
                        self.rng.range_ms(d.pickup.0, d.pickup.1),
                    ),
                    _ => (
                        EventType::Cancelled,
                        self.rng.range_ms(d.cancel.0, d.cancel.1),
                    ),
                };
                let busy = t
                    + delay
                    + if next == EventType::Started {
                        i64::from(r.trip_secs) * 1000
                    } else {
                        0
                    };
                let g = (self.driver_base[c] + r.driver) as usize;
                if let Some(drv) = self.drivers.get_mut(g) {
                    drv.busy_until = drv.busy_until.max(busy);
                }
                r.next = next;
                Some(t + delay)
            }
            EventType::Started => {
                r.next = EventType::Completed;
                Some(t + i64::from(r.trip_secs) * 1000)
            }
            _ => None,
        };
        self.rides[slot as usize] = r;
        match next_due {
            Some(due) => self.pending.push(due, slot),
            None => self.free.push(slot),
        }
        self.event(&r, kind, t)
    }

    /// The GPS update of driver number `driver` (global index, modulo the number
    /// of drivers) at simulated time `t`, or `None` while the driver is offline.
    pub fn driver_location(
        &mut self,
        driver: usize,
        t: EpochMillis,
        interval_ms: i64,
    ) -> Option<LocationEvent> {
        let n = self.drivers.len();
        if n == 0 {
            return None;
        }
        let g = driver % n;
        let going_offline = self.rng.chance(interval_ms as f64 / MEAN_SHIFT_MS);
        let offline_for = self.rng.range_ms(OFFLINE_MS.0, OFFLINE_MS.1);
        let step = self.rng.f64();
        let bearing = self.rng.range_f64(0.0, std::f64::consts::TAU);
        let drv = &mut self.drivers[g];
        if t < drv.offline_until {
            return None;
        }
        let on_trip = t < drv.busy_until;
        let status = if going_offline && !on_trip {
            drv.offline_until = t + offline_for;
            DriverStatus::Offline
        } else if on_trip {
            DriverStatus::OnTrip
        } else {
            DriverStatus::Available
        };
        // Move: up to avg speed × interval on a trip, a slow crawl otherwise.
        let max_m = if on_trip { 8.0 } else { 2.0 } * interval_ms as f64 / 1000.0;
        let m = max_m * step;
        let bbox = self.cities[drv.city as usize].bbox;
        let dlat = m * bearing.cos() / 111_320.0;
        let dlng = m * bearing.sin() / (111_320.0 * drv.lat.to_radians().cos().max(0.01));
        (drv.lat, drv.lng) = clamp_to(&bbox, drv.lat + dlat, drv.lng + dlng);
        Some(LocationEvent {
            city: drv.city,
            driver: drv.local,
            lat: f64::from(micro(drv.lat)) / 1e6,
            lng: f64::from(micro(drv.lng)) / 1e6,
            status,
            timestamp: t,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::generate::scenario::{ResolvedSpike, ResolvedSurge};

    fn cfg() -> GeneratorConfig {
        GeneratorConfig::default()
    }

    /// Runs `n` slots `dt` ms apart from `t0`.
    fn run(sim: &mut Simulator, t0: i64, dt: f64, n: u64) -> Vec<SimEvent> {
        (0..n)
            .map(|k| sim.next_ride_event(t0 + (k as f64 * dt) as i64))
            .collect()
    }

    #[test]
    fn lifecycle_invariants_hold() {
        let mut sim = Simulator::new(&cfg(), 1, ResolvedScenarios::default());
        // 833/s for 40 simulated minutes: many rides complete their lifecycle.
        let events = run(&mut sim, 1_764_158_400_000, 1.2, 2_000_000);
        let mut by_ride: HashMap<u64, Vec<&SimEvent>> = HashMap::new();
        let mut seqs = std::collections::HashSet::new();
        let mut last_t = i64::MIN;
        for e in &events {
            assert!(seqs.insert(e.seq), "event seq {} repeated", e.seq);
            assert!(e.timestamp >= last_t, "stream in timestamp order");
            last_t = e.timestamp;
            by_ride.entry(e.ride).or_default().push(e);
        }
        let mut finished = 0;
        let mut cancelled_by = HashMap::new();
        for (ride, evs) in &by_ride {
            assert_eq!(
                evs[0].kind,
                EventType::Requested,
                "ride {ride} starts with requested"
            );
            assert!(evs[0].driver.is_none());
            let terminals = evs.iter().filter(|e| e.kind.is_terminal()).count();
            assert!(terminals <= 1, "ride {ride}: {terminals} terminal events");
            if terminals == 1 {
                assert!(evs.last().unwrap().kind.is_terminal(), "terminal is last");
                finished += 1;
            }
            for w in evs.windows(2) {
                assert!(w[0].timestamp <= w[1].timestamp, "ride {ride} time order");
                // Valid transitions only.
                let ok = matches!(
                    (w[0].kind, w[1].kind),
                    (EventType::Requested, EventType::Accepted)
                        | (EventType::Requested, EventType::Cancelled)
                        | (EventType::Accepted, EventType::Started)
                        | (EventType::Accepted, EventType::Cancelled)
                        | (EventType::Started, EventType::Completed)
                );
                assert!(ok, "ride {ride}: {:?} -> {:?}", w[0].kind, w[1].kind);
            }
            let cancelled = evs.iter().any(|e| e.kind == EventType::Cancelled);
            let completed = evs.iter().any(|e| e.kind == EventType::Completed);
            assert!(
                !(cancelled && completed),
                "ride {ride} cancelled and completed"
            );
            for e in evs {
                assert_eq!(e.estimated_fare, evs[0].estimated_fare, "same estimate");
                assert_eq!(e.user, evs[0].user);
                assert_eq!(e.final_fare.is_some(), e.kind == EventType::Completed);
                assert_eq!(e.cancelled_by.is_some(), e.kind == EventType::Cancelled);
                assert_eq!(
                    e.driver.is_some(),
                    e.kind != EventType::Requested
                        && !(e.kind == EventType::Cancelled && evs.len() == 2)
                );
                if let Some(by) = e.cancelled_by {
                    *cancelled_by.entry(by).or_insert(0) += 1;
                }
                assert!(e.estimated_fare > 0.0);
            }
            // The driver, once assigned, stays.
            let drivers: std::collections::HashSet<_> =
                evs.iter().filter_map(|e| e.driver).collect();
            assert!(drivers.len() <= 1);
            // Spans minutes: a completed ride lasts at least pick-up + 1 minute.
            if completed {
                assert!(evs.last().unwrap().timestamp - evs[0].timestamp >= 60_000 + 3_000);
            }
        }
        assert!(finished > 10_000, "{finished} rides finished");
        assert!(cancelled_by.contains_key(&CancelledBy::Rider));
        assert!(cancelled_by.contains_key(&CancelledBy::Driver));
        // Bounded memory: in flight ≈ request rate × lifetime, not the whole run.
        assert!(sim.in_flight() < 400_000, "{} in flight", sim.in_flight());
    }

    #[test]
    fn cancellation_rate_matches_the_configuration_and_the_spike() {
        let spike_city = 2; // prague
        let t0 = 1_764_158_400_000;
        let sc = ResolvedScenarios {
            surges: vec![],
            spikes: vec![ResolvedSpike {
                city: spike_city,
                rate: 0.5,
                from_ms: t0,
                to_ms: t0 + 20 * 60_000,
            }],
        };
        let mut sim = Simulator::new(&cfg(), 3, sc);
        let events = run(&mut sim, t0, 1.2, 3_000_000);
        let mut req: HashMap<u16, u64> = HashMap::new();
        let mut canc: HashMap<u16, u64> = HashMap::new();
        let mut req_time: HashMap<u64, i64> = HashMap::new();
        for e in &events {
            if e.kind == EventType::Requested {
                req_time.insert(e.ride, e.timestamp);
            }
        }
        for e in &events {
            // Rides requested in the first 15 minutes, so their outcome is known.
            if req_time[&e.ride] >= t0 + 15 * 60_000 {
                continue;
            }
            match e.kind {
                EventType::Requested => *req.entry(e.city).or_default() += 1,
                EventType::Cancelled => *canc.entry(e.city).or_default() += 1,
                _ => {}
            }
        }
        let rate = |c: u16| canc[&c] as f64 / req[&c] as f64;
        assert!((rate(spike_city as u16) - 0.5).abs() < 0.03, "{}", rate(2));
        assert!((rate(0) - 0.13).abs() < 0.02, "{}", rate(0));
    }

    #[test]
    fn surge_doubles_requests_and_fares() {
        let t0 = 1_764_158_400_000;
        let window = (t0 + 10 * 60_000, t0 + 20 * 60_000);
        let sc = ResolvedScenarios {
            surges: vec![ResolvedSurge {
                city: 0,
                factor: 2.0,
                from_ms: window.0,
                to_ms: window.1,
            }],
            spikes: vec![],
        };
        let mut sim = Simulator::new(&cfg(), 4, sc);
        let events = run(&mut sim, t0, 1.2, 1_500_000);
        let share = |from: i64, to: i64| {
            let reqs: Vec<_> = events
                .iter()
                .filter(|e| e.kind == EventType::Requested && (from..to).contains(&e.timestamp))
                .collect();
            let berlin: Vec<_> = reqs.iter().filter(|e| e.city == 0).collect();
            let fare = berlin.iter().map(|e| e.estimated_fare).sum::<f64>() / berlin.len() as f64;
            (berlin.len() as f64 / reqs.len() as f64, fare)
        };
        let (before, fare_before) = share(t0 + 5 * 60_000, window.0);
        let (during, fare_during) = share(window.0, window.1);
        // Weight 0.22 → 0.44 / 1.22 = 0.36.
        assert!((before - 0.22).abs() < 0.02, "{before}");
        assert!((during - 0.44 / 1.22).abs() < 0.02, "{during}");
        assert!(
            (fare_during / fare_before - 2.0).abs() < 0.15,
            "{fare_before} {fare_during}"
        );
    }

    #[test]
    fn radix_queue_takes_entries_out_in_due_order() {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut q = RadixQueue::default();
        let mut reference = BinaryHeap::new();
        let mut rng = Rng::new(8);
        let mut t: i64 = -5_000; // negative times work too
        let mut dues = HashMap::new();
        for i in 0..200_000u32 {
            t += rng.range_ms(0, 3);
            if rng.chance(0.45) {
                let due = t + rng.range_ms(0, 4_000_000);
                q.push(due, i);
                dues.insert(i, due);
                reference.push(Reverse((due, i)));
            }
            let want = match reference.peek() {
                Some(&Reverse((due, _))) if due <= t => reference.pop().map(|r| r.0.0),
                _ => None,
            };
            let got = q.pop_due(t).map(|slot| dues[&slot]);
            assert_eq!(got, want, "at {t}");
            assert_eq!(q.len(), reference.len());
        }
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let a = run(
            &mut Simulator::new(&cfg(), 9, Default::default()),
            0,
            1.2,
            50_000,
        );
        let b = run(
            &mut Simulator::new(&cfg(), 9, Default::default()),
            0,
            1.2,
            50_000,
        );
        let c = run(
            &mut Simulator::new(&cfg(), 10, Default::default()),
            0,
            1.2,
            50_000,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn driver_locations_move_inside_the_city_and_follow_assignments() {
        let mut sim = Simulator::new(&cfg(), 5, Default::default());
        let n = sim.driver_count();
        assert_eq!(n, 2500);
        let mut statuses = HashMap::new();
        let mut t = 1_764_158_400_000;
        for k in 0..200_000u64 {
            let _ = sim.next_ride_event(t);
            if let Some(loc) = sim.driver_location(k as usize, t, 5000) {
                let b = sim.cities()[loc.city as usize].bbox;
                assert!((b[0]..=b[2]).contains(&loc.lat) && (b[1]..=b[3]).contains(&loc.lng));
                *statuses.entry(loc.status).or_insert(0u64) += 1;
            }
            t += 2;
        }
        assert!(statuses[&DriverStatus::OnTrip] > 1000, "{statuses:?}");
        assert!(statuses[&DriverStatus::Available] > 1000, "{statuses:?}");
        assert!(
            statuses.contains_key(&DriverStatus::Offline),
            "{statuses:?}"
        );
    }
}
