-- city-stats over the raw table: the seed design's query.
SELECT
    city,
    countIf(event_type = 'requested')                         AS requests,
    countIf(event_type = 'completed')                         AS completions,
    countIf(event_type = 'cancelled')                         AS cancellations,
    round(completions / greatest(requests, 1), 4)             AS completion_rate,
    round(cancellations / greatest(requests, 1), 4)           AS cancellation_rate,
    round(avg(estimated_fare), 2)                             AS avg_fare
FROM ride_events
WHERE timestamp >= {from:DateTime64(3, 'UTC')} AND timestamp < {to:DateTime64(3, 'UTC')}
  AND (empty({cities:Array(String)}) OR has({cities:Array(String)}, city))
GROUP BY city
ORDER BY requests DESC, city
