//! `ridectl ingest` while the ClickHouse endpoint is stopped for 30 s in the middle
//! of a run: the worker keeps running (backoff, no commit), reports the growing
//! lag, and once the endpoint is back every event lands exactly once.
//!
//! A test binary of its own: it stops the shared test stack's endpoint, so no
//! other test may run beside it (cargo runs test binaries one after another).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn records(events: &[ridectl::events::RideEvent]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| (e.ride_id.clone(), serde_json::to_vec(e).unwrap()))
        .collect()
}

async fn rows(l: &ridectl::config::Loaded) -> Option<u64> {
    ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write)
        .query("SELECT count() FROM ride_events")
        .fetch_one::<u64>()
        .await
        .ok()
}

/// Waits until `ride_events` holds `n` rows (or the deadline passes); the last count.
async fn wait_rows(l: &ridectl::config::Loaded, n: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    let mut last = 0;
    while Instant::now() < deadline {
        last = rows(l).await.unwrap_or(last);
        if last >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_for_30_s_mid_run_then_exact_counts() {
    let mut l = common::isolated("ingest-outage");
    l.config.ingest.batch_max_rows = 5_000;
    l.config.ingest.retry_max_backoff = ridectl::units::HumanDuration::from_millis(2_000);
    common::provision(&l).await;
    // Every event in the past: the contract dead-letters events ahead of the clock.
    let start = ridectl::time::now_millis() - 40_000 * 1000 - 3_600_000;
    let events = common::simple_rides(40_000, &["berlin", "prague", "vienna", "warsaw"], start);
    let recs = records(&events);
    let (first, second) = recs.split_at(recs.len() / 2);
    let total = recs.len() as u64;

    let dir = std::env::temp_dir().join(common::unique("ingest-outage"));
    let config = common::write_config(&l, &dir);
    let log = dir.join("ingest.log");
    let mut ingest = common::ridectl_cmd()
        .arg("--config")
        .arg(&config)
        .args(["ingest", "--from-beginning", "--log", "info"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    // First half flows through normally.
    common::produce(&l, &l.config.topics.ride_events.name, first).await;
    let half = first.len() as u64;
    assert_eq!(
        wait_rows(&l, half, Duration::from_secs(60)).await,
        half,
        "the first half did not land"
    );

    // Stop the endpoint (SIGTERM, as `local down` does) and keep producing.
    let paths = ridectl::local::Paths::from_config(&common::loaded());
    let pid = ridectl::local::process::running(&paths.pid("clickhouse"))
        .expect("the test stack's ClickHouse endpoint is not running under its pid file");
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let stopped = Instant::now();
    while ridectl::local::process::running(&paths.pid("clickhouse")).is_some() {
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "endpoint did not stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rows(&l).await.is_none(), "the endpoint still answers");
    common::produce(&l, &l.config.topics.ride_events.name, second).await;
    while stopped.elapsed() < Duration::from_secs(30) {
        assert!(
            ingest.try_wait().unwrap().is_none(),
            "ingest exited while ClickHouse was down; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Bring it back: ingest recovers by itself.
    let up = std::process::Command::new(common::ridectl_bin())
        .args(["local", "up"])
        .current_dir(common::project_dir())
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "local up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let got = wait_rows(&l, total, Duration::from_secs(120)).await;
    kill(Pid::from_raw(ingest.id() as i32), Signal::SIGTERM).unwrap();
    let status = ingest.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(got, total, "rows after recovery; ingest log:\n{text}");
    assert!(status.success(), "ingest exit {status}; log:\n{text}");
    assert_eq!(
        common::scalar(&l, "SELECT uniqExact(event_id) FROM ride_events").await,
        total.to_string()
    );
    assert_eq!(
        common::scalar(&l, "SELECT countMerge(events) FROM city_minute_rollup").await,
        total.to_string()
    );
    // The outage was seen and retried, not skipped.
    assert!(
        text.contains("retry") || text.contains("backoff"),
        "no retry was logged:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
