-- Alert rule: a city's cancellation rate in each complete minute of the rule's duration (docs/alerts.md).
--
-- One row per city with data in [from, to): the last `for` of complete minutes of
-- city_minute_rollup, where `to` is the start of the minute holding the evaluation
-- time (minutes ending at or before it). A minute is evaluated when it has at least
-- {min_requests} requests; a city fires when all {window_minutes} minutes are evaluated
-- and above {threshold} (then breach_rate, the lowest of their rates, is above it) and
-- recovers when its latest complete minute is evaluated and at or below {threshold}.
--
-- Bound by `ridectl alerts` for each rule of pipeline.yaml (alerts.rules). The Grafana
-- alert rule (grafana/provisioning/alerting/ridectl-alerts.yaml) runs this same query
-- with the parameters written as plugin macros and the rule's numbers; tests/grafana.rs
-- checks that the two agree, textually and on data.
SELECT
    city,
    toUInt32(countIf(requests >= {min_requests:UInt64}))                                AS evaluated_minutes,
    toUInt32(countIf(requests >= {min_requests:UInt64} AND rate > {threshold:Float64})) AS breaching_minutes,
    if(evaluated_minutes = {window_minutes:UInt32},
       minIf(rate, requests >= {min_requests:UInt64}),
       0)                                                                               AS breach_rate,
    sum(requests)                                                                       AS window_requests,
    sum(cancellations)                                                                  AS window_cancellations,
    window_cancellations / greatest(window_requests, 1)                                 AS window_rate,
    sumIf(requests, minute = {to:DateTime64(3, 'UTC')} - INTERVAL 1 MINUTE)             AS latest_requests,
    sumIf(cancellations, minute = {to:DateTime64(3, 'UTC')} - INTERVAL 1 MINUTE)        AS latest_cancellations,
    latest_cancellations / greatest(latest_requests, 1)                                 AS latest_rate
FROM
(
    SELECT
        minute,
        city,
        countIfMerge(requests)                AS requests,
        countIfMerge(cancellations)           AS cancellations,
        cancellations / greatest(requests, 1) AS rate
    FROM city_minute_rollup
    WHERE minute >= {from:DateTime64(3, 'UTC')}
      AND minute < {to:DateTime64(3, 'UTC')}
    GROUP BY minute, city
)
GROUP BY city
ORDER BY city
