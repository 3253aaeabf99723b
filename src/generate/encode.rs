//! The wire form of generated messages, written by hand into reused buffers (no
//! allocation per event): ride events and driver locations exactly as
//! [`crate::events::RideEvent`] and [`crate::events::DriverLocation`] serialize,
//! with fares in cents and coordinates to 6 decimals, and the malformed variants
//! that exercise every dead-letter reason ([`RejectReason`]).

use super::sim::{LocationEvent, SimEvent};
use crate::events::{EventType, RejectReason, SCHEMA_VERSION};
use crate::time::{EpochMillis, format_millis};

/// What generated ride events look like on the wire (`ridectl generate --wire`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wire {
    /// ridectl's own form: `event_id`, `schema_version`, and `…T12:00:00.007Z`
    /// millisecond timestamps.
    #[default]
    Full,
    /// What the seed design's producer sends: no `event_id` or `schema_version`
    /// (the pipeline derives the id from the message's Kafka position) and Python's
    /// naive `isoformat()` timestamps with microseconds (`…T12:00:00.007000`, read
    /// as UTC).
    Seed,
}

/// Writes messages for one run. Ids: `event_id` `<run>-<seq>`, `ride_id`
/// `ride-<run>-<n>`, `user_id` `u-<city>-<n>`, `driver_id` `d-<city>-<n>`.
#[derive(Clone, Debug)]
pub struct Encoder {
    run: String,
    /// Per city: the JSON-escaped name, without quotes.
    cities: Vec<String>,
    ts: TsCache,
    wire: Wire,
    /// Where one message is assembled: large enough for the longest possible one.
    scratch: Vec<u8>,
}

/// The `YYYY-MM-DDTHH:MM:SS.` prefix of the last second written.
#[derive(Clone, Debug)]
struct TsCache {
    second: i64,
    prefix: [u8; 20],
}

/// A write cursor over a buffer known to be large enough: plain indexed stores,
/// no capacity checks or memcpy calls for the many short pieces of an event.
struct W<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl W<'_> {
    #[inline]
    fn lit<const N: usize>(&mut self, s: &[u8; N]) {
        self.buf[self.pos..self.pos + N].copy_from_slice(s);
        self.pos += N;
    }

    #[inline]
    fn bytes(&mut self, s: &[u8]) {
        for (d, &b) in self.buf[self.pos..self.pos + s.len()].iter_mut().zip(s) {
            *d = b;
        }
        self.pos += s.len();
    }

    #[inline]
    fn byte(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos += 1;
    }

    #[inline]
    fn u64(&mut self, v: u64) {
        let mut n = 1;
        let mut x = v;
        while x >= 10 {
            x /= 10;
            n += 1;
        }
        let mut x = v;
        for i in (0..n).rev() {
            self.buf[self.pos + i] = b'0' + (x % 10) as u8;
            x /= 10;
        }
        self.pos += n;
    }

    /// `v` with exactly `D` (1..=9) digits after the point, rounded half away
    /// from zero. `D` is a constant so the divisions become multiplications.
    #[inline]
    fn fixed<const D: u32>(&mut self, v: f64) {
        if !v.is_finite() {
            self.byte(b'0');
            return;
        }
        let scale = 10u64.pow(D);
        let a = super::sim::round_half_away(v.abs() * scale as f64) as u64;
        if v < 0.0 && a != 0 {
            self.byte(b'-');
        }
        self.u64(a / scale);
        self.byte(b'.');
        let mut frac = a % scale;
        let d = D as usize;
        for i in (0..d).rev() {
            self.buf[self.pos + i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        self.pos += d;
    }

    fn ts(&mut self, cache: &mut TsCache, ms: EpochMillis) {
        let second = ms.div_euclid(1000);
        // Years 0..=9999 have the fixed-width form; anything else is formatted fully.
        if !(-62_167_219_200..253_402_300_800).contains(&second) {
            self.bytes(format_millis(ms).as_bytes());
            return;
        }
        if second != cache.second {
            let s = format_millis(second * 1000);
            cache.prefix.copy_from_slice(&s.as_bytes()[..20]);
            cache.second = second;
        }
        self.lit(&cache.prefix);
        let milli = ms.rem_euclid(1000) as u32;
        self.lit(&[
            b'0' + (milli / 100) as u8,
            b'0' + (milli / 10 % 10) as u8,
            b'0' + (milli % 10) as u8,
            b'Z',
        ]);
    }
}

#[cfg(test)]
fn push_fixed(out: &mut Vec<u8>, v: f64, decimals: u32) {
    let mut buf = [0u8; 64];
    let mut w = W {
        buf: &mut buf,
        pos: 0,
    };
    match decimals {
        2 => w.fixed::<2>(v),
        _ => w.fixed::<6>(v),
    }
    let n = w.pos;
    out.extend_from_slice(&buf[..n]);
}

/// Escapes a string for a JSON string body (without the quotes).
fn json_body(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    quoted[1..quoted.len() - 1].to_string()
}

impl Encoder {
    /// An encoder for a run with id `run` (a short token such as `5f3a9c1e`) and
    /// the given city names (by index, as in the simulator).
    pub fn new(run: &str, city_names: &[String]) -> Encoder {
        let cities: Vec<String> = city_names.iter().map(|c| json_body(c)).collect();
        let run = json_body(run);
        let longest = cities.iter().map(String::len).max().unwrap_or(0);
        // Fixed text and numbers of the longest message, plus the variable parts.
        let max = 700 + 4 * longest + 4 * run.len();
        Encoder {
            run,
            cities,
            ts: TsCache {
                second: i64::MIN,
                prefix: [0; 20],
            },
            wire: Wire::Full,
            scratch: vec![0; max],
        }
    }

    /// The same encoder writing ride events in the `wire` form.
    pub fn with_wire(mut self, wire: Wire) -> Encoder {
        self.wire = wire;
        self
    }

    /// The run id in every event and ride id.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// Assembles one message in the scratch buffer and appends it to `out`.
    fn emit(
        &mut self,
        out: &mut Vec<u8>,
        f: impl FnOnce(&mut W<'_>, &mut TsCache, &[String], &str),
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut w = W {
            buf: &mut scratch,
            pos: 0,
        };
        f(&mut w, &mut self.ts, &self.cities, &self.run);
        let n = w.pos;
        out.extend_from_slice(&scratch[..n]);
        self.scratch = scratch;
    }

    /// Appends the `ride_id` of ride `n`.
    pub fn ride_id(&mut self, out: &mut Vec<u8>, n: u64) {
        self.emit(out, |w, _, _, run| ride_id(w, run, n, false));
    }

    /// Appends the `driver_id` of driver `n` of city `city`.
    pub fn driver_id(&mut self, out: &mut Vec<u8>, city: u16, n: u32) {
        self.emit(out, |w, _, cities, _| {
            driver_id(w, cities[city as usize].as_bytes(), n)
        });
    }

    /// Appends a ride event's key (the ride id) and then its payload to `out`;
    /// returns where the payload starts. `timestamp` replaces the event's own (for
    /// `--late`).
    pub fn ride_event(&mut self, e: &SimEvent, timestamp: EpochMillis, out: &mut Vec<u8>) -> usize {
        self.ride_id(out, e.ride);
        let mid = out.len();
        let wire = self.wire;
        let e = SimEvent { timestamp, ..*e };
        self.emit(out, |w, ts, cities, run| {
            ride_event(w, ts, cities, run, &e, wire, Fault::None)
        });
        mid
    }

    /// Appends a driver location's key (the driver id) and then its payload to
    /// `out`; returns where the payload starts.
    pub fn location(&mut self, l: &LocationEvent, out: &mut Vec<u8>) -> usize {
        self.driver_id(out, l.city, l.driver);
        let mid = out.len();
        self.emit(out, |w, ts, cities, _| {
            let city = cities[l.city as usize].as_bytes();
            w.lit(b"{\"schema_version\":");
            w.u64(u64::from(SCHEMA_VERSION));
            w.lit(b",\"driver_id\":\"");
            driver_id(w, city, l.driver);
            w.lit(b"\",\"city\":\"");
            w.bytes(city);
            w.lit(b"\",\"lat\":");
            w.fixed::<6>(l.lat);
            w.lit(b",\"lng\":");
            w.fixed::<6>(l.lng);
            w.lit(b",\"status\":\"");
            w.bytes(l.status.as_str().as_bytes());
            w.lit(b"\",\"timestamp\":\"");
            w.ts(ts, l.timestamp);
            w.lit(b"\"}");
        });
        mid
    }

    /// Appends a malformed message that the pipeline must dead-letter with
    /// `reason`: its key, then the payload, built from `template` (a `requested`
    /// event of a ride that never exists: ids `<run>-m<seq>` and
    /// `ride-<run>-m<n>`); returns where the payload starts. Never contains a
    /// newline.
    pub fn malformed(
        &mut self,
        reason: RejectReason,
        template: &SimEvent,
        out: &mut Vec<u8>,
    ) -> usize {
        self.emit(out, |w, _, _, run| ride_id(w, run, template.ride, true));
        let mid = out.len();
        let mut e = *template;
        e.kind = EventType::Requested;
        e.driver = None;
        e.final_fare = None;
        e.cancelled_by = None;
        let fault = match reason {
            RejectReason::InvalidJson => Fault::Truncated,
            RejectReason::MissingField => Fault::MissingCity,
            RejectReason::WrongType => Fault::FareAsString,
            RejectReason::InvalidTimestamp => Fault::BadTimestamp,
            RejectReason::TimestampOutOfRange => Fault::FarTimestamp,
            RejectReason::InvalidValue => Fault::NegativeFare,
        };
        let wire = self.wire;
        self.emit(out, |w, ts, cities, run| {
            ride_event(w, ts, cities, run, &e, wire, fault)
        });
        if fault == Fault::Truncated {
            // Cut inside the value of event_type: `{"event_id":"…","schema_version":1,"event_type":"requ`.
            let body = &out[mid..];
            let cut = body
                .windows(14)
                .position(|w| w == b"\"event_type\":\"")
                .map_or(body.len() / 2, |p| p + 18);
            out.truncate(mid + cut.min(body.len()));
        }
        mid
    }
}

fn ride_id(w: &mut W<'_>, run: &str, n: u64, malformed: bool) {
    w.lit(b"ride-");
    w.bytes(run.as_bytes());
    w.byte(b'-');
    if malformed {
        w.byte(b'm');
    }
    w.u64(n);
}

fn driver_id(w: &mut W<'_>, city: &[u8], n: u32) {
    w.lit(b"d-");
    w.bytes(city);
    w.byte(b'-');
    w.u64(u64::from(n));
}

fn ride_event(
    w: &mut W<'_>,
    ts: &mut TsCache,
    cities: &[String],
    run: &str,
    e: &SimEvent,
    wire: Wire,
    fault: Fault,
) {
    let timestamp = e.timestamp;
    let city = cities[e.city as usize].as_bytes();
    let bad = fault != Fault::None;
    w.byte(b'{');
    if wire == Wire::Full {
        w.lit(b"\"event_id\":\"");
        w.bytes(run.as_bytes());
        w.byte(b'-');
        if bad {
            w.byte(b'm');
        }
        w.u64(e.seq);
        w.lit(b"\",\"schema_version\":");
        w.u64(u64::from(SCHEMA_VERSION));
        w.byte(b',');
    }
    w.lit(b"\"event_type\":\"");
    w.bytes(e.kind.as_str().as_bytes());
    w.lit(b"\",\"ride_id\":\"");
    ride_id(w, run, e.ride, bad);
    w.lit(b"\",\"timestamp\":\"");
    match fault {
        Fault::BadTimestamp => w.lit(b"26/11/2026 12:00:00"),
        Fault::FarTimestamp => {
            // The same instant a thousand years on: far outside 2000..2100.
            let at = w.pos;
            w.ts(ts, timestamp);
            let d = &mut w.buf[at];
            *d = if *d == b'9' { b'1' } else { *d + 1 };
        }
        _ => w.ts(ts, timestamp),
    }
    if wire == Wire::Seed && w.buf[w.pos - 1] == b'Z' {
        // `…SS.mmmZ` → `…SS.mmm000`: naive, microseconds, as `isoformat()` writes.
        w.pos -= 1;
        w.lit(b"000");
    }
    w.byte(b'"');
    if fault != Fault::MissingCity {
        w.lit(b",\"city\":\"");
        w.bytes(city);
        w.byte(b'"');
    }
    w.lit(b",\"estimated_fare\":");
    match fault {
        Fault::FareAsString => {
            w.byte(b'"');
            w.fixed::<2>(e.estimated_fare);
            w.byte(b'"');
        }
        Fault::NegativeFare => {
            w.byte(b'-');
            w.fixed::<2>(e.estimated_fare.abs().max(0.01));
        }
        _ => w.fixed::<2>(e.estimated_fare),
    }
    w.lit(b",\"user_id\":\"u-");
    w.bytes(city);
    w.byte(b'-');
    w.u64(u64::from(e.user));
    w.byte(b'"');
    if let Some(d) = e.driver {
        w.lit(b",\"driver_id\":\"");
        driver_id(w, city, d);
        w.byte(b'"');
    }
    w.lit(b",\"pickup\":{\"lat\":");
    w.fixed::<6>(e.pickup.lat);
    w.lit(b",\"lng\":");
    w.fixed::<6>(e.pickup.lng);
    w.lit(b"},\"dropoff\":{\"lat\":");
    w.fixed::<6>(e.dropoff.lat);
    w.lit(b",\"lng\":");
    w.fixed::<6>(e.dropoff.lng);
    w.byte(b'}');
    if let Some(f) = e.final_fare {
        w.lit(b",\"final_fare\":");
        w.fixed::<2>(f);
    }
    if let Some(by) = e.cancelled_by {
        w.lit(b",\"cancelled_by\":\"");
        w.bytes(by.as_str().as_bytes());
        w.byte(b'"');
    }
    w.byte(b'}');
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Truncated,
    MissingCity,
    FareAsString,
    BadTimestamp,
    FarTimestamp,
    NegativeFare,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{
        CancelledBy, DriverStatus, LatLng, RideEvent, parse_driver_location, parse_ride_event,
    };

    fn sample() -> SimEvent {
        SimEvent {
            seq: 1234,
            kind: EventType::Completed,
            timestamp: 1_764_158_400_007,
            ride: 77,
            city: 1,
            user: 4242,
            driver: Some(17),
            pickup: LatLng {
                lat: 48.123456,
                lng: -16.5,
            },
            dropoff: LatLng {
                lat: 48.2,
                lng: 16.000001,
            },
            estimated_fare: 12.3,
            final_fare: Some(13.05),
            cancelled_by: None,
        }
    }

    fn encoder() -> Encoder {
        Encoder::new("ab12cd34", &["berlin".to_string(), "vienna".to_string()])
    }

    #[test]
    fn seed_wire_is_what_the_seed_producer_sends_and_reads_as_the_same_instant() {
        let mut enc = encoder().with_wire(Wire::Seed);
        let mut buf = Vec::new();
        let e = sample();
        let mid = enc.ride_event(&e, e.timestamp, &mut buf);
        let text = std::str::from_utf8(&buf[mid..]).unwrap();
        assert_eq!(
            text,
            r#"{"event_type":"completed","ride_id":"ride-ab12cd34-77","timestamp":"2025-11-26T12:00:00.007000","city":"vienna","estimated_fare":12.30,"user_id":"u-vienna-4242","driver_id":"d-vienna-17","pickup":{"lat":48.123456,"lng":-16.500000},"dropoff":{"lat":48.200000,"lng":16.000001},"final_fare":13.05}"#
        );
        let ev = crate::events::parse_ride_event(&buf[mid..]).unwrap();
        assert_eq!(ev.event_time, e.timestamp);
        assert_eq!(
            ev.event_id_at("ride-events", 3, 42),
            "kafka:ride-events:3:42"
        );
    }

    #[test]
    fn ride_event_is_what_serde_writes_and_reads() {
        let mut enc = encoder();
        let mut buf = b"junk".to_vec();
        let e = sample();
        let mid = enc.ride_event(&e, e.timestamp, &mut buf);
        assert_eq!(&buf[4..mid], b"ride-ab12cd34-77");
        let out = buf[mid..].to_vec();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            r#"{"event_id":"ab12cd34-1234","schema_version":1,"event_type":"completed","ride_id":"ride-ab12cd34-77","timestamp":"2025-11-26T12:00:00.007Z","city":"vienna","estimated_fare":12.30,"user_id":"u-vienna-4242","driver_id":"d-vienna-17","pickup":{"lat":48.123456,"lng":-16.500000},"dropoff":{"lat":48.200000,"lng":16.000001},"final_fare":13.05}"#
        );
        let parsed: RideEvent = serde_json::from_slice(&out).unwrap();
        let expected = RideEvent {
            event_id: "ab12cd34-1234".into(),
            schema_version: 1,
            event_type: EventType::Completed,
            ride_id: "ride-ab12cd34-77".into(),
            timestamp: "2025-11-26T12:00:00.007Z".into(),
            city: "vienna".into(),
            estimated_fare: 12.3,
            user_id: "u-vienna-4242".into(),
            driver_id: Some("d-vienna-17".into()),
            pickup: e.pickup,
            dropoff: e.dropoff,
            final_fare: Some(13.05),
            cancelled_by: None,
        };
        assert_eq!(parsed, expected);
        // Byte-for-byte what serde would write, apart from the fixed decimals.
        let v1: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let v2 = serde_json::to_value(&expected).unwrap();
        assert_eq!(v1, v2);
        assert!(parse_ride_event(&out).is_ok());

        // A cancellation without driver, 90 s late.
        let mut c = sample();
        c.kind = EventType::Cancelled;
        c.driver = None;
        c.final_fare = None;
        c.cancelled_by = Some(CancelledBy::Rider);
        let mut out = Vec::new();
        let mid = enc.ride_event(&c, c.timestamp - 90_000, &mut out);
        let p: RideEvent = serde_json::from_slice(&out[mid..]).unwrap();
        assert_eq!(p.cancelled_by, Some(CancelledBy::Rider));
        assert_eq!(p.driver_id, None);
        assert_eq!(p.timestamp, "2025-11-26T11:58:30.007Z");
    }

    #[test]
    fn timestamps_match_the_reference_formatter() {
        let mut enc = encoder();
        for ms in [
            0i64,
            999,
            1000,
            1_764_158_400_123,
            1_764_158_459_999,
            951_782_400_000,
            -1,
        ] {
            let mut buf = [0u8; 64];
            let mut w = W {
                buf: &mut buf,
                pos: 0,
            };
            w.ts(&mut enc.ts, ms);
            let n = w.pos;
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                format_millis(ms),
                "{ms}"
            );
        }
    }

    #[test]
    fn fixed_numbers() {
        let f = |v: f64, d: u32| {
            let mut o = Vec::new();
            push_fixed(&mut o, v, d);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(f(12.3, 2), "12.30");
        assert_eq!(f(0.005, 2), "0.01");
        assert_eq!(f(-0.5, 6), "-0.500000");
        assert_eq!(f(-0.0000001, 6), "0.000000");
        assert_eq!(f(13.000001, 6), "13.000001");
        assert_eq!(f(52.123456789, 6), "52.123457");
        assert_eq!(f(0.0, 2), "0.00");
    }

    #[test]
    fn location_is_what_serde_reads() {
        let mut enc = encoder();
        let mut out = Vec::new();
        let l = LocationEvent {
            city: 0,
            driver: 5,
            lat: 52.5,
            lng: 13.4,
            status: DriverStatus::OnTrip,
            timestamp: 1_764_158_400_000,
        };
        let mid = enc.location(&l, &mut out);
        assert_eq!(&out[..mid], b"d-berlin-5");
        let loc = parse_driver_location(&out[mid..]).unwrap();
        assert_eq!(
            (
                loc.schema_version,
                &*loc.driver_id,
                &*loc.city,
                loc.lat,
                loc.lng,
                loc.status
            ),
            (1, "d-berlin-5", "berlin", 52.5, 13.4, DriverStatus::OnTrip)
        );
        assert_eq!(
            loc.timestamp,
            crate::events::WireTime::Text("2025-11-26T12:00:00.000Z".into())
        );
        assert_eq!(loc.event_time, l.timestamp);
    }

    #[test]
    fn every_malformed_variant_is_rejected_for_its_reason() {
        let mut enc = encoder();
        for reason in RejectReason::ALL {
            let mut out = Vec::new();
            let mid = enc.malformed(reason, &sample(), &mut out);
            let (key, payload) = out.split_at(mid);
            assert!(!payload.contains(&b'\n'));
            let got = parse_ride_event(payload).map(|_| ()).unwrap_err();
            assert_eq!(
                got.reason,
                reason,
                "{}: {got}",
                String::from_utf8_lossy(payload)
            );
            assert_eq!(key, b"ride-ab12cd34-m77");
        }
    }
}
