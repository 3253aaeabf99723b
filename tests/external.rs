//! Producers nobody on the team wrote, against the real stack:
//!
//! * the seed design's own producer (`tests/external/seed_event_producer.py`, its
//!   Step 2 verbatim; only the broker address is substituted when it runs), with
//!   confluent-kafka from PyPI: its event reaches `ride_events`, the windows and
//!   `ridectl query city-stats`;
//! * a battery of malformed and valid-but-unusual messages from the same client,
//!   while `ingest` and `aggregate` both run: each message ends exactly once in
//!   `ride_events` or exactly once in the dead-letter topic, and both workers live;
//! * `ridectl dlq replay`: a dead letter re-produced once, ingested once; a second
//!   replay adds nothing.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use ridectl::config::Loaded;
use ridectl::kafka::dlq::{CONSUMER_HEADER, REASON_HEADER, SOURCE_OFFSET_HEADER};
use ridectl::kafka::read::scan_topic;

fn python() -> PathBuf {
    common::project_dir().join(".ridectl/cache/venv/bin/python")
}

fn external(name: &str) -> PathBuf {
    common::project_dir().join("tests/external").join(name)
}

/// Runs a `ridectl` subcommand with `config` to completion; returns stdout.
fn ridectl(config: &Path, args: &[&str]) -> String {
    let out = common::ridectl_cmd()
        .current_dir(common::project_dir())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ridectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn(config: &Path, args: &[&str]) -> Child {
    common::ridectl_cmd()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = child.wait();
}

/// Every message of `topic` as (key, payload, headers).
fn read(l: &Loaded, topic: &str) -> Vec<(String, Vec<u8>, HashMap<String, String>)> {
    scan_topic(&l.config.kafka, topic, Duration::from_secs(60), |m| {
        let headers = ridectl::kafka::read::headers(m);
        Some((
            String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            m.payload().unwrap_or_default().to_vec(),
            headers,
        ))
    })
    .unwrap()
}

async fn wait_for(l: &Loaded, sql: &str, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = common::scalar(l, sql).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got} (want {want})");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_designs_producer_unchanged_is_counted_end_to_end() {
    let mut l = common::isolated("seed");
    // The seed's code writes to the literal topic `ride-events`.
    l.config.topics.ride_events.name = "ride-events".into();
    common::provision(&l).await;
    let seed = std::fs::read_to_string(external("seed_event_producer.py")).unwrap();
    assert!(seed.contains("'bootstrap.servers': 'kafka:9092'"));
    let code = seed.replace("kafka:9092", &l.config.kafka.bootstrap_servers);
    // The seed's snippet is the module of a long-running ride service; this process
    // ends right after it, so it flushes what the snippet queued.
    let out = Command::new(python())
        .arg("-c")
        .arg(format!("{code}\nassert producer.flush(30) == 0\n"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "seed producer: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = read(&l, "ride-events")
        .into_iter()
        .filter(|(k, _, _)| k == "ride-abc-123")
        .count();
    assert!(sent >= 1);

    let dir = std::env::temp_dir().join(common::unique("seed"));
    let config = common::write_config(&l, &dir);
    ridectl(&config, &["ingest", "--bounded", "--from-beginning"]);
    assert_eq!(
        common::scalar(
            &l,
            "SELECT count() FROM ride_events WHERE ride_id = 'ride-abc-123' \
             AND city = 'bratislava' AND estimated_fare = 8.5 AND user_id = 'user-456' \
             AND startsWith(event_id, 'kafka:ride-events:')"
        )
        .await,
        sent.to_string(),
        "every seed event once, with a derived event_id"
    );
    ridectl(&config, &["aggregate", "--bounded", "--from-beginning"]);
    let windows: u64 = common::scalar(
        &l,
        "SELECT count() FROM city_window_metrics FINAL WHERE city = 'bratislava' AND requests >= 1",
    )
    .await
    .parse()
    .unwrap();
    assert!(windows >= 1, "the seed event is in the windows");
    assert!(
        read(&l, &l.config.topics.dead_letter.name).is_empty(),
        "nothing dead-lettered"
    );
    let queries = common::project_dir().join("sql/queries");
    let stats = ridectl(
        &config,
        &[
            "query",
            "city-stats",
            "--format",
            "json",
            "--dir",
            queries.to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let rows = v["rows"]
        .as_array()
        .or(v.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        rows.iter()
            .any(|r| r["city"] == "bratislava" && r["requests"].as_u64() >= Some(1)),
        "city-stats shows bratislava: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_battery_from_another_client_lands_once_each_and_replays_once() {
    let l = common::isolated("battery");
    common::provision(&l).await;
    let dir = std::env::temp_dir().join(common::unique("battery"));
    let config = common::write_config(&l, &dir);
    let ingest = spawn(&config, &["ingest", "--from-beginning"]);
    let aggregate = spawn(&config, &["aggregate"]);

    let topic = &l.config.topics.ride_events.name;
    let out = Command::new(python())
        .arg(external("battery_producer.py"))
        .args([&l.config.kafka.bootstrap_servers, topic, "b"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "battery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(cases.len() >= 20, "{cases:?}");
    let valid: Vec<&str> = cases
        .iter()
        .filter(|c| c["expect"] == "valid")
        .map(|c| c["ride_id"].as_str().unwrap())
        .collect();
    let bad: Vec<&str> = cases
        .iter()
        .filter(|c| c["expect"] == "dead_letter")
        .map(|c| c["key"].as_str().unwrap())
        .collect();

    let ids = valid
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows_sql = format!("SELECT count() FROM ride_events WHERE ride_id IN ({ids})");
    wait_for(
        &l,
        &rows_sql,
        &valid.len().to_string(),
        Duration::from_secs(60),
    )
    .await;
    let distinct_sql =
        format!("SELECT uniqExact(ride_id) FROM ride_events WHERE ride_id IN ({ids})");
    assert_eq!(
        common::scalar(&l, &distinct_sql).await,
        valid.len().to_string()
    );
    assert_eq!(
        common::scalar(
            &l,
            "SELECT count() FROM ride_events WHERE city = 'x'' OR 1=1 --'"
        )
        .await,
        "1",
        "a city with SQL in it is stored as written"
    );
    assert_eq!(
        common::scalar(
            &l,
            &format!(
                "SELECT countIf(estimated_fare IS NULL) FROM ride_events WHERE ride_id IN ({ids})"
            )
        )
        .await,
        "1",
        "an absent fare is NULL, not 0"
    );

    // Give the aggregation worker time to see (and skip) every bad message too, then
    // check the dead-letter topic: one record per bad message, none per valid one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let dead = read(&l, &l.config.topics.dead_letter.name);
        if dead.len() >= bad.len() || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dead_after = read(&l, &l.config.topics.dead_letter.name);
    assert_eq!(dead_after.len(), dead.len(), "nothing dead-lettered twice");
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, _, h) in &dead_after {
        *per_key.entry(k.as_str()).or_default() += 1;
        assert!(h.contains_key(REASON_HEADER) && h.contains_key(SOURCE_OFFSET_HEADER));
        assert!(
            h[CONSUMER_HEADER].starts_with(&l.config.ingest.group_id),
            "{h:?}"
        );
    }
    let want: BTreeMap<&str, usize> = bad.iter().map(|k| (*k, 1)).collect();
    assert_eq!(
        per_key, want,
        "each bad message exactly once in the dead-letter topic"
    );

    // Both workers still run.
    let (mut ingest, mut aggregate) = (ingest, aggregate);
    assert!(ingest.try_wait().unwrap().is_none(), "ingest died");
    assert!(aggregate.try_wait().unwrap().is_none(), "aggregate died");

    // Replay. The workers stop first (an operator fixes the contract or the
    // producer, then replays); the copies are re-produced as they were, so the
    // bounded ingest afterwards dead-letters each once more, which shows each copy
    // went through the pipeline once. A second replay produces nothing.
    stop(ingest);
    stop(aggregate);
    let dry: serde_json::Value = serde_json::from_str(&ridectl(
        &config,
        &[
            "dlq",
            "replay",
            "--reason",
            "wrong_type",
            "--dry-run",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let wrong_type = dry["candidates"].as_u64().unwrap();
    assert!(wrong_type >= 2, "{dry}");
    let first: serde_json::Value = serde_json::from_str(&ridectl(
        &config,
        &[
            "dlq",
            "replay",
            "--reason",
            "wrong_type",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(first["replayed"].as_u64(), Some(wrong_type), "{first}");
    let second: serde_json::Value = serde_json::from_str(&ridectl(
        &config,
        &[
            "dlq",
            "replay",
            "--reason",
            "wrong_type",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(second["replayed"].as_u64(), Some(0), "{second}");
    assert_eq!(
        second["already_replayed"].as_u64(),
        Some(wrong_type),
        "{second}"
    );
    // The replayed copies reached the source topic once each and were dead-lettered
    // once each again by ingest (they are still wrong).
    let replayed_in_source = read(&l, topic)
        .iter()
        .filter(|(_, _, h)| h.contains_key(ridectl::kafka::dlq::REPLAY_OF_HEADER))
        .count() as u64;
    assert_eq!(replayed_in_source, wrong_type);
    ridectl(&config, &["ingest", "--bounded"]);
    let stats: serde_json::Value =
        serde_json::from_str(&ridectl(&config, &["dlq", "stats", "--format", "json"])).unwrap();
    let messages = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "wrong_type")
        .and_then(|r| r["messages"].as_u64())
        .unwrap_or(0);
    assert_eq!(
        messages,
        2 * wrong_type,
        "each replayed copy dead-lettered once: {stats}"
    );
    let list = ridectl(&config, &["dlq", "list", "--reason", "wrong_type"]);
    assert!(list.contains("yes"), "{list}");
}
