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
