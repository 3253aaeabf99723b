-- cancellations over the raw table.
SELECT
    toStartOfInterval(timestamp, toIntervalMinute({step:UInt32}))  AS time,
    city,
    countIf(event_type = 'requested')                              AS requests,
    countIf(event_type = 'cancelled')                              AS cancellations,
    round(cancellations / greatest(requests, 1), 4)                AS cancellation_rate,
    cancellation_rate > {threshold:Float64}                        AS over_threshold
FROM ride_events
WHERE timestamp >= {from:DateTime64(3, 'UTC')} AND timestamp < {to:DateTime64(3, 'UTC')}
  AND (empty({cities:Array(String)}) OR has({cities:Array(String)}, city))
GROUP BY time, city
ORDER BY time, city
