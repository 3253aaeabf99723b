-- The wire contract makes estimated_fare, user_id, pickup and dropoff optional
-- (docs/events.md): the user's own ride services send what they have. An absent
-- fare or point is stored as NULL, never as 0 (a 0 fare would drag averages down,
-- a 0,0 point is in the Gulf of Guinea); an absent rider is stored as ''.
ALTER TABLE ride_events
    MODIFY COLUMN estimated_fare Nullable(Float64),
    MODIFY COLUMN pickup_lat     Nullable(Float64),
    MODIFY COLUMN pickup_lng     Nullable(Float64),
    MODIFY COLUMN dropoff_lat    Nullable(Float64),
    MODIFY COLUMN dropoff_lng    Nullable(Float64);

-- The rollup counts a fare only when there is one, and a rider only when named.
-- The column types are unchanged (-StateIf keeps the state type of -State), so the
-- minutes already rolled up merge with the new ones. Stop `ridectl ingest` while
-- this runs: an insert between the DROP and the CREATE would miss the rollup.
DROP VIEW IF EXISTS city_minute_rollup_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS city_minute_rollup_mv TO city_minute_rollup AS
SELECT
    toStartOfMinute(timestamp)                                      AS minute,
    city,
    countState()                                                    AS events,
    countIfState(event_type = 'requested')                          AS requests,
    countIfState(event_type = 'accepted')                           AS accepts,
    countIfState(event_type = 'started')                            AS starts,
    countIfState(event_type = 'completed')                          AS completions,
    countIfState(event_type = 'cancelled')                          AS cancellations,
    sumStateIf(ifNull(estimated_fare, 0), estimated_fare IS NOT NULL) AS fare_sum,
    countStateIf(estimated_fare IS NOT NULL)                        AS fare_count,
    uniqStateIf(user_id, user_id != '')                             AS riders,
    max(timestamp)                                                  AS last_event
FROM ride_events
GROUP BY minute, city;
