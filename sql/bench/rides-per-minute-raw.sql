-- rides-per-minute over the raw table: the seed design's Grafana panel query.
SELECT
    toStartOfInterval(timestamp, toIntervalMinute({step:UInt32}))  AS time,
    city,
    count()                                                        AS requests,
    round(requests / {step:UInt32}, 2)                             AS rides_per_minute
FROM ride_events
WHERE timestamp >= {from:DateTime64(3, 'UTC')} AND timestamp < {to:DateTime64(3, 'UTC')}
  AND event_type = 'requested'
  AND (empty({cities:Array(String)}) OR has({cities:Array(String)}, city))
GROUP BY time, city
ORDER BY time, city
