-- Raw ride events: the seed design's table, with every field of ridectl's event
-- schema and the Kafka coordinates each row came from.
-- Written by `ridectl ingest`, one insert per batch with an insert_deduplication_token
-- derived from (topic, partition, first offset, last offset): a retried or replayed
-- batch is dropped by the deduplication window below, so rows land exactly once.
CREATE TABLE IF NOT EXISTS ride_events
(
    event_id        String,
    schema_version  UInt8,
    event_type      LowCardinality(String),
    ride_id         String,
    timestamp       DateTime64(3, 'UTC'),
    city            LowCardinality(String),
    estimated_fare  Float64,
    user_id         String,
    driver_id       String DEFAULT '',
    pickup_lat      Float64,
    pickup_lng      Float64,
    dropoff_lat     Float64,
    dropoff_lng     Float64,
    final_fare      Nullable(Float64),
    cancelled_by    LowCardinality(String) DEFAULT '',
    kafka_partition UInt16,
    kafka_offset    UInt64,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (city, timestamp)
TTL toDateTime(timestamp) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000;
