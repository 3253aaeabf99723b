-- The latest sliding-window metrics per city from the aggregation worker (city_window_metrics).
SELECT
    window_start, window_end, city, total_events, requests, completions, cancellations,
    avg_fare, unique_riders, cancellation_rate, completion_rate, is_final, updated_at
FROM city_window_metrics FINAL
WHERE window_end > {from:DateTime64(3, 'UTC')}
  AND window_start < {to:DateTime64(3, 'UTC')}
  AND (empty({cities:Array(String)}) OR has({cities:Array(String)}, city))
ORDER BY window_start DESC, city
LIMIT 100
