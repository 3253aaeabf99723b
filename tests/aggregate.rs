//! `ridectl aggregate` against the real local stack: an oracle computed by ClickHouse
//! directly from the generated JSON lines must equal `city_window_metrics` (FINAL)
//! after a bounded run — uninterrupted, killed with SIGKILL and restarted, split over
//! two workers, stopped with SIGTERM and resumed — and bad input lands in the
//! dead-letter topic while the valid events still add up.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use ridectl::aggregate::sink::MetricsRow;
use ridectl::bench::synth::{Synth, SynthConfig};
use ridectl::config::Loaded;
use ridectl::time::now_millis;
use ridectl::verify::oracle::EventsTable;

fn test_config(tag: &str) -> Loaded {
    let mut l = common::isolated(tag);
    l.config.aggregation.trigger_interval = ridectl::units::HumanDuration::from_millis(250);
    // A SIGKILLed worker stays in the group until its session times out: use the
    // broker's minimum so restarts get their partitions quickly.
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "1000"),
    ] {
        l.config
            .kafka
            .consumer
            .insert(k.into(), ridectl::config::PropValue(v.into()));
    }
    l
}

/// `n` synthetic events at `per_min` events per minute of event time, starting two
/// hours ago (fixed seed), and the same events as a JSON lines file.
fn dataset(
    seed: u64,
    n: usize,
    per_min: f64,
    dir: &Path,
) -> (Vec<ridectl::bench::synth::SynthEvent>, PathBuf) {
    let start = now_millis() - 2 * 3_600_000;
    let cfg = SynthConfig::new(seed, start, per_min);
    let events: Vec<_> = Synth::new(cfg).take(n).collect();
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("events.jsonl");
    let mut text = String::new();
    for e in &events {
        text.push_str(&e.json);
        text.push('\n');
    }
    std::fs::write(&file, text).unwrap();
    (events, file)
}

fn producer(l: &Loaded) -> FutureProducer {
    ridectl::kafka::client_config(&l.config.kafka, ridectl::kafka::Role::Producer)
        .create()
        .unwrap()
}

async fn produce(l: &Loaded, msgs: &[(Option<String>, Vec<u8>)]) {
    let p = producer(l);
    let topic = &l.config.topics.ride_events.name;
    let mut futures = Vec::new();
    for (key, value) in msgs {
        let mut r = FutureRecord::to(topic).payload(value.as_slice());
        if let Some(k) = key {
            r = r.key(k.as_str());
        }
        loop {
            match p.send_result(r) {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err((_, back)) => {
                    r = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for f in futures {
        f.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

fn as_messages(events: &[ridectl::bench::synth::SynthEvent]) -> Vec<(Option<String>, Vec<u8>)> {
    events
        .iter()
        .map(|e| (Some(e.key.clone()), e.json.clone().into_bytes()))
        .collect()
}

fn ch(l: &Loaded) -> clickhouse::Client {
    ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write)
}

/// Loads the JSON lines into a scratch table and computes the windows with the
/// oracle SQL `ridectl verify` uses (sql/verify/oracle_windows.sql).
async fn oracle(l: &Loaded, file: &Path) -> Vec<MetricsRow> {
    let events = EventsTable::create(&ch(l), "oracle_events").await.unwrap();
    events
        .load_json_lines(&std::fs::read(file).unwrap())
        .await
        .unwrap();
    let a = &l.config.aggregation;
    events
        .windows(a.window.as_millis_i64(), a.slide.as_millis_i64())
        .await
        .unwrap()
}

async fn metrics_rows(l: &Loaded) -> Vec<MetricsRow> {
    ridectl::verify::oracle::metrics_rows(&ch(l), &l.config.aggregation.output_table)
        .await
        .unwrap()
}

fn assert_same(actual: &[MetricsRow], expected: &[MetricsRow]) {
    assert!(!expected.is_empty());
    assert_eq!(
        actual.len(),
        expected.len(),
        "row count differs: {} windows vs {} in the oracle",
        actual.len(),
        expected.len()
    );
    for (a, e) in actual.iter().zip(expected) {
        let key = format!(
            "{} {}",
            e.city,
            ridectl::time::format_millis(e.window_start)
        );
        assert_eq!(
            (&a.city, a.window_start, a.window_end),
            (&e.city, e.window_start, e.window_end),
            "{key}"
        );
        assert_eq!(
            (
                a.total_events,
                a.requests,
                a.completions,
                a.cancellations,
                a.unique_riders
            ),
            (
                e.total_events,
                e.requests,
                e.completions,
                e.cancellations,
                e.unique_riders
            ),
            "{key}"
        );
        assert!(
            (a.avg_fare - e.avg_fare).abs() <= 1e-9,
            "{key}: avg_fare {} vs {}",
            a.avg_fare,
            e.avg_fare
        );
        assert!(
            (a.cancellation_rate - e.cancellation_rate).abs() <= 1e-12,
            "{key}"
        );
        assert!(
            (a.completion_rate - e.completion_rate).abs() <= 1e-12,
            "{key}"
        );
        assert_eq!(a.is_final, 1, "{key} is not final");
    }
}

/// Kills a worker process when a test panics before waiting for it.
struct Guard(u32);

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn spawn(config: &Path, args: &[&str]) -> Child {
    common::ridectl_cmd()
        .arg("--config")
        .arg(config)
        .arg("--log")
        .arg(std::env::var("RIDECTL_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .arg("aggregate")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[derive(Debug, Deserialize)]
struct Summary {
    ending: String,
    consumed: u64,
    accepted: u64,
    late: BTreeMap<String, u64>,
    rejected: BTreeMap<String, u64>,
}

fn wait_summary(child: Child, limit: Duration) -> Summary {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("aggregate did not finish within {limit:?}")
        })
        .unwrap();
    assert!(out.status.success(), "aggregate failed: {:?}", out.status);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad summary ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn run_bounded(config: &Path) -> Summary {
    wait_summary(
        spawn(config, &["--bounded", "--format", "json"]),
        Duration::from_secs(300),
    )
}

/// A message read back: key, payload, headers.
type Read = (Option<Vec<u8>>, Vec<u8>, HashMap<String, String>);

/// Every message of a topic.
fn read_topic(l: &Loaded, topic: &str) -> Vec<Read> {
    let c: BaseConsumer =
        ridectl::kafka::client_config(&l.config.kafka, ridectl::kafka::Role::Consumer)
            .set("group.id", common::unique("reader"))
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let n = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut eof = std::collections::HashSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while eof.len() < n as usize {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for x in h.iter() {
                        headers.insert(
                            x.key.to_string(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push((
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn bounded_run_matches_the_oracle_and_the_topic_gets_every_final_window() {
    let l = test_config("agg-oracle");
    common::provision(&l).await;
    let dir = std::env::temp_dir().join(common::unique("agg-oracle"));
    let (events, file) = dataset(42, 40_000, 20_000.0, &dir);
    produce(&l, &as_messages(&events)).await;
    let config = common::write_config(&l, &dir);

    let s = run_bounded(&config);
    assert_eq!(s.ending, "bounded");
    assert_eq!((s.consumed, s.accepted), (40_000, 40_000));
    assert!(s.late.is_empty() && s.rejected.is_empty(), "{s:?}");
    let expected = oracle(&l, &file).await;
    assert_same(&metrics_rows(&l).await, &expected);

    // The aggregated topic: keyed by city, Spark's shape; the last message of every
    // (city, window) is final and equals the oracle.
    let msgs = read_topic(&l, &l.config.topics.aggregated.name);
    let mut last: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();
    for (key, value, _) in &msgs {
        let v: serde_json::Value = serde_json::from_slice(value).unwrap();
        let city = v["city"].as_str().unwrap().to_string();
        assert_eq!(key.as_deref(), Some(city.as_bytes()));
        for f in [
            "total_events",
            "requests",
            "completions",
            "cancellations",
            "avg_fare",
            "unique_riders",
            "cancellation_rate",
            "completion_rate",
            "final",
            "updated_at",
        ] {
            assert!(v.get(f).is_some(), "{f} missing in {v}");
        }
        let start = v["window"]["start"].as_str().unwrap().to_string();
        last.insert((city, start), v);
    }
    assert_eq!(last.len(), expected.len());
    for e in &expected {
        let v = &last[&(e.city.clone(), ridectl::time::format_millis(e.window_start))];
        assert_eq!(v["final"], true, "{v}");
        assert_eq!(v["total_events"], e.total_events, "{v}");
        assert_eq!(v["unique_riders"], e.unique_riders, "{v}");
        assert_eq!(
            v["window"]["end"],
            ridectl::time::format_millis(e.window_end)
        );
    }

    // A second bounded run is a no-op: nothing new, same rows.
    let s = run_bounded(&config);
    assert_eq!(s.accepted, 0, "{s:?}");
    assert_same(&metrics_rows(&l).await, &expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_the_middle_then_restart_gives_the_same_final_rows() {
    let l = test_config("agg-kill");
    common::provision(&l).await;
    let dir = std::env::temp_dir().join(common::unique("agg-kill"));
    let (events, file) = dataset(7, 200_000, 20_000.0, &dir);
    produce(&l, &as_messages(&events)).await;
    let config = common::write_config(&l, &dir);
    let c = ch(&l);

    // Kill it three times, each time once it has made some output durable.
    let mut killed_mid_run = 0;
    for round in 0..3u64 {
        let mut child = spawn(&config, &["--bounded", "--format", "json"]);
        let _guard = Guard(child.id());
        let before: u64 = c
            .query_raw("SELECT count() FROM city_window_partials")
            .fetch_one()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n: u64 = c
                .query_raw("SELECT count() FROM city_window_partials")
                .fetch_one()
                .await
                .unwrap();
            if n > before || Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A different moment each round: right away, mid-trigger, a bit later.
        tokio::time::sleep(Duration::from_millis(150 * round)).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed_mid_run += 1;
        }
        let _ = child.wait();
    }
    assert!(
        killed_mid_run >= 2,
        "the run finished before it could be killed"
    );

    let s = run_bounded(&config);
    assert_eq!(s.ending, "bounded");
    assert!(s.late.is_empty() && s.rejected.is_empty(), "{s:?}");
    assert_same(&metrics_rows(&l).await, &oracle(&l, &file).await);
}

/// Waits until the group's recorded positions (progress FINAL) add up to `total`
/// (`at_least`: until they exceed it).
async fn wait_positions(l: &Loaded, total: i64, at_least: bool, limit: Duration) {
    let c = ch(l);
    let deadline = Instant::now() + limit;
    loop {
        let sum: i64 = c
            .query_raw(
                "SELECT toInt64(sum(position)) FROM aggregate_progress FINAL WHERE partition >= 0",
            )
            .fetch_one()
            .await
            .unwrap();
        if (at_least && sum > total) || sum == total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "positions add up to {sum}, waiting for {total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_in_one_group_give_the_same_rows_as_one() {
    let l = test_config("agg-scale");
    common::provision(&l).await;
    let dir = std::env::temp_dir().join(common::unique("agg-scale"));
    let n = 300_000;
    let (events, file) = dataset(99, n, 20_000.0, &dir);
    produce(&l, &as_messages(&events)).await;
    let config = common::write_config(&l, &dir);
    // Streaming workers: the second joins while the first is working, the group
    // rebalances and they share the partitions; the owner of partition 0 emits the
    // topic-wide finals.
    let a = spawn(&config, &["--format", "json"]);
    let _ga = Guard(a.id());
    wait_positions(&l, 0, true, Duration::from_secs(60)).await;
    let b = spawn(&config, &["--format", "json"]);
    let _gb = Guard(b.id());
    wait_positions(&l, n as i64, false, Duration::from_secs(120)).await;
    // Let the idle rule finalize what the watermark allows, then stop both.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sigterm(&a);
    sigterm(&b);
    let (sa, sb) = (
        wait_summary(a, Duration::from_secs(15)),
        wait_summary(b, Duration::from_secs(15)),
    );
    assert!(
        sa.accepted > 0 && sb.accepted > 0,
        "both workers took partitions: {sa:?} {sb:?}"
    );
    assert!(sa.accepted + sb.accepted >= n as u64, "{sa:?} {sb:?}");
    let finals_before: u64 = ch(&l)
        .query_raw("SELECT count() FROM city_window_metrics FINAL WHERE is_final")
        .fetch_one()
        .await
        .unwrap();
    assert!(finals_before > 0, "the two workers finalized windows");
    // Close the last windows (those still open when they stopped).
    let s = run_bounded(&config);
    assert_eq!(s.ending, "bounded");
    assert_same(&metrics_rows(&l).await, &oracle(&l, &file).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_commits_and_exits_0_then_the_rest_is_resumed() {
    let l = test_config("agg-term");
    common::provision(&l).await;
    let dir = std::env::temp_dir().join(common::unique("agg-term"));
    let (events, file) = dataset(5, 100_000, 2_000.0, &dir);
    produce(&l, &as_messages(&events)).await;
    let config = common::write_config(&l, &dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = spawn(&config, &["--format", "json", "--metrics-addr", &addr]);
    let _guard = Guard(child.id());
    wait_positions(&l, 1000, true, Duration::from_secs(60)).await;

    // The Prometheus endpoint answers while the worker runs.
    let scrape = move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = tokio::task::spawn_blocking(scrape.clone()).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        if !text.contains("ridectl_aggregate_output_rows_total 0\n")
            && text.contains("ridectl_aggregate_watermark_seconds")
        {
            break text;
        }
        assert!(Instant::now() < deadline, "no output reported:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for metric in [
        "ridectl_aggregate_events_consumed_total",
        "ridectl_aggregate_consumer_lag{partition=",
        "ridectl_aggregate_watermark_delay_seconds",
        "ridectl_aggregate_open_windows",
        "ridectl_aggregate_rejected_total{reason=\"invalid_json\"}",
        "ridectl_aggregate_output_latency_seconds_bucket",
        "ridectl_aggregate_output_latency_quantile_seconds{quantile=\"0.99\"}",
    ] {
        assert!(text.contains(metric), "{metric} missing:\n{text}");
    }
    let sent = Instant::now();
    sigterm(&child);
    let s = wait_summary(child, Duration::from_secs(15));
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(s.ending, "stopped");

    // Offsets were committed: the bounded run that finishes the job does not
    // consume everything again.
    let rest = run_bounded(&config);
    assert!(s.consumed > 0 && rest.consumed < 100_000, "{s:?} {rest:?}");
    assert_same(&metrics_rows(&l).await, &oracle(&l, &file).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_dead_lettered_once_late_events_are_routed_and_valid_ones_add_up() {
    let l = test_config("agg-bad");
    common::provision(&l).await;
    let dir = std::env::temp_dir().join(common::unique("agg-bad"));
    let (events, file) = dataset(3, 8_000, 5_000.0, &dir);
    let good = events[100].json.clone();
    let far_future = ridectl::time::format_millis(now_millis() + 86_400_000);
    let bad: Vec<(&str, String)> = vec![
        (
            "invalid_json",
            "{\"event_type\": \"requested\", oops".to_string(),
        ),
        ("invalid_json", "\u{0}\u{1}binary".to_string()),
        ("missing_field", good.replacen("\"city\":", "\"town\":", 1)),
        (
            "wrong_type",
            good.replacen("\"estimated_fare\":", "\"estimated_fare\":\"12\",\"x\":", 1),
        ),
        (
            "wrong_type",
            good.replacen("\"event_type\":\"", "\"event_type\":\"teleported", 1),
        ),
        (
            "invalid_timestamp",
            good.replacen("\"timestamp\":\"", "\"timestamp\":\"yesterday", 1),
        ),
        (
            "timestamp_out_of_range",
            good.replacen("\"timestamp\":\"2", "\"timestamp\":\"3", 1),
        ),
        ("timestamp_out_of_range", {
            let v: serde_json::Value = serde_json::from_str(&good).unwrap();
            good.replacen(v["timestamp"].as_str().unwrap(), &far_future, 1)
        }),
        (
            "invalid_value",
            good.replacen("\"user_id\":\"", "\"user_id\":\"\",\"_\":\"", 1),
        ),
    ];
    let mut msgs = as_messages(&events);
    for (i, (_, b)) in bad.iter().enumerate() {
        msgs.insert(
            500 + i * 700,
            (Some(format!("bad-{i}")), b.clone().into_bytes()),
        );
    }
    produce(&l, &msgs).await;
    let config = common::write_config(&l, &dir);
    let s = run_bounded(&config);
    assert_eq!(s.accepted, 8_000);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (r, _) in &bad {
        *want.entry(r.to_string()).or_default() += 1;
    }
    assert_eq!(s.rejected, want);
    // The aggregation worker only counts what it rejects: the ingest group writes
    // the dead letters, so two workers reading the topic still leave one each.
    assert!(read_topic(&l, &l.config.topics.dead_letter.name).is_empty());
    let (_t, sd) = ridectl::shutdown::Shutdown::manual();
    let opts = ridectl::ingest::IngestOptions {
        bounded: true,
        from_beginning: true,
    };
    let ingested = ridectl::ingest::run(&l.config, opts, sd).await.unwrap();
    assert_eq!(ingested.dead_letters.values().sum::<u64>(), bad.len() as u64);
    let dlq = read_topic(&l, &l.config.topics.dead_letter.name);
    assert_eq!(dlq.len(), bad.len());
    for (reason, payload) in &bad {
        let m = dlq
            .iter()
            .find(|(_, p, _)| p == payload.as_bytes())
            .unwrap_or_else(|| panic!("{reason} message not dead-lettered byte for byte"));
        assert_eq!(m.2[ridectl::kafka::dlq::REASON_HEADER], *reason);
        assert!(!m.2[ridectl::kafka::dlq::DETAIL_HEADER].is_empty());
        assert_eq!(
            m.2[ridectl::kafka::dlq::SOURCE_TOPIC_HEADER],
            l.config.topics.ride_events.name
        );
    }
    let expected = oracle(&l, &file).await;
    assert_same(&metrics_rows(&l).await, &expected);

    // The bounded run closed every window: an old event arriving now is late. It
    // goes to the late topic with its reason and is counted, never dropped silently,
    // and the final rows do not change.
    let late = events[10]
        .json
        .replacen("\"user_id\":\"", "\"user_id\":\"late-", 1);
    produce(&l, &[(Some("late-ride".into()), late.clone().into_bytes())]).await;
    let s = run_bounded(&config);
    assert_eq!(s.late.values().sum::<u64>(), 1, "{s:?}");
    let lt = read_topic(&l, &l.config.topics.late_events.name);
    assert_eq!(lt.len(), 1);
    assert_eq!(lt[0].1, late.as_bytes());
    assert_eq!(lt[0].2[ridectl::kafka::dlq::REASON_HEADER], "late");
    assert!(
        lt[0]
            .2
            .contains_key(ridectl::kafka::dlq::EVENT_TIME_HEADER)
    );
    assert!(
        lt[0]
            .2
            .contains_key(ridectl::kafka::dlq::WATERMARK_HEADER)
    );
    assert_same(&metrics_rows(&l).await, &expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn recompute_from_the_beginning_or_a_timestamp_rebuilds_the_windows() {
    let l = test_config("agg-recompute");
    common::provision(&l).await;
    let dir = std::env::temp_dir().join(common::unique("agg-recompute"));
    let (events, file) = dataset(11, 30_000, 3_000.0, &dir);
    let mut msgs = as_messages(&events);
    msgs.insert(1000, (None, b"not json".to_vec()));
    produce(&l, &msgs).await;
    let config = common::write_config(&l, &dir);
    let s = run_bounded(&config);
    assert_eq!(s.rejected.values().sum::<u64>(), 1);
    let expected = oracle(&l, &file).await;
    assert_same(&metrics_rows(&l).await, &expected);

    // Corrupt the outputs: drop every metrics row and plant a wrong partial.
    let c = ch(&l);
    c.query_raw("TRUNCATE TABLE city_window_metrics")
        .execute()
        .await
        .unwrap();
    let w = &expected[expected.len() / 2];
    c.query_raw(
        "INSERT INTO city_window_partials (city, window_start, window_end, partition, \
         total_events, requests, accepted, started, completions, cancellations, fare_sum, \
         fare_count, version) VALUES ({city:String}, fromUnixTimestamp64Milli({s:Int64}), \
         fromUnixTimestamp64Milli({e:Int64}), 0, 999999, 0, 0, 0, 0, 0, 0, 1, 1099511627775)",
    )
    .param("city", w.city.as_str())
    .param("s", w.window_start)
    .param("e", w.window_end)
    .execute()
    .await
    .unwrap();

    // A bounded run on a closed group changes nothing; a recompute rebuilds it all.
    let s = wait_summary(
        spawn(
            &config,
            &["--bounded", "--from-beginning", "--format", "json"],
        ),
        Duration::from_secs(300),
    );
    assert_eq!(s.consumed, 30_001);
    assert!(
        s.rejected.is_empty(),
        "history is not dead-lettered twice: {s:?}"
    );
    assert_same(&metrics_rows(&l).await, &expected);
    assert!(read_topic(&l, &l.config.topics.dead_letter.name).is_empty());

    // From a timestamp: only the windows starting at or after it are re-emitted.
    c.query_raw("TRUNCATE TABLE city_window_metrics")
        .execute()
        .await
        .unwrap();
    let from = expected[expected.len() / 3].window_start + 30_000;
    let slide = l.config.aggregation.slide.as_millis_i64();
    let first = (from / slide + 1) * slide;
    let s = wait_summary(
        spawn(
            &config,
            &[
                "--bounded",
                "--from",
                &ridectl::time::format_millis(from),
                "--format",
                "json",
            ],
        ),
        Duration::from_secs(300),
    );
    assert_eq!(s.ending, "bounded");
    let tail: Vec<MetricsRow> = expected
        .iter()
        .filter(|r| r.window_start >= first)
        .cloned()
        .collect();
    assert!(tail.len() < expected.len() && !tail.is_empty());
    assert_same(&metrics_rows(&l).await, &tail);
}
