//! `ridectl ingest` against the real stack: exact counts, dead letters, and a kill -9
//! in the middle of a run.

mod common;

use std::process::Stdio;
use std::time::Duration;

use ridectl::ingest::{self, IngestOptions};
use ridectl::shutdown::Shutdown;

fn records(events: &[ridectl::events::RideEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| (e.ride_id.clone(), serde_json::to_vec(e).unwrap()))
        .collect()
}

/// Every second event as the seed design's producer sends it: no `event_id` or
/// `schema_version`, a naive timestamp with microseconds.
fn half_seed_shaped(events: &[ridectl::events::RideEvent]) -> Vec<(String, Vec<u8>)> {
    let mut out = records(events);
    for (_, payload) in out.iter_mut().step_by(2) {
        let mut v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("event_id");
        o.remove("schema_version");
        let ts = o["timestamp"]
            .as_str()
            .unwrap()
            .trim_end_matches('Z')
            .to_string();
        o.insert("timestamp".into(), format!("{ts}000").into());
        *payload = serde_json::to_vec(&v).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_ingest_is_exact_and_dead_letters_carry_reasons() {
    let mut l = common::isolated("ingest");
    if let Ok(d) = std::env::var("RIDECTL_TEST_KAFKA_DEBUG") {
        l.config
            .kafka
            .consumer
            .insert("debug".into(), ridectl::config::PropValue(d));
    }
    common::provision(&l).await;
    let start = ridectl::time::now_millis() - 3_600_000;
    let events = common::simple_rides(500, &["berlin", "prague", "vienna"], start);
    let mut recs = records(&events);
    let bad: Vec<&[u8]> = vec![b"{not json", br#"{"event_id":"x"}"#, b"[1,2,3]"];
    for (i, b) in bad.iter().enumerate() {
        recs.push((format!("bad{i}"), b.to_vec()));
    }
    common::produce(&l, &l.config.topics.ride_events.name, &recs).await;
    let loc = r#"{"schema_version":1,"driver_id":"d1","city":"berlin","lat":52.5,"lng":13.4,"status":"available","timestamp":"TS"}"#;
    let locs: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| {
            (
                "d1".to_string(),
                loc.replace("TS", &ridectl::time::format_millis(start + i * 5000))
                    .into_bytes(),
            )
        })
        .collect();
    common::produce(&l, &l.config.topics.driver_locations.name, &locs).await;

    let (_t, sd) = Shutdown::manual();
    let opts = IngestOptions {
        bounded: true,
        from_beginning: true,
    };
    let summary = ingest::run(&l.config, opts, sd).await.unwrap();
    assert_eq!(summary.ride_rows, 1000);
    assert_eq!(summary.location_rows, 10);
    assert_eq!(summary.dead_letters.values().sum::<u64>(), 3);
    assert_eq!(
        common::scalar(&l, "SELECT count() FROM ride_events").await,
        "1000"
    );
    assert_eq!(
        common::scalar(&l, "SELECT uniqExact(event_id) FROM ride_events").await,
        "1000"
    );
    assert_eq!(
        common::scalar(&l, "SELECT count() FROM driver_locations FINAL").await,
        "1"
    );
    assert_eq!(
        common::scalar(
            &l,
            "SELECT toString(max(timestamp)) FROM driver_locations FINAL"
        )
        .await,
        ridectl::time::format_clickhouse(start + 45_000)
    );
    assert_eq!(
        common::topic_count(&l, &l.config.topics.dead_letter.name),
        3
    );
    // The rollup saw exactly the same events.
    assert_eq!(
        common::scalar(&l, "SELECT countMerge(events) FROM city_minute_rollup").await,
        "1000"
    );

    // A second bounded run over the same offsets adds nothing.
    let (_t, sd) = Shutdown::manual();
    let again = ingest::run(
        &l.config,
        IngestOptions {
            bounded: true,
            from_beginning: true,
        },
        sd,
    )
    .await
    .unwrap();
    assert_eq!(again.ride_rows, 0);
    assert_eq!(
        common::scalar(&l, "SELECT count() FROM ride_events").await,
        "1000"
    );
}

#[tokio::test]
async fn kill_9_in_the_middle_then_restart_is_exact() {
    let mut l = common::isolated("ingest-kill");
    l.config.ingest.batch_max_rows = 2000;
    common::provision(&l).await;
    // Every event in the past: the contract dead-letters events ahead of the clock.
    let start = ridectl::time::now_millis() - 60_000 * 1000 - 7_200_000;
    let events = common::simple_rides(60_000, &["berlin", "prague", "vienna", "warsaw"], start);
    // Half of them without an event_id: their ids derive from the Kafka position,
    // so a restart that re-reads them still recognises each as the same event.
    let records = half_seed_shaped(&events);
    common::produce(&l, &l.config.topics.ride_events.name, &records).await;
    let dir = std::env::temp_dir().join(common::unique("ingest-kill"));
    let config = common::write_config(&l, &dir);
    let spawn = || {
        common::ridectl_cmd()
            .arg("--config")
            .arg(&config)
            .args(["ingest", "--bounded", "--from-beginning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Kill it while it is writing: after some rows landed, before all did.
    let mut child = spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n: u64 = common::scalar(&l, "SELECT count() FROM ride_events")
            .await
            .parse()
            .unwrap_or(0);
        if n > 10_000 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let partial: u64 = common::scalar(&l, "SELECT count() FROM ride_events")
        .await
        .parse()
        .unwrap();
    assert!(partial < 120_000, "killed before the end ({partial} rows)");
    let status = spawn().wait().unwrap();
    assert!(status.success());
    assert_eq!(
        common::scalar(&l, "SELECT count() FROM ride_events").await,
        "120000"
    );
    assert_eq!(
        common::scalar(&l, "SELECT uniqExact(event_id) FROM ride_events").await,
        "120000"
    );
    assert_eq!(
        common::scalar(&l, "SELECT countMerge(events) FROM city_minute_rollup").await,
        "120000"
    );
    assert_eq!(
        common::scalar(
            &l,
            "SELECT countIf(startsWith(event_id, 'kafka:')) FROM ride_events"
        )
        .await,
        "60000",
        "the seed-shaped half carries derived ids"
    );
}
