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

/// Kafka header carrying the reason a message was dead-lettered.
pub const REASON_HEADER: &str = "ridectl-reason";
/// Kafka header carrying the human-readable detail of a dead-letter reason.
pub const DETAIL_HEADER: &str = "ridectl-detail";
/// Kafka header naming the topic a dead-lettered message came from.
pub const SOURCE_TOPIC_HEADER: &str = "ridectl-source-topic";
/// Kafka header with `partition/offset` of the dead-lettered message.
pub const SOURCE_OFFSET_HEADER: &str = "ridectl-source-offset";

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
#[serde(deny_unknown_fields)]
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
            serde_json::error::Category::Data => RejectReason::WrongType,
            _ => RejectReason::InvalidJson,
        };
        Rejection::new(reason, msg)
    }
}

/// A ride event parsed without copying, as the workers read it.
#[derive(Clone, Debug, Deserialize)]
pub struct RideEventView<'a> {
    /// Unique id of this event.
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    /// Schema version.
    #[serde(default = "default_version")]
    pub schema_version: u32,
    /// Lifecycle step.
    pub event_type: EventType,
    /// The ride.
    #[serde(borrow)]
    pub ride_id: Cow<'a, str>,
    /// Event time as written.
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    /// City name.
    #[serde(borrow)]
    pub city: Cow<'a, str>,
    /// Fare estimate.
    pub estimated_fare: f64,
    /// The rider.
    #[serde(borrow)]
    pub user_id: Cow<'a, str>,
    /// The driver, once assigned.
    #[serde(default, borrow)]
    pub driver_id: Option<Cow<'a, str>>,
    /// Pick-up point.
    pub pickup: LatLng,
    /// Drop-off point.
    pub dropoff: LatLng,
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

fn default_version() -> u32 {
    SCHEMA_VERSION
}

fn lat_lng_ok(p: &LatLng) -> bool {
    (-90.0..=90.0).contains(&p.lat) && (-180.0..=180.0).contains(&p.lng)
}

/// Parses and validates one ride event. Every event that passes is one the whole
/// pipeline (aggregate, ingest, Spark) accepts; everything else is dead-lettered with
/// the returned reason.
pub fn parse_ride_event(bytes: &[u8]) -> Result<RideEventView<'_>, Rejection> {
    let mut ev: RideEventView<'_> =
        serde_json::from_slice(bytes).map_err(|e| Rejection::from_json(&e))?;
    ev.event_time = parse_iso8601(&ev.timestamp).ok_or_else(|| {
        Rejection::new(
            RejectReason::InvalidTimestamp,
            format!("timestamp {:?} is not ISO-8601", ev.timestamp),
        )
    })?;
    // Years away in either direction: not an event of this system.
    const MIN_TIME: EpochMillis = 946_684_800_000; // 2000-01-01
    const MAX_TIME: EpochMillis = 4_102_444_800_000; // 2100-01-01
    if !(MIN_TIME..MAX_TIME).contains(&ev.event_time) {
        return Err(Rejection::new(
            RejectReason::TimestampOutOfRange,
            format!("timestamp {} is outside 2000..2100", ev.timestamp),
        ));
    }
    let invalid = |d: String| Err(Rejection::new(RejectReason::InvalidValue, d));
    if ev.event_id.is_empty()
        || ev.ride_id.is_empty()
        || ev.user_id.is_empty()
        || ev.city.is_empty()
    {
        return invalid("event_id, ride_id, user_id and city must not be empty".into());
    }
    if !(ev.estimated_fare.is_finite() && ev.estimated_fare >= 0.0) {
        return invalid(format!(
            "estimated_fare {} is not a non-negative number",
            ev.estimated_fare
        ));
    }
    if !lat_lng_ok(&ev.pickup) || !lat_lng_ok(&ev.dropoff) {
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

/// A driver location parsed and validated, with its event time.
pub fn parse_driver_location(bytes: &[u8]) -> Result<(DriverLocation, EpochMillis), Rejection> {
    let loc: DriverLocation =
        serde_json::from_slice(bytes).map_err(|e| Rejection::from_json(&e))?;
    let t = parse_iso8601(&loc.timestamp).ok_or_else(|| {
        Rejection::new(
            RejectReason::InvalidTimestamp,
            format!("timestamp {:?} is not ISO-8601", loc.timestamp),
        )
    })?;
    if loc.driver_id.is_empty() || loc.city.is_empty() {
        return Err(Rejection::new(
            RejectReason::InvalidValue,
            "driver_id and city must not be empty",
        ));
    }
    if !lat_lng_ok(&LatLng {
        lat: loc.lat,
        lng: loc.lng,
    }) {
        return Err(Rejection::new(
            RejectReason::InvalidValue,
            "coordinates out of range",
        ));
    }
    Ok((loc, t))
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
