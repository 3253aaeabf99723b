//! The event schema on the wire (JSON, one object per Kafka message) and its
//! validation. See `docs/events.md` for the field-by-field description.
//!
//! Ride events are a superset of the seed design's producer format (`event_type`,
//! `ride_id`, `timestamp`, `user_id`, `pickup`, `dropoff`, `estimated_fare`, `city`),
//! so its Spark schema and its ClickHouse `JSONEachRow` table read them unchanged.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::{EpochMillis, parse_iso8601};

/// The current `schema_version` of ride events and driver locations.
pub const SCHEMA_VERSION: u32 = 1;

/// A ride lifecycle step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A rider asked for a ride.
    Requested,
    /// A driver accepted it.
    Accepted,
    /// The rider was picked up.
    Started,
    /// The ride ended at the drop-off (carries `final_fare`).
    Completed,
    /// The ride was cancelled (carries `cancelled_by`).
    Cancelled,
}

impl EventType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Requested => "requested",
            EventType::Accepted => "accepted",
            EventType::Started => "started",
            EventType::Completed => "completed",
            EventType::Cancelled => "cancelled",
        }
    }

    /// True for `completed` and `cancelled`.
    pub fn is_terminal(self) -> bool {
        matches!(self, EventType::Completed | EventType::Cancelled)
    }
}

/// Who cancelled a ride.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelledBy {
    /// The rider (before or after acceptance).
    Rider,
    /// The driver (after acceptance).
    Driver,
}

impl CancelledBy {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelledBy::Rider => "rider",
            CancelledBy::Driver => "driver",
        }
    }
}

/// A position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatLng {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lng: f64,
}

/// A ride event as produced (owned).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RideEvent {
    /// Unique id of this event.
    pub event_id: String,
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Lifecycle step.
    pub event_type: EventType,
    /// The ride (Kafka key).
    pub ride_id: String,
    /// Event time, ISO-8601 UTC with milliseconds.
    pub timestamp: String,
    /// City name.
    pub city: String,
    /// The ride's fare estimate, on every event of the ride.
    pub estimated_fare: f64,
    /// The rider.
    pub user_id: String,
    /// The driver, once one accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_id: Option<String>,
    /// Pick-up point.
    pub pickup: LatLng,
    /// Drop-off point.
    pub dropoff: LatLng,
    /// Charged fare (`completed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_fare: Option<f64>,
    /// Who cancelled (`cancelled` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<CancelledBy>,
}

/// A driver status in a location update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverStatus {
    /// Online, waiting for a ride.
    Available,
    /// Driving to a pick-up or with a rider.
    OnTrip,
    /// Going offline (last update of a shift).
    Offline,
}

impl DriverStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DriverStatus::Available => "available",
            DriverStatus::OnTrip => "on_trip",
            DriverStatus::Offline => "offline",
        }
    }
}

/// A driver GPS update (topic `driver-locations`, key driver_id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriverLocation {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The driver (Kafka key).
    pub driver_id: String,
    /// City name.
    pub city: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Availability.
    pub status: DriverStatus,
    /// Event time, ISO-8601 UTC with milliseconds.
    pub timestamp: String,
}

/// Why a message was rejected to the dead-letter topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not JSON, or not a JSON object.
    InvalidJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type or an unknown enum value.
    WrongType,
    /// The timestamp is not ISO-8601.
    InvalidTimestamp,
    /// The timestamp is too far ahead of the wall clock (or absurdly old).
    TimestampOutOfRange,
    /// A value is out of its domain (negative fare, empty id, bad coordinates).
    InvalidValue,
}

impl RejectReason {
    /// All reasons, for metrics.
    pub const ALL: [RejectReason; 6] = [
        RejectReason::InvalidJson,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::InvalidTimestamp,
        RejectReason::TimestampOutOfRange,
        RejectReason::InvalidValue,
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::InvalidValue => "invalid_value",
        }
    }
}

/// A rejected message: the reason and a detail for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable reason.
    pub reason: RejectReason,
    /// What exactly was wrong.
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

impl Rejection {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }

    fn from_json(e: &serde_json::Error) -> Self {
        let msg = e.to_string();
        let reason = match e.classify() {
            serde_json::error::Category::Data if msg.starts_with("missing field") => {
                RejectReason::MissingField
            }
            // The same key twice: which value is meant is ambiguous.
            serde_json::error::Category::Data if msg.starts_with("duplicate field") => {
                RejectReason::InvalidJson
            }
            serde_json::error::Category::Data => RejectReason::WrongType,
            _ => RejectReason::InvalidJson,
        };
        Rejection::new(reason, msg)
    }
}

/// The longest city name accepted, in characters (a name is shown on dashboards and
/// is a ClickHouse `LowCardinality` key: anything longer is not a city).
pub const MAX_CITY_CHARS: usize = 64;

/// An event time as written on the wire: ISO-8601 text or epoch milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub enum WireTime<'a> {
    /// ISO-8601 (`Z`, `±hh:mm` or naive = UTC; 0–9 fractional digits).
    Text(Cow<'a, str>),
    /// Epoch milliseconds, as a JSON number.
    Millis(f64),
}

impl fmt::Display for WireTime<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireTime::Text(s) => write!(f, "{s:?}"),
            WireTime::Millis(ms) => write!(f, "{ms}"),
        }
    }
}

impl WireTime<'_> {
    /// The time in epoch milliseconds; `None` if it is neither form.
    pub fn millis(&self) -> Option<EpochMillis> {
        match self {
            WireTime::Text(s) => parse_iso8601(s),
            WireTime::Millis(ms) if ms.is_finite() && ms.fract() == 0.0 => Some(*ms as i64),
            WireTime::Millis(_) => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for WireTime<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = WireTime<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO-8601 string or epoch milliseconds")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(WireTime::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(WireTime::Text(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(WireTime::Millis(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(WireTime::Millis(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(WireTime::Millis(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A ride event parsed without copying, as the workers read it: the wire contract
/// of `docs/events.md`. Required: `event_type`, `ride_id`, `timestamp`, `city`;
/// everything else is optional, and unknown fields are ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct RideEventView<'a> {
    /// Unique id of this event; absent: [`RideEventView::event_id_at`] derives one
    /// from the message's Kafka coordinates.
    #[serde(default, borrow)]
    pub event_id: Option<Cow<'a, str>>,
    /// Schema version (absent: 1).
    #[serde(default = "default_version")]
    pub schema_version: u32,
    /// Lifecycle step.
    pub event_type: EventType,
    /// The ride.
    #[serde(borrow)]
    pub ride_id: Cow<'a, str>,
    /// Event time as written.
    #[serde(borrow)]
    pub timestamp: WireTime<'a>,
    /// City name, stored and shown as written.
    #[serde(borrow)]
    pub city: Cow<'a, str>,
    /// Fare estimate (absent: left out of fare averages, never counted as 0).
    #[serde(default)]
    pub estimated_fare: Option<f64>,
    /// The rider (absent: not counted among distinct riders).
    #[serde(default, borrow)]
    pub user_id: Option<Cow<'a, str>>,
    /// The driver, once assigned.
    #[serde(default, borrow)]
    pub driver_id: Option<Cow<'a, str>>,
    /// Pick-up point.
    #[serde(default)]
    pub pickup: Option<LatLng>,
    /// Drop-off point.
    #[serde(default)]
    pub dropoff: Option<LatLng>,
    /// Charged fare (`completed`).
    #[serde(default)]
    pub final_fare: Option<f64>,
    /// Who cancelled (`cancelled`).
    #[serde(default)]
    pub cancelled_by: Option<CancelledBy>,
    /// Event time in epoch milliseconds (filled in by [`parse_ride_event`]).
    #[serde(skip)]
    pub event_time: EpochMillis,
}

impl RideEventView<'_> {
    /// The event's id: the one it carries, or one derived from where the message
    /// sits in Kafka ([`derived_event_id`]), so that a redelivery of the same message
    /// is recognised as the same event.
    pub fn event_id_at(&self, topic: &str, partition: i32, offset: i64) -> Cow<'_, str> {
        match &self.event_id {
            Some(id) => Cow::Borrowed(id.as_ref()),
            None => Cow::Owned(derived_event_id(topic, partition, offset)),
        }
    }

    /// The rider, `""` when absent.
    pub fn user(&self) -> &str {
        self.user_id.as_deref().unwrap_or_default()
    }
}

/// The id of an event that carries none: `kafka:<topic>:<partition>:<offset>`.
pub fn derived_event_id(topic: &str, partition: i32, offset: i64) -> String {
    format!("kafka:{topic}:{partition}:{offset}")
}

fn default_version() -> u32 {
    SCHEMA_VERSION
}

fn lat_lng_ok(p: &LatLng) -> bool {
    (-90.0..=90.0).contains(&p.lat) && (-180.0..=180.0).contains(&p.lng)
}

fn fare_ok(f: Option<f64>) -> bool {
    f.is_none_or(|f| f.is_finite() && f >= 0.0)
}

/// The semantic rules every consumer applies the same way (ingest, aggregate, and
/// `jobs/ride_analytics.py` mirrors them): the clock-free checks of
/// [`parse_ride_event`] / [`parse_driver_location`], plus the one that needs the wall
/// clock — event times more than `max_clock_skew` ahead of it are rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contract {
    /// `aggregation.max_clock_skew`, in milliseconds.
    pub max_clock_skew: EpochMillis,
}

impl Contract {
    /// The contract of a pipeline configuration.
    pub fn from_config(cfg: &crate::config::PipelineConfig) -> Contract {
        Contract {
            max_clock_skew: cfg.aggregation.max_clock_skew.as_millis_i64(),
        }
    }

    fn check_clock(&self, t: EpochMillis, now: EpochMillis) -> Result<(), Rejection> {
        if t > now.saturating_add(self.max_clock_skew) {
            return Err(Rejection::new(
                RejectReason::TimestampOutOfRange,
                format!(
                    "timestamp {} is more than {} ahead of the wall clock",
                    crate::time::format_millis(t),
                    crate::units::HumanDuration::from_millis(self.max_clock_skew.max(0) as u64)
                ),
            ));
        }
        Ok(())
    }

    /// A ride event that every consumer accepts at wall-clock time `now`.
    pub fn ride_event<'a>(
        &self,
        bytes: &'a [u8],
        now: EpochMillis,
    ) -> Result<RideEventView<'a>, Rejection> {
        let ev = parse_ride_event(bytes)?;
        self.check_clock(ev.event_time, now)?;
        Ok(ev)
    }

    /// A driver location that every consumer accepts at wall-clock time `now`.
    pub fn driver_location<'a>(
        &self,
        bytes: &'a [u8],
        now: EpochMillis,
    ) -> Result<DriverLocationView<'a>, Rejection> {
        let loc = parse_driver_location(bytes)?;
        self.check_clock(loc.event_time, now)?;
        Ok(loc)
    }
}

/// The event time of `t`, checked against the years this system can have events in.
fn event_time(t: &WireTime<'_>) -> Result<EpochMillis, Rejection> {
    let ms = t.millis().ok_or_else(|| {
        Rejection::new(
            RejectReason::InvalidTimestamp,
            format!("timestamp {t} is neither ISO-8601 nor integer epoch milliseconds"),
        )
    })?;
    // Years away in either direction: not an event of this system.
    const MIN_TIME: EpochMillis = 946_684_800_000; // 2000-01-01
    const MAX_TIME: EpochMillis = 4_102_444_800_000; // 2100-01-01
    if !(MIN_TIME..MAX_TIME).contains(&ms) {
        return Err(Rejection::new(
            RejectReason::TimestampOutOfRange,
            format!("timestamp {t} is outside 2000..2100"),
        ));
    }
    Ok(ms)
}

/// Checks a city name: not empty, at most [`MAX_CITY_CHARS`] characters. Any other
/// text (quotes, SQL) is data.
fn city_ok(city: &str) -> Result<(), Rejection> {
    if city.trim().is_empty() {
        return Err(Rejection::new(RejectReason::InvalidValue, "city is empty"));
    }
    let n = city.chars().count();
    if n > MAX_CITY_CHARS {
        return Err(Rejection::new(
            RejectReason::InvalidValue,
            format!("city is {n} characters long (at most {MAX_CITY_CHARS})"),
        ));
    }
    Ok(())
}

/// Parses and validates one ride event against the wire contract, without the wall
/// clock ([`Contract::ride_event`] adds it). Every event that passes is one the whole
/// pipeline accepts; everything else is dead-lettered with the returned reason.
pub fn parse_ride_event(bytes: &[u8]) -> Result<RideEventView<'_>, Rejection> {
    let mut ev: RideEventView<'_> =
        serde_json::from_slice(bytes).map_err(|e| Rejection::from_json(&e))?;
    ev.event_time = event_time(&ev.timestamp)?;
    let invalid = |d: String| Err(Rejection::new(RejectReason::InvalidValue, d));
    if ev.ride_id.is_empty() {
        return invalid("ride_id is empty".into());
    }
    if ev.event_id.as_deref() == Some("") || ev.user_id.as_deref() == Some("") {
        return invalid("event_id and user_id must not be empty (leave them out if unknown)".into());
    }
    city_ok(&ev.city)?;
    if !fare_ok(ev.estimated_fare) {
        return invalid(format!(
            "estimated_fare {} is not a non-negative number",
            ev.estimated_fare.unwrap_or_default()
        ));
    }
    if !fare_ok(ev.final_fare) {
        return invalid(format!(
            "final_fare {} is not a non-negative number",
            ev.final_fare.unwrap_or_default()
        ));
    }
    if [ev.pickup, ev.dropoff].iter().flatten().any(|p| !lat_lng_ok(p)) {
        return invalid("pickup/dropoff coordinates out of range".into());
    }
    if ev.schema_version == 0 || ev.schema_version > SCHEMA_VERSION {
        return invalid(format!(
            "schema_version {} is not supported (max {SCHEMA_VERSION})",
            ev.schema_version
        ));
    }
    Ok(ev)
}

/// A driver location parsed without copying: required `driver_id`, `city`, `lat`,
/// `lng`, `status`, `timestamp`; `schema_version` optional; unknown fields ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct DriverLocationView<'a> {
    /// Schema version (absent: 1).
    #[serde(default = "default_version")]
    pub schema_version: u32,
    /// The driver (Kafka key).
    #[serde(borrow)]
    pub driver_id: Cow<'a, str>,
    /// City name.
    #[serde(borrow)]
    pub city: Cow<'a, str>,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Availability.
    pub status: DriverStatus,
    /// Event time as written.
    #[serde(borrow)]
    pub timestamp: WireTime<'a>,
    /// Event time in epoch milliseconds (filled in by [`parse_driver_location`]).
    #[serde(skip)]
    pub event_time: EpochMillis,
}

/// Parses and validates a driver location against the wire contract, without the
/// wall clock ([`Contract::driver_location`] adds it).
pub fn parse_driver_location(bytes: &[u8]) -> Result<DriverLocationView<'_>, Rejection> {
    let mut loc: DriverLocationView<'_> =
        serde_json::from_slice(bytes).map_err(|e| Rejection::from_json(&e))?;
    loc.event_time = event_time(&loc.timestamp)?;
    if loc.driver_id.is_empty() {
        return Err(Rejection::new(
            RejectReason::InvalidValue,
            "driver_id is empty",
        ));
    }
    city_ok(&loc.city)?;
    if !lat_lng_ok(&LatLng {
        lat: loc.lat,
        lng: loc.lng,
    }) {
        return Err(Rejection::new(
            RejectReason::InvalidValue,
            "coordinates out of range",
        ));
    }
    if loc.schema_version == 0 || loc.schema_version > SCHEMA_VERSION {
        return Err(Rejection::new(
            RejectReason::InvalidValue,
            format!("schema_version {} is not supported", loc.schema_version),
        ));
    }
    Ok(loc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e1","schema_version":1,"event_type":"requested","ride_id":"r1",
        "timestamp":"2026-11-26T12:00:00.123Z","city":"berlin","estimated_fare":12.5,"user_id":"u1",
        "pickup":{"lat":52.5,"lng":13.4},"dropoff":{"lat":52.6,"lng":13.5}}"#;

    #[test]
    fn parses_a_good_event() {
        let ev = parse_ride_event(GOOD.as_bytes()).unwrap();
        assert_eq!(ev.event_type, EventType::Requested);
        assert_eq!(
            ev.event_time,
            parse_iso8601("2026-11-26T12:00:00.123Z").unwrap()
        );
        assert_eq!(ev.city, "berlin");
    }

    #[test]
    fn seed_design_format_is_accepted() {
        // The seed producer's fields plus an event_id; its naive-UTC microsecond
        // timestamps (Python's isoformat()) and a missing schema_version are accepted.
        let seed = r#"{"event_id":"x","event_type":"requested","ride_id":"ride-abc-123",
            "timestamp":"2024-01-01T12:00:00.123456","user_id":"user-456",
            "pickup":{"lat":48.1486,"lng":17.1077},"dropoff":{"lat":48.1586,"lng":17.1177},
            "estimated_fare":8.50,"city":"bratislava"}"#;
        assert!(parse_ride_event(seed.as_bytes()).is_ok());
    }

    fn reason(json: &str) -> RejectReason {
        parse_ride_event(json.as_bytes()).unwrap_err().reason
    }

    #[test]
    fn every_reason() {
        assert_eq!(reason("{not json"), RejectReason::InvalidJson);
        assert_eq!(reason("[1,2]"), RejectReason::WrongType);
        assert_eq!(
            reason(&GOOD.replace(r#""city":"berlin","#, "")),
            RejectReason::MissingField
        );
        assert_eq!(
            reason(&GOOD.replace("12.5", "\"12.5\"")),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(&GOOD.replace("requested", "teleported")),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(&GOOD.replace("2026-11-26T12:00:00.123Z", "yesterday")),
            RejectReason::InvalidTimestamp
        );
        assert_eq!(
            reason(&GOOD.replace("2026-11-26", "3026-11-26")),
            RejectReason::TimestampOutOfRange
        );
        assert_eq!(
            reason(&GOOD.replace("12.5", "-3")),
            RejectReason::InvalidValue
        );
    }

    #[test]
    fn owned_event_round_trips_through_the_view() {
        let ev = RideEvent {
            event_id: "e".into(),
            schema_version: 1,
            event_type: EventType::Cancelled,
            ride_id: "r".into(),
            timestamp: "2026-11-26T12:00:00.000Z".into(),
            city: "prague".into(),
            estimated_fare: 9.0,
            user_id: "u".into(),
            driver_id: Some("d".into()),
            pickup: LatLng {
                lat: 50.0,
                lng: 14.4,
            },
            dropoff: LatLng {
                lat: 50.1,
                lng: 14.5,
            },
            final_fare: None,
            cancelled_by: Some(CancelledBy::Driver),
        };
        let json = serde_json::to_vec(&ev).unwrap();
        let view = parse_ride_event(&json).unwrap();
        assert_eq!(view.cancelled_by, Some(CancelledBy::Driver));
        assert_eq!(view.driver_id.as_deref(), Some("d"));
    }
}
