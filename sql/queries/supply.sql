-- Driver supply against open requests per city now: a high demand/supply ratio signals a surge.
WITH
    supply AS (
        SELECT city,
               countIf(status = 'available') AS available_drivers,
               countIf(status = 'on_trip')   AS busy_drivers
        FROM driver_locations FINAL
        WHERE timestamp >= {to:DateTime64(3, 'UTC')} - INTERVAL 1 MINUTE
          AND timestamp <= {to:DateTime64(3, 'UTC')}
          AND (empty({cities:Array(String)}) OR has({cities:Array(String)}, city))
        GROUP BY city
    ),
    demand AS (
        SELECT city, countIf(state = 'requested') AS open_requests
        FROM (
            SELECT city, ride_id, argMax(event_type, timestamp) AS state
            FROM ride_events
            WHERE timestamp >= {to:DateTime64(3, 'UTC')} - INTERVAL 15 MINUTE
              AND timestamp <= {to:DateTime64(3, 'UTC')}
              AND (empty({cities:Array(String)}) OR has({cities:Array(String)}, city))
            GROUP BY city, ride_id
        )
        GROUP BY city
    )
SELECT
    if(supply.city = '', demand.city, supply.city)                 AS city,
    supply.available_drivers                                       AS available_drivers,
    supply.busy_drivers                                            AS busy_drivers,
    demand.open_requests                                           AS open_requests,
    round(open_requests / greatest(available_drivers, 1), 2)       AS demand_supply_ratio
FROM supply
FULL OUTER JOIN demand ON supply.city = demand.city
ORDER BY demand_supply_ratio DESC, city
