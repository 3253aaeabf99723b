//! `ridectl generate` against the real local broker: what was delivered is what a
//! consumer reads back, per topic; every ride stays on one partition; the file
//! written alongside holds exactly the produced messages; the CLI's usage errors,
//! broker-down error, paced count and Ctrl-C behave as documented.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use ridectl::config::PipelineConfig;
use ridectl::events::{parse_driver_location, parse_ride_event};
use ridectl::generate::sink::Output;
use ridectl::generate::{self, GenerateOptions, Shutdown};
use ridectl::kafka::{Role, client_config};
use ridectl::units::Rate;

/// Reads every message of `topic` from the beginning until `want` messages were
/// seen (or 60 s passed): (partition, key, payload).
fn read_all(cfg: &PipelineConfig, topic: &str, want: usize) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let mut cc = client_config(&cfg.kafka, Role::Consumer);
    cc.set("group.id", common::unique("gen-test"))
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = cc.create().unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(want);
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push((
                m.partition(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    // Nothing more than what was delivered.
    let extra_deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < extra_deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push((
                m.partition(),
                vec![],
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

async fn delete_topics(cfg: &PipelineConfig) {
    let admin = ridectl::kafka::admin(&cfg.kafka).unwrap();
    for t in cfg.topics.resolved() {
        let _ = ridectl::kafka::topics::delete(&admin, &t.name, Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delivered_counts_are_read_back_per_topic_and_rides_keep_their_partition() {
    let l = common::isolated("generate");
    common::provision_topics(&l).await;
    let cfg = l.config.clone();
    let dir = std::env::temp_dir().join(common::unique("gen-file"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("events.jsonl");
    let opts = GenerateOptions {
        rate: Some(Rate::Max),
        count: Some(30_000),
        seed: Some(42),
        start_time: Some(ridectl::time::parse_iso8601("2026-01-01T08:00:00Z").unwrap()),
        malformed: Some(0.01),
        output: Output::KafkaAndFile(file.clone()),
        ..Default::default()
    };
    let (c2, o2) = (cfg.clone(), opts.clone());
    let s = tokio::task::spawn_blocking(move || generate::run(&c2, &o2, &Shutdown::new()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.failed(), 0, "{s:?}");
    assert_eq!(s.ride_events.delivered, 30_000);
    assert!(s.malformed.delivered > 100, "{s:?}");
    assert!(s.driver_locations.delivered > 10_000, "{s:?}");

    // Ride topic: ride events + malformed messages, nothing lost, nothing extra.
    let rides_topic = &cfg.topics.ride_events.name;
    let want = (s.ride_events.delivered + s.malformed.delivered) as usize;
    let rides = read_all(&cfg, rides_topic, want);
    assert_eq!(rides.len(), want, "messages read back from {rides_topic}");
    let mut partition_of: HashMap<Vec<u8>, i32> = HashMap::new();
    let (mut valid, mut malformed) = (0u64, 0u64);
    let mut event_ids = HashSet::new();
    for (p, key, payload) in &rides {
        // Key-to-partition stability: every message of a ride on one partition.
        let first = *partition_of.entry(key.clone()).or_insert(*p);
        assert_eq!(
            first,
            *p,
            "ride {} on two partitions",
            String::from_utf8_lossy(key)
        );
        match parse_ride_event(payload) {
            Ok(e) => {
                valid += 1;
                assert_eq!(e.ride_id.as_bytes(), &key[..]);
                assert!(event_ids.insert(format!("{:?}", e.event_id)));
            }
            Err(_) => malformed += 1,
        }
    }
    assert_eq!(valid, s.ride_events.delivered);
    assert_eq!(malformed, s.malformed.delivered);
    let multi_event_rides = {
        let mut n: HashMap<&[u8], u32> = HashMap::new();
        for (_, k, _) in &rides {
            *n.entry(k).or_default() += 1;
        }
        n.values().filter(|&&c| c >= 2).count()
    };
    assert!(
        multi_event_rides > 3000,
        "rides with several events: {multi_event_rides}"
    );

    // Location topic, keyed by driver.
    let locs_topic = &cfg.topics.driver_locations.name;
    let want = s.driver_locations.delivered as usize;
    let locs = read_all(&cfg, locs_topic, want);
    assert_eq!(locs.len(), want, "messages read back from {locs_topic}");
    for (_, key, payload) in &locs {
        let l = parse_driver_location(payload).unwrap();
        assert_eq!(l.driver_id.as_bytes(), &key[..]);
    }

    // The file holds exactly what was produced, in the same order per partition.
    let text = std::fs::read(&file).unwrap();
    let mut lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut produced: Vec<&[u8]> = rides
        .iter()
        .chain(locs.iter())
        .map(|(_, _, p)| p.as_slice())
        .collect();
    lines.sort();
    produced.sort();
    assert_eq!(lines.len(), produced.len());
    assert!(lines == produced, "file and topics differ");

    // Same seed and start time: the same events again (to a file this time).
    let again = dir.join("again.jsonl");
    let o3 = GenerateOptions {
        output: Output::File(again.clone()),
        ..opts
    };
    let c3 = cfg.clone();
    tokio::task::spawn_blocking(move || generate::run(&c3, &o3, &Shutdown::new()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), text);

    delete_topics(&cfg).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn ridectl(config: &std::path::Path) -> Command {
    let mut c = common::ridectl_cmd();
    c.arg("--config").arg(config).env_remove("RIDECTL_PROFILE");
    c
}

#[test]
fn bad_flags_are_usage_errors_naming_the_flag_without_connecting() {
    // A broker address nothing listens on: a usage error must come first, fast.
    for (args, flag) in [
        (&["--rate", "0"][..], "--rate"),
        (&["--rate", "fast"], "--rate"),
        (&["--rate", "10/fortnight"], "--rate"),
        (&["--surge", "paris:x2@0+1m"], "--surge"),
        (&["--cancel-spike", "prague:2@0+1m"], "--cancel-spike"),
        (&["--late", "2"], "--late"),
        (&["--malformed", "0"], "--malformed"),
        (&["--count", "5", "--duration", "5s"], "--count"),
        (&["--speedup", "10"], "--speedup"),
        (&["--backfill", "1h", "--rate", "10/s"], "--backfill"),
        (&["--also-kafka"], "--output"),
    ] {
        let t = Instant::now();
        let out = ridectl(&common::project_dir().join("pipeline.yaml"))
            .arg("generate")
            .args(args)
            .env("RIDECTL_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{args:?} took {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn broker_down_is_a_clear_error_within_ten_seconds() {
    let t = Instant::now();
    let out = ridectl(&common::project_dir().join("pipeline.yaml"))
        .args(["generate", "--count", "10", "--quiet"])
        .env("RIDECTL_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn paced_run_delivers_the_exact_count_and_ctrl_c_flushes() {
    let l = common::isolated("generate-cli");
    common::provision_topics(&l).await;
    let dir = std::env::temp_dir().join(common::unique("gen-cli"));
    let config = common::write_config(&l, &dir);

    // 6000/min for 5 s: exactly 500 ride events, all delivered.
    let out = ridectl(&config)
        .args([
            "generate",
            "--rate",
            "6000/min",
            "--duration",
            "5s",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["ride_events"]["delivered"], 500, "{s}");
    assert_eq!(s["ride_events"]["failed"], 0, "{s}");
    let locs = s["driver_locations"]["delivered"].as_u64().unwrap();
    assert!((2400..=2500).contains(&locs), "{s}");

    // Unbounded; SIGINT stops it, it flushes, summarizes, exits 0.
    let child = ridectl(&config)
        .args([
            "generate", "--rate", "2000/s", "--format", "json", "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["interrupted"], true);
    let r = &s["ride_events"];
    assert!(r["delivered"].as_u64().unwrap() > 1000, "{s}");
    assert_eq!(r["delivered"], r["attempted"], "{s}");

    delete_topics(&l.config).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_that_finally_fail_are_counted_and_the_exit_code_says_so() {
    // A message timeout shorter than delivery takes: the producer gives up on
    // (some or all) messages, as it does when a broker stays away too long.
    let mut l = common::isolated("generate-fail");
    common::provision_topics(&l).await;
    let p = &mut l.config.kafka.producer;
    p.insert("linger.ms".into(), ridectl::config::PropValue("5".into()));
    p.insert(
        "message.timeout.ms".into(),
        ridectl::config::PropValue("10".into()),
    );
    let dir = std::env::temp_dir().join(common::unique("gen-fail"));
    let config = common::write_config(&l, &dir);
    let out = ridectl(&config)
        .args(["generate", "--rate", "max", "--count", "100000", "--quiet"])
        .args(["--no-driver-locations", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &s["ride_events"];
    let (a, d, f) = (
        r["attempted"].as_u64().unwrap(),
        r["delivered"].as_u64().unwrap(),
        r["failed"].as_u64().unwrap(),
    );
    assert_eq!(a, 100_000);
    assert!(f > 0, "{s}");
    assert_eq!(
        a,
        d + f,
        "every message is delivered or counted as failed: {s}"
    );
    assert!(
        s["first_error"].as_str().unwrap().contains("timed out"),
        "{s}"
    );
    delete_topics(&l.config).await;
    let _ = std::fs::remove_dir_all(&dir);
}
