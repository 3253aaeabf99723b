-- Rides requested per minute and city (the seed design's Grafana panel, from the rollup); ranges over a day use coarser buckets, averaged per minute.
SELECT
    toStartOfInterval(minute, toIntervalMinute({step:UInt32}))  AS time,
    city,
    countIfMerge(requests)                                      AS requests,
    round(requests / {step:UInt32}, 2)                          AS rides_per_minute
FROM city_minute_rollup
WHERE minute >= toStartOfMinute({from:DateTime64(3, 'UTC')})
  AND minute < {to:DateTime64(3, 'UTC')}
  AND (empty({cities:Array(String)}) OR has({cities:Array(String)}, city))
GROUP BY time, city
ORDER BY time, city
