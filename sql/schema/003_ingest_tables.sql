-- Driver supply: the latest position and status of every driver.
-- ReplacingMergeTree keeps the newest row per driver (by event time) after merges;
-- queries read it with FINAL, which is cheap: one row per driver.
CREATE TABLE IF NOT EXISTS driver_locations
(
    driver_id       String,
    city            LowCardinality(String),
    lat             Float64,
    lng             Float64,
    status          LowCardinality(String),
    timestamp       DateTime64(3, 'UTC'),
    kafka_partition UInt16,
    kafka_offset    UInt64,
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(timestamp)
ORDER BY driver_id
SETTINGS non_replicated_deduplication_window = 10000;

-- Per-minute, per-city rollup of ride_events, filled by the materialized view below
-- at insert time: dashboards and `ridectl query` read minutes, not raw events.
CREATE TABLE IF NOT EXISTS city_minute_rollup
(
    minute         DateTime('UTC'),
    city           LowCardinality(String),
    events         AggregateFunction(count),
    requests       AggregateFunction(countIf, UInt8),
    accepts        AggregateFunction(countIf, UInt8),
    starts         AggregateFunction(countIf, UInt8),
    completions    AggregateFunction(countIf, UInt8),
    cancellations  AggregateFunction(countIf, UInt8),
    fare_sum       AggregateFunction(sum, Float64),
    fare_count     AggregateFunction(count),
    riders         AggregateFunction(uniq, String),
    last_event     SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (city, minute)
TTL minute + INTERVAL 400 DAY
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS city_minute_rollup_mv TO city_minute_rollup AS
SELECT
    toStartOfMinute(timestamp)                   AS minute,
    city,
    countState()                                 AS events,
    countIfState(event_type = 'requested')       AS requests,
    countIfState(event_type = 'accepted')        AS accepts,
    countIfState(event_type = 'started')         AS starts,
    countIfState(event_type = 'completed')       AS completions,
    countIfState(event_type = 'cancelled')       AS cancellations,
    sumState(estimated_fare)                     AS fare_sum,
    countState()                                 AS fare_count,
    uniqState(user_id)                           AS riders,
    max(timestamp)                               AS last_event
FROM ride_events
GROUP BY minute, city;
