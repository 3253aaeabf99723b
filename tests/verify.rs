//! `ridectl verify` against the real stack: it passes on a pipeline that did its job,
//! and fails — naming the problem — on a duplicated row, a lost row, a wrong window
//! and a valid event in the dead-letter topic.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use ridectl::aggregate;
use ridectl::ingest::{self, IngestOptions};
use ridectl::shutdown::Shutdown;
use ridectl::verify::{self, Report, VerifyOptions};

fn failed(r: &Report) -> Vec<&'static str> {
    r.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect()
}

async fn exec(l: &ridectl::config::Loaded, sql: &str) {
    ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write)
        .query_raw(sql)
        .execute()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_on_a_clean_run_and_fails_on_each_kind_of_damage() {
    let l = common::isolated("verify");
    common::provision(&l).await;
    let start = ridectl::time::now_millis() - 3_600_000;
    let events = common::simple_rides(400, &["berlin", "prague"], start);
    let records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.ride_id.clone(), serde_json::to_vec(e).unwrap()))
        .collect();
    common::produce(&l, &l.config.topics.ride_events.name, &records).await;
    let (_t, sd) = Shutdown::manual();
    let opts = IngestOptions {
        bounded: true,
        from_beginning: true,
    };
    ingest::run(&l.config, opts, sd).await.unwrap();
    let agg = aggregate::Options {
        bounded: true,
        log_every: std::time::Duration::ZERO,
        ..aggregate::Options::default()
    };
    aggregate::run(&l.config, &agg, Arc::new(AtomicBool::new(false)))
        .await
        .unwrap();

    let opts = VerifyOptions {
        expect_delivered: Some(800),
        ..VerifyOptions::default()
    };
    let r = verify::run(&l.config, &opts).await.unwrap();
    assert!(r.passed, "{r:#?}");
    assert_eq!((r.topic.distinct, r.ride_events.rows), (800, 800));
    assert!(r.windows.matching > 0);

    // The generator said it delivered one more than the topic holds.
    let more = VerifyOptions {
        expect_delivered: Some(801),
        ..VerifyOptions::default()
    };
    let r = verify::run(&l.config, &more).await.unwrap();
    assert_eq!(failed(&r), ["topic holds the delivered events"]);

    // A row twice (the rollup sees it too), then one row lost.
    exec(
        &l,
        "INSERT INTO ride_events SELECT * FROM ride_events LIMIT 1",
    )
    .await;
    let r = verify::run(&l.config, &opts).await.unwrap();
    assert_eq!(
        failed(&r),
        [
            "ride_events = valid events, each once",
            "city_minute_rollup counts each event once"
        ]
    );
    assert_eq!((r.ride_events.duplicates, r.ride_events.missing), (1, 0));
    exec(
        &l,
        "ALTER TABLE ride_events DELETE WHERE event_id IN ('e7-0', 'e0-0') SETTINGS mutations_sync = 1",
    )
    .await;
    let r = verify::run(&l.config, &opts).await.unwrap();
    assert_eq!(r.ride_events.missing, 2, "{r:#?}");

    // A window off by one event.
    exec(
        &l,
        "INSERT INTO city_window_metrics (window_start, window_end, city, total_events, requests, \
         completions, cancellations, avg_fare, unique_riders, cancellation_rate, completion_rate, \
         is_final, updated_at) SELECT window_start, window_end, city, total_events + 1, requests, \
         completions, cancellations, avg_fare, unique_riders, cancellation_rate, completion_rate, \
         is_final, updated_at + 1 FROM city_window_metrics FINAL LIMIT 1",
    )
    .await;
    let r = verify::run(&l.config, &opts).await.unwrap();
    assert_eq!(r.windows.different, 1, "{r:#?}");

    // A valid event in the dead-letter topic.
    common::produce(&l, &l.config.topics.dead_letter.name, &[records[3].clone()]).await;
    let r = verify::run(&l.config, &opts).await.unwrap();
    assert_eq!(r.side_outputs.dead_letter_valid, 1);
    assert!(failed(&r).contains(&"no valid event in the dead-letter topic"));
}
