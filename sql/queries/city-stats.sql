-- City performance: requests, completions, cancellations, completion rate and average fare per city (the seed design's table, read from the per-minute rollup).
SELECT
    city,
    countIfMerge(requests)                                        AS requests,
    countIfMerge(completions)                                     AS completions,
    countIfMerge(cancellations)                                   AS cancellations,
    round(completions / greatest(requests, 1), 4)                 AS completion_rate,
    round(cancellations / greatest(requests, 1), 4)               AS cancellation_rate,
    round(sumMerge(fare_sum) / greatest(countMerge(fare_count), 1), 2) AS avg_fare
FROM city_minute_rollup
WHERE minute >= toStartOfMinute({from:DateTime64(3, 'UTC')})
  AND minute < {to:DateTime64(3, 'UTC')}
  AND (empty({cities:Array(String)}) OR has({cities:Array(String)}, city))
GROUP BY city
ORDER BY requests DESC, city
