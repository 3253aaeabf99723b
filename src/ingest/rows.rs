//! ClickHouse rows of `ride_events` and `driver_locations`, built from validated
//! messages (RowBinary through the official crate).

use clickhouse::Row;
use serde::Serialize;

use crate::events::{DriverLocationView, RideEventView};

/// One row of `ride_events` (`ingested_at` is filled by the table's default).
#[derive(Debug, Row, Serialize)]
pub struct RideEventRow {
    /// Unique event id.
    pub event_id: String,
    /// Schema version.
    pub schema_version: u8,
    /// Lifecycle step.
    pub event_type: &'static str,
    /// Ride id.
    pub ride_id: String,
    /// Event time (DateTime64(3) as epoch milliseconds).
    pub timestamp: i64,
    /// City.
    pub city: String,
    /// Fare estimate (NULL when the event has none).
    pub estimated_fare: Option<f64>,
    /// Rider ('' when the event names none).
    pub user_id: String,
    /// Driver ('' before acceptance).
    pub driver_id: String,
    /// Pick-up latitude (NULL when absent).
    pub pickup_lat: Option<f64>,
    /// Pick-up longitude (NULL when absent).
    pub pickup_lng: Option<f64>,
    /// Drop-off latitude (NULL when absent).
    pub dropoff_lat: Option<f64>,
    /// Drop-off longitude (NULL when absent).
    pub dropoff_lng: Option<f64>,
    /// Charged fare (`completed`).
    pub final_fare: Option<f64>,
    /// Who cancelled ('' unless `cancelled`).
    pub cancelled_by: &'static str,
    /// Source partition.
    pub kafka_partition: u16,
    /// Source offset.
    pub kafka_offset: u64,
}

impl RideEventRow {
    /// The row of a validated event.
    pub fn new(ev: &RideEventView<'_>, topic: &str, partition: i32, offset: i64) -> RideEventRow {
        RideEventRow {
            event_id: ev.event_id_at(topic, partition, offset).into_owned(),
            schema_version: u8::try_from(ev.schema_version).unwrap_or(u8::MAX),
            event_type: ev.event_type.as_str(),
            ride_id: ev.ride_id.to_string(),
            timestamp: ev.event_time,
            city: ev.city.to_string(),
            estimated_fare: ev.estimated_fare,
            user_id: ev.user().to_string(),
            driver_id: ev.driver_id.as_deref().unwrap_or_default().to_string(),
            pickup_lat: ev.pickup.map(|p| p.lat),
            pickup_lng: ev.pickup.map(|p| p.lng),
            dropoff_lat: ev.dropoff.map(|p| p.lat),
            dropoff_lng: ev.dropoff.map(|p| p.lng),
            final_fare: ev.final_fare,
            cancelled_by: ev.cancelled_by.map_or("", |c| c.as_str()),
            kafka_partition: u16::try_from(partition).unwrap_or(u16::MAX),
            kafka_offset: u64::try_from(offset).unwrap_or(0),
        }
    }
}

/// One row of `driver_locations`.
#[derive(Debug, Row, Serialize)]
pub struct DriverLocationRow {
    /// Driver.
    pub driver_id: String,
    /// City.
    pub city: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Availability.
    pub status: &'static str,
    /// Event time (epoch ms).
    pub timestamp: i64,
    /// Source partition.
    pub kafka_partition: u16,
    /// Source offset.
    pub kafka_offset: u64,
}

impl DriverLocationRow {
    /// The row of a validated location update.
    pub fn new(loc: &DriverLocationView<'_>, partition: i32, offset: i64) -> DriverLocationRow {
        DriverLocationRow {
            driver_id: loc.driver_id.to_string(),
            city: loc.city.to_string(),
            lat: loc.lat,
            lng: loc.lng,
            status: loc.status.as_str(),
            timestamp: loc.event_time,
            kafka_partition: u16::try_from(partition).unwrap_or(u16::MAX),
            kafka_offset: u64::try_from(offset).unwrap_or(0),
        }
    }
}
