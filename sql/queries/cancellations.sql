-- Cancellation rate per city and minute (coarser buckets beyond a day); over_threshold marks buckets above the alert threshold (30% by default).
SELECT
    toStartOfInterval(minute, toIntervalMinute({step:UInt32}))  AS time,
    city,
    countIfMerge(requests)                                      AS requests,
    countIfMerge(cancellations)                                 AS cancellations,
    round(cancellations / greatest(requests, 1), 4)             AS cancellation_rate,
    cancellation_rate > {threshold:Float64}                     AS over_threshold
FROM city_minute_rollup
WHERE minute >= toStartOfMinute({from:DateTime64(3, 'UTC')})
  AND minute < {to:DateTime64(3, 'UTC')}
  AND (empty({cities:Array(String)}) OR has({cities:Array(String)}, city))
GROUP BY time, city
ORDER BY time, city
