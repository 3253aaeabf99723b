-- Windowed per-city metrics of `ridectl aggregate` (docs/aggregate.md).
--
-- Workers keep per-(Kafka partition, city, window) state and upsert it here as
-- mergeable partials; the metrics rows are computed in ClickHouse from the partials
-- of every partition, so one worker or N workers in a group give the same rows, and
-- a replay after a crash rewrites the same partials (ReplacingMergeTree) and the
-- same rider pairs (set semantics). Read with FINAL. Partials and rider pairs are
-- kept 8 days (input retention + 1 day): everything a recompute can replay.

-- Per-partition partial aggregates, rewritten whenever they change. `version` is
-- (recompute epoch << 40 | next Kafka offset): it grows with the content.
CREATE TABLE IF NOT EXISTS city_window_partials
(
    city           LowCardinality(String),
    window_start   DateTime64(3, 'UTC'),
    window_end     DateTime64(3, 'UTC'),
    partition      Int32,
    total_events   UInt64,
    requests       UInt64,
    accepted       UInt64,
    started        UInt64,
    completions    UInt64,
    cancellations  UInt64,
    fare_sum       Float64,
    fare_count     UInt64,
    version        UInt64,
    updated_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (city, window_start, window_end, partition)
TTL toDateTime(window_end) + INTERVAL 8 DAY;

-- One row per (window, city, rider) as first seen by a partition's state. A replay
-- may write a pair twice; uniqExact(user_id) is exact regardless.
CREATE TABLE IF NOT EXISTS city_window_riders
(
    city          LowCardinality(String),
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    user_id       String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (city, window_start, window_end, user_id)
TTL toDateTime(window_end) + INTERVAL 8 DAY;

-- Progress of each partition of the input topic per consumer group: windows ending
-- at or before finalized_until (epoch ms) are final for the partition
-- (9223372036854775807: closed by a bounded run); offsets below position were
-- processed in this recompute epoch, offsets below effects_until had their dead
-- letters and late events produced. Partition -1 records the horizon up to which
-- final rows were emitted.
CREATE TABLE IF NOT EXISTS aggregate_progress
(
    group_id         String,
    topic            String,
    partition        Int32,
    finalized_until  Int64,
    position         Int64,
    effects_until    Int64,
    epoch            UInt32,
    max_event_time   Int64,
    updated_at       DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (group_id, topic, partition);

-- The metrics: one row per (city, window), re-emitted at every change and once
-- more with is_final = 1. A final row always wins over an update (version puts
-- is_final above updated_at), whichever worker wrote last.
CREATE TABLE IF NOT EXISTS city_window_metrics
(
    window_start       DateTime64(3, 'UTC'),
    window_end         DateTime64(3, 'UTC'),
    city               LowCardinality(String),
    total_events       UInt64,
    requests           UInt64,
    completions        UInt64,
    cancellations      UInt64,
    avg_fare           Float64,
    unique_riders      UInt64,
    cancellation_rate  Float64,
    completion_rate    Float64,
    is_final           UInt8,
    updated_at         DateTime64(3, 'UTC'),
    version            UInt64 MATERIALIZED
        bitShiftLeft(toUInt64(is_final), 62) + toUInt64(toUnixTimestamp64Milli(updated_at))
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (city, window_start, window_end);
