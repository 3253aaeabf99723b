-- Every row of the aggregation output table as the pipeline's readers see it
-- (FINAL: the latest version of each window), in the oracle's order and shape.
-- {table:Identifier}: aggregation.output_table.
SELECT toUnixTimestamp64Milli(window_start) AS window_start,
       toUnixTimestamp64Milli(window_end) AS window_end,
       toString(city) AS city, total_events, requests, completions, cancellations, avg_fare,
       unique_riders, cancellation_rate, completion_rate, is_final,
       toUnixTimestamp64Milli(updated_at) AS updated_at
FROM {table:Identifier} FINAL
ORDER BY city, window_start
