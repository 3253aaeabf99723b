//! The official `clickhouse` crate, curl and the schema against the ClickHouse
//! endpoint of the real local stack.

mod common;

use clickhouse::{Compression, Row};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct Trip {
    city: String,
    at: i64,
    fare: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crate_round_trips_low_cardinality_and_datetime64_with_and_without_lz4() {
    let l = common::isolated("crate");
    common::provision(&l).await;
    let base =
        ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write);
    base.query("CREATE TABLE trips (city LowCardinality(String), at DateTime64(3, 'UTC'), fare Float64) ENGINE = MergeTree ORDER BY (city, at)")
        .execute()
        .await
        .unwrap();
    for (i, compression) in [Compression::Lz4, Compression::None]
        .into_iter()
        .enumerate()
    {
        let client = base.clone().with_compression(compression);
        let rows: Vec<Trip> = (0..20_000)
            .map(|n| Trip {
                city: format!("city{}", n % 7),
                at: 1_795_000_000_123 + n + i as i64 * 1_000_000,
                fare: n as f64 / 4.0,
            })
            .collect();
        let mut insert = client.insert::<Trip>("trips").await.unwrap();
        for r in &rows {
            insert.write(r).await.unwrap();
        }
        insert.end().await.unwrap();
        let back = client
            .query("SELECT city, at, fare FROM trips WHERE at >= fromUnixTimestamp64Milli(?) AND at < fromUnixTimestamp64Milli(?) ORDER BY at")
            .bind(1_795_000_000_123i64 + i as i64 * 1_000_000)
            .bind(1_795_000_000_123i64 + i as i64 * 1_000_000 + 20_000)
            .fetch_all::<Trip>()
            .await
            .unwrap();
        assert_eq!(back, rows, "round trip with {compression:?}");
    }

    // Bound parameters from many tasks at once get their own answers.
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let client = base.clone();
            tokio::spawn(async move {
                let city = format!("city{}", n % 7);
                let got: u64 = client
                    .query("SELECT count() FROM trips WHERE city = {c:String}")
                    .param("c", &city)
                    .fetch_one()
                    .await
                    .unwrap();
                let want: u64 = (0..40_000u64)
                    .filter(|k| format!("city{}", (k % 20_000) % 7) == city)
                    .count() as u64;
                assert_eq!(got, want, "{city}");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn schema_applies_twice_and_the_seed_city_query_runs() {
    let l = common::isolated("schema");
    common::provision(&l).await;
    let migrations =
        ridectl::clickhouse::schema::load_dir(&common::project_dir().join("sql/schema")).unwrap();
    let again = ridectl::clickhouse::schema::apply(&l.config.clickhouse, &migrations)
        .await
        .unwrap();
    assert!(again.is_empty(), "second apply runs nothing: {again:?}");
    // The seed design's city-performance query, verbatim.
    let seed = "SELECT city, countIf(event_type = 'requested') as requests, countIf(event_type = 'completed') as completions, \
        countIf(event_type = 'cancelled') as cancellations, round(completions / greatest(requests, 1) * 100, 1) as completion_rate, \
        round(avg(estimated_fare), 2) as avg_fare FROM ride_events WHERE timestamp > now() - INTERVAL 1 HOUR GROUP BY city ORDER BY requests DESC";
    let client =
        ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Read);
    client
        .query_raw(seed)
        .fetch_bytes("TabSeparated")
        .unwrap()
        .collect()
        .await
        .unwrap();
    // A changed, already-applied file is refused.
    let mut changed = migrations.clone();
    changed[0].checksum = "0".repeat(64);
    let err = ridectl::clickhouse::schema::apply(&l.config.clickhouse, &changed)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already-applied schema files were changed"),
        "{err}"
    );
}

#[test]
fn curl_gets_the_engine_version() {
    let l = common::loaded();
    let url = format!(
        "{}/?query=SELECT%20version()",
        l.config.clickhouse.url.trim_end_matches('/')
    );
    let out = std::process::Command::new("curl")
        .args(["-s", &url])
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        version.trim().starts_with("26."),
        "ClickHouse 26.x from chDB, got {version:?}"
    );
}

// ---------------------------------------------------------------------------------
// The driver matrix (README, "ClickHouse"): what every tested client does, here with
// the `clickhouse` crate (RowBinary over HTTP, LZ4 block compression).

#[derive(Debug, Row, Deserialize)]
struct RideRow {
    city: String,
    /// DateTime64(3, 'UTC'): milliseconds.
    timestamp: i64,
    final_fare: Option<f64>,
    event_type: String,
    kafka_partition: u16,
    kafka_offset: u64,
    schema_version: u8,
}

#[derive(Debug, Row, Deserialize)]
struct RollupRow {
    minute: u32,
    city: String,
    events: u64,
    requests: u64,
    fare_sum: f64,
    riders: u64,
    last_event: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_matrix_with_the_clickhouse_crate() {
    let l = common::isolated("crate-matrix");
    common::provision(&l).await;
    let db = l.config.clickhouse.database.clone();
    let client =
        ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write)
            .with_compression(Compression::Lz4);

    // Catalog.
    let dbs: Vec<String> = client.query("SHOW DATABASES").fetch_all().await.unwrap();
    assert!(dbs.contains(&db), "{dbs:?}");
    let tables: Vec<String> = client.query("SHOW TABLES").fetch_all().await.unwrap();
    for t in [
        "ride_events",
        "city_minute_rollup",
        "city_window_metrics",
        "driver_locations",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} in {tables:?}");
    }
    type Described = (String, String, String, String, String, String, String);
    let described: Vec<(String, String)> = client
        .query("DESCRIBE TABLE ride_events")
        .fetch_all::<Described>()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.0, d.1))
        .collect();
    for (col, ty) in [
        ("city", "LowCardinality(String)"),
        ("timestamp", "DateTime64(3, 'UTC')"),
        ("final_fare", "Nullable(Float64)"),
    ] {
        assert!(
            described.contains(&(col.into(), ty.into())),
            "{col}: {described:?}"
        );
    }

    // Insert (bound values) and read back every type, the rollup's states merged.
    let rows: Vec<String> = (0..3000)
        .map(|i| {
            let fare = if i % 3 == 2 { format!("{}.5", i % 40) } else { "NULL".into() };
            let kind = if i % 3 == 2 { "completed" } else { "requested" };
            let city = ["berlin", "prague", "vienna"][i % 3];
            format!("('e{i}',1,'{kind}','r{}',fromUnixTimestamp64Milli({}),'{city}',10.25,'u{}','',0,0,0,0,{fare},'',{},{i})",
                i / 3, 1_795_687_200_123i64 + i as i64 * 1000, i % 50, i % 12)
        })
        .collect();
    client
        .query(&format!("INSERT INTO ride_events (event_id,schema_version,event_type,ride_id,timestamp,city,estimated_fare,user_id,driver_id,pickup_lat,pickup_lng,dropoff_lat,dropoff_lng,final_fare,cancelled_by,kafka_partition,kafka_offset) VALUES {}", rows.join(",")))
        .execute()
        .await
        .unwrap();
    let r: RideRow = client
        .query("SELECT ?fields FROM ride_events WHERE event_id = ?")
        .bind("e5")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        (
            r.city.as_str(),
            r.final_fare,
            r.event_type.as_str(),
            r.kafka_partition,
            r.kafka_offset,
            r.schema_version
        ),
        ("vienna", Some(5.5), "completed", 5, 5, 1)
    );
    assert_eq!(r.timestamp, 1_795_687_205_123);
    let rollup: Vec<RollupRow> = client
        .query("SELECT toUnixTimestamp(minute) AS minute, city, countMerge(events) AS events, countIfMerge(requests) AS requests, sumMerge(fare_sum) AS fare_sum, uniqMerge(riders) AS riders, toUnixTimestamp64Milli(max(last_event)) AS last_event FROM city_minute_rollup GROUP BY minute, city")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rollup.len(), 150);
    assert_eq!(rollup.iter().map(|r| r.events).sum::<u64>(), 3000);
    assert_eq!(rollup.iter().map(|r| r.requests).sum::<u64>(), 2000);
    assert!(rollup.iter().all(|r| r.riders > 0
        && r.fare_sum > 0.0
        && !r.city.is_empty()
        && r.last_event >= i64::from(r.minute) * 1000));

    // Server-side parameters.
    let (city, n): (String, u64) = client
        .query("SELECT {city:String}, {n:UInt64} + 1")
        .param("city", "o'hare")
        .param("n", 41u64)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((city.as_str(), n), ("o'hare", 42));

    // A million rows streamed.
    let mut cursor = client
        .query(
            "SELECT number, toString(number) FROM numbers(1000000) SETTINGS max_block_size = 65536",
        )
        .fetch::<(u64, String)>()
        .unwrap();
    let mut seen = 0u64;
    while let Some((n, s)) = cursor.next().await.unwrap() {
        assert!(n == seen && s == seen.to_string(), "row {seen}: {n} {s}");
        seen += 1;
    }
    assert_eq!(seen, 1_000_000);

    // Server errors with their code, before and after the first rows.
    let err = client
        .query("SELECT * FROM no_such_table_anywhere")
        .execute()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, clickhouse::error::Error::BadResponse(m) if m.starts_with("Code: 60.")),
        "{err:?}"
    );
    let mut cursor = client
        .query("SELECT number, throwIf(number = 500000, 'late failure') FROM numbers(1000000) SETTINGS max_block_size = 10000")
        .fetch::<(u64, u8)>()
        .unwrap();
    let err = loop {
        match cursor.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the late failure was not reported"),
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string().contains("Code: 395.") && err.to_string().contains("late failure"),
        "{err:?}"
    );
}
