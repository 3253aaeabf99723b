-- Synthetic history for `ridectl bench query`: {rows:UInt64} ride events numbered from
-- {first:UInt64}, of {total:UInt64} spread evenly over {days:UInt32} days ending at
-- {end:DateTime64(3, 'UTC')},
-- with the generator's city weights and event-type mix. Deterministic (hashes of the
-- row number), so every run fills the same data. The materialized view fills the rollup.
INSERT INTO ride_events
    (event_id, schema_version, event_type, ride_id, timestamp, city, estimated_fare, user_id,
     driver_id, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, final_fare, cancelled_by,
     kafka_partition, kafka_offset)
SELECT
    concat('bench-', toString(n))                                       AS event_id,
    1                                                                   AS schema_version,
    multiIf(t < 28, 'requested', t < 54, 'accepted', t < 78, 'started', t < 96, 'completed', 'cancelled') AS event_type,
    concat('ride-', toString(intDiv(n, 4)))                             AS ride_id,
    fromUnixTimestamp64Milli(toInt64(toUnixTimestamp64Milli({end:DateTime64(3, 'UTC')})
        - toInt64({days:UInt32}) * 86400000
        + toInt64(intDiv(n * toUInt64({days:UInt32}) * 86400000, {total:UInt64}))), 'UTC') AS timestamp,
    multiIf(c < 22, 'berlin', c < 38, 'vienna', c < 52, 'prague', c < 66, 'warsaw', c < 78, 'budapest', c < 88, 'munich', c < 95, 'krakow', 'bratislava') AS city,
    round(3 + (cityHash64(n, 2) % 4000) / 100, 2)                       AS estimated_fare,
    concat('u-', toString(cityHash64(n, 3) % 250000))                   AS user_id,
    ''                                                                  AS driver_id,
    0, 0, 0, 0,
    NULL                                                                AS final_fare,
    if(t >= 96, 'rider', '')                                            AS cancelled_by,
    toUInt16(n % 12)                                                    AS kafka_partition,
    n                                                                   AS kafka_offset
FROM
(
    SELECT number + {first:UInt64} AS n, cityHash64(n, 0) % 100 AS t, cityHash64(n, 1) % 100 AS c
    FROM numbers({rows:UInt64})
)
