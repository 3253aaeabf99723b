//! Named queries on a small fixed dataset: values computed by hand.

mod common;

use ridectl::query::{self, Params};

const T0: i64 = 1_795_000_000_000 - 1_795_000_000_000 % 60_000; // a whole minute

async fn dataset() -> ridectl::config::Loaded {
    let l = common::isolated("query");
    common::provision(&l).await;
    let ch = ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write);
    // berlin: 4 requests, 2 completions, 2 cancellations (50%) in minute 0;
    // prague: 2 requests, 2 completions in minute 1; fares 10..
    let rows = [
        ("berlin", "requested", 0, "r1", "u1", 10.0),
        ("berlin", "requested", 1, "r2", "u2", 20.0),
        ("berlin", "requested", 2, "r3", "u1", 30.0),
        ("berlin", "requested", 3, "r4", "u3", 40.0),
        ("berlin", "completed", 10, "r1", "u1", 10.0),
        ("berlin", "completed", 11, "r2", "u2", 20.0),
        ("berlin", "cancelled", 12, "r3", "u1", 30.0),
        ("berlin", "cancelled", 13, "r4", "u3", 40.0),
        ("prague", "requested", 60, "p1", "u9", 5.0),
        ("prague", "requested", 61, "p2", "u8", 7.0),
        ("prague", "completed", 70, "p1", "u9", 5.0),
        ("prague", "completed", 71, "p2", "u8", 7.0),
    ];
    let values: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (city, ty, s, ride, user, fare))| {
            format!("('e{i}',1,'{ty}','{ride}',fromUnixTimestamp64Milli({}),'{city}',{fare},'{user}','',0,0,0,0,NULL,'',0,{i})", T0 + s * 1000)
        })
        .collect();
    ch.query_raw(&format!("INSERT INTO ride_events (event_id,schema_version,event_type,ride_id,timestamp,city,estimated_fare,user_id,driver_id,pickup_lat,pickup_lng,dropoff_lat,dropoff_lng,final_fare,cancelled_by,kafka_partition,kafka_offset) VALUES {}", values.join(",")))
        .execute()
        .await
        .unwrap();
    ch.query_raw(&format!(
        "INSERT INTO driver_locations (driver_id,city,lat,lng,status,timestamp,kafka_partition,kafka_offset) VALUES \
         ('d1','berlin',0,0,'on_trip',fromUnixTimestamp64Milli({t}),0,1),('d1','berlin',0,0,'available',fromUnixTimestamp64Milli({t2}),0,2),\
         ('d2','berlin',0,0,'available',fromUnixTimestamp64Milli({t2}),0,3),('d3','prague',0,0,'on_trip',fromUnixTimestamp64Milli({t2}),0,4)",
        t = T0 + 80_000,
        t2 = T0 + 90_000
    ))
    .execute()
    .await
    .unwrap();
    l
}

fn params(cities: &[&str]) -> Params {
    Params::new(
        T0,
        T0 + 120_000,
        cities.iter().map(|c| c.to_string()).collect(),
        0.3,
    )
}

async fn run(l: &ridectl::config::Loaded, name: &str, p: &Params) -> query::ResultSet {
    let q = query::find(&common::project_dir().join("sql/queries"), name).unwrap();
    query::run_sql(&l.config.clickhouse, &q.sql, p)
        .await
        .unwrap()
}

fn row<'a>(rs: &'a query::ResultSet, city: &str) -> &'a Vec<serde_json::Value> {
    let c = rs.column("city").unwrap();
    rs.rows.iter().find(|r| r[c] == city).unwrap()
}

#[tokio::test]
async fn named_queries_return_the_hand_computed_numbers() {
    let l = dataset().await;
    let rs = run(&l, "city-stats", &params(&[])).await;
    let b = row(&rs, "berlin");
    let get = |r: &Vec<serde_json::Value>, col: &str| r[rs.column(col).unwrap()].clone();
    assert_eq!(get(b, "requests"), 4);
    assert_eq!(get(b, "completions"), 2);
    assert_eq!(get(b, "cancellations"), 2);
    assert_eq!(get(b, "completion_rate"), 0.5);
    assert_eq!(get(b, "avg_fare"), 25.0);
    let p = row(&rs, "prague");
    assert_eq!(get(p, "requests"), 2);
    assert_eq!(get(p, "avg_fare"), 6.0);
    assert_eq!(rs.rows[0][0], "berlin", "ordered by requests");

    let rs = run(&l, "rides-per-minute", &params(&[])).await;
    assert_eq!(rs.rows.len(), 2);
    assert_eq!(rs.rows[0][rs.column("requests").unwrap()], 4);
    assert_eq!(rs.rows[0][rs.column("rides_per_minute").unwrap()], 4.0);

    // Two-minute buckets: berlin's 4 and prague's 2 requests share one bucket each,
    // averaged per minute.
    let mut p2 = params(&[]);
    p2.step_minutes = 2;
    let rs = run(&l, "rides-per-minute", &p2).await;
    assert_eq!(rs.rows.len(), 2);
    assert_eq!(
        row(&rs, "berlin")[rs.column("rides_per_minute").unwrap()],
        2.0
    );
    assert_eq!(
        row(&rs, "prague")[rs.column("rides_per_minute").unwrap()],
        1.0
    );
    let rs = run(&l, "cancellations", &p2).await;
    assert_eq!(
        row(&rs, "berlin")[rs.column("cancellation_rate").unwrap()],
        0.5
    );

    let rs = run(&l, "cancellations", &params(&[])).await;
    let b = row(&rs, "berlin");
    assert_eq!(b[rs.column("cancellation_rate").unwrap()], 0.5);
    assert_eq!(b[rs.column("over_threshold").unwrap()], 1);
    assert_eq!(row(&rs, "prague")[rs.column("over_threshold").unwrap()], 0);

    let rs = run(&l, "supply", &params(&[])).await;
    let b = row(&rs, "berlin");
    assert_eq!(
        b[rs.column("available_drivers").unwrap()],
        2,
        "d1's latest status wins"
    );
    assert_eq!(b[rs.column("open_requests").unwrap()], 0);
    assert_eq!(row(&rs, "prague")[rs.column("busy_drivers").unwrap()], 1);
}

#[tokio::test]
async fn city_filter_is_a_bound_parameter() {
    let l = dataset().await;
    let rs = run(&l, "city-stats", &params(&["prague"])).await;
    assert_eq!(rs.rows.len(), 1);
    let rs = run(&l, "city-stats", &params(&["x' OR 1=1 --"])).await;
    assert!(rs.rows.is_empty(), "treated as a city name: {:?}", rs.rows);
    let rs = run(&l, "cancellations", &params(&["berlin') OR ('1'='1"])).await;
    assert!(rs.rows.is_empty());
}
