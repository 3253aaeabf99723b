-- The oracle of `city_window_metrics`: every (city, window) computed directly from
-- raw ride events by ClickHouse, independently of the aggregation worker.
-- Used by `ridectl verify` and tests/aggregate.rs.
--
-- {events:Identifier}: a table of the events to count (columns event_type,
-- timestamp DateTime64(3), city, estimated_fare, user_id; fare and rider may be
-- NULL), each event once;
-- {len:Int64} / {slide:Int64}: aggregation.window / aggregation.slide in ms.
-- Windows are [start, start + len) with start ≡ 0 (mod slide): an event at t
-- belongs to the len / slide windows whose start lies in (t - len, t].
SELECT
    toInt64(ws) AS window_start,
    toInt64(ws + {len:Int64}) AS window_end,
    city,
    count() AS total_events,
    countIf(event_type = 'requested') AS requests,
    countIf(event_type = 'completed') AS completions,
    countIf(event_type = 'cancelled') AS cancellations,
    -- An event without a fare is left out of the average; one without a rider is
    -- not a rider (docs/events.md).
    if(count(estimated_fare) = 0, 0, ifNull(sum(estimated_fare), 0) / count(estimated_fare)) AS avg_fare,
    uniqExactIf(user_id, ifNull(user_id, '') != '') AS unique_riders,
    if(requests = 0, 0, cancellations / requests) AS cancellation_rate,
    if(requests = 0, 0, completions / requests) AS completion_rate,
    toUInt8(1) AS is_final,
    toInt64(0) AS updated_at
FROM {events:Identifier}
ARRAY JOIN arrayMap(
    k -> intDiv(toUnixTimestamp64Milli(timestamp), {slide:Int64}) * {slide:Int64} - k * {slide:Int64},
    range(intDiv({len:Int64}, {slide:Int64}))) AS ws
GROUP BY city, ws
ORDER BY city, window_start
