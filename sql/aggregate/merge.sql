-- The merged metrics rows of `ridectl aggregate`, computed from the partials of
-- every partition (city_window_partials) and the rider pairs (city_window_riders).
-- Run by the sink after every trigger; its rows go to the output table and to the
-- aggregated Kafka topic.
--
-- Windows selected: the changed ones, given as parallel arrays
--   {cities:Array(String)}, {starts:Array(Int64)}, {ends:Array(Int64)} (epoch ms),
-- and every window whose end lies in ({final_from:Int64}, {final_to:Int64}] (the
-- windows that just became final for the whole topic; empty when from = to).
-- {horizon:Int64}: every partition of the topic has finalized the windows ending at
-- or before it, so those rows are final.
-- {min_start:Int64}, {max_start:Int64}: bounds of every selected window start (they
-- let ClickHouse skip partitions and granules).
SELECT
    toUnixTimestamp64Milli(p.window_start) AS window_start,
    toUnixTimestamp64Milli(p.window_end) AS window_end,
    toString(p.city) AS city,
    p.total_events AS total_events,
    p.requests AS requests,
    p.completions AS completions,
    p.cancellations AS cancellations,
    if(p.fare_count = 0, 0, p.fare_sum / p.fare_count) AS avg_fare,
    r.unique_riders AS unique_riders,
    if(p.requests = 0, 0, p.cancellations / p.requests) AS cancellation_rate,
    if(p.requests = 0, 0, p.completions / p.requests) AS completion_rate,
    toUInt8(toUnixTimestamp64Milli(p.window_end) <= {horizon:Int64}) AS is_final,
    toUnixTimestamp64Milli(now64(3)) AS updated_at
FROM
(
    SELECT
        city,
        window_start,
        window_end,
        sum(total_events) AS total_events,
        sum(requests) AS requests,
        sum(completions) AS completions,
        sum(cancellations) AS cancellations,
        sum(fare_sum) AS fare_sum,
        sum(fare_count) AS fare_count
    FROM city_window_partials FINAL
    WHERE window_start >= fromUnixTimestamp64Milli({min_start:Int64}, 'UTC')
      AND window_start <= fromUnixTimestamp64Milli({max_start:Int64}, 'UTC')
      AND ((city, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end))
              IN (SELECT arrayJoin(arrayZip({cities:Array(String)}, {starts:Array(Int64)}, {ends:Array(Int64)})))
           OR (toUnixTimestamp64Milli(window_end) > {final_from:Int64}
               AND toUnixTimestamp64Milli(window_end) <= {final_to:Int64}))
    GROUP BY city, window_start, window_end
) AS p
LEFT JOIN
(
    SELECT city, window_start, window_end, uniqExact(user_id) AS unique_riders
    FROM city_window_riders
    WHERE window_start >= fromUnixTimestamp64Milli({min_start:Int64}, 'UTC')
      AND window_start <= fromUnixTimestamp64Milli({max_start:Int64}, 'UTC')
      AND ((city, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(window_end))
              IN (SELECT arrayJoin(arrayZip({cities:Array(String)}, {starts:Array(Int64)}, {ends:Array(Int64)})))
           OR (toUnixTimestamp64Milli(window_end) > {final_from:Int64}
               AND toUnixTimestamp64Milli(window_end) <= {final_to:Int64}))
    GROUP BY city, window_start, window_end
) AS r
USING (city, window_start, window_end)
ORDER BY window_start, city
