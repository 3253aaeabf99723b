-- Pipeline freshness: now minus the newest event in each table (consumer lag is added by ridectl from Kafka).
SELECT 'ride_events' AS source, max(timestamp) AS newest, round(dateDiff('millisecond', max(timestamp), now64(3)) / 1000, 3) AS seconds_behind
FROM ride_events WHERE timestamp > now() - INTERVAL 1 DAY
UNION ALL
SELECT 'driver_locations', max(timestamp), round(dateDiff('millisecond', max(timestamp), now64(3)) / 1000, 3)
FROM driver_locations WHERE timestamp > now() - INTERVAL 1 DAY
UNION ALL
SELECT 'city_window_metrics', max(updated_at), round(dateDiff('millisecond', max(updated_at), now64(3)) / 1000, 3)
FROM city_window_metrics WHERE updated_at > now() - INTERVAL 1 DAY
