-- OPTIONAL, for a production ClickHouse server only. Never applied by
-- `ridectl schema apply`, and never on the local chDB endpoint: chDB cannot run
-- Kafka-engine consumers, and a Kafka-engine table in a persistent database stops
-- its data directory from reopening.
--
-- The seed design's ingestion path: ClickHouse pulls `ride-events` itself. It is
-- at-least-once (duplicates after a consumer rebalance) and stalls on a bad message
-- unless kafka_handle_error_mode = 'stream'; `ridectl ingest` is the exactly-once
-- alternative. Use one or the other, not both, or every event lands twice.
--
-- Apply by hand:  clickhouse-client --database ridectl --multiquery < sql/optional/kafka_engine.sql
CREATE TABLE IF NOT EXISTS ride_events_queue
(
    event_id       String,
    event_type     String,
    ride_id        String,
    timestamp      DateTime64(3, 'UTC'),
    city           LowCardinality(String),
    estimated_fare Float64,
    user_id        String,
    driver_id      String
)
ENGINE = Kafka
SETTINGS
    kafka_broker_list = 'kafka:9092',
    kafka_topic_list = 'ride-events',
    kafka_group_name = 'clickhouse-ingest',
    kafka_format = 'JSONEachRow',
    kafka_handle_error_mode = 'stream',
    date_time_input_format = 'best_effort';

CREATE MATERIALIZED VIEW IF NOT EXISTS ride_events_queue_mv TO ride_events AS
SELECT
    event_id, 1 AS schema_version, event_type, ride_id, timestamp, city,
    estimated_fare, user_id, driver_id,
    0 AS pickup_lat, 0 AS pickup_lng, 0 AS dropoff_lat, 0 AS dropoff_lng,
    NULL AS final_fare, '' AS cancelled_by,
    _partition AS kafka_partition, _offset AS kafka_offset
FROM ride_events_queue
WHERE length(_error) = 0;
