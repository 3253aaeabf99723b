//! `ridectl alerts` against the real stack (Kafka, ingest, ClickHouse) and a local
//! HTTP receiver standing in for PagerDuty's Events API.
//!
//! The acceptance scenario: a city's cancellation rate at 50% for 7 minutes while the
//! others stay at 10% pages exactly once, for that city only; after it recovers,
//! exactly one resolve; further checks send nothing. History is written with past
//! timestamps and evaluated with `--at`, so the test is deterministic.

mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ridectl::alerts::pagerduty::{self, Action, Event, RetryPolicy, SendError};
use ridectl::config::Loaded;
use ridectl::events::{CancelledBy, EventType, LatLng, RideEvent, SCHEMA_VERSION};
use ridectl::time::{EpochMillis, format_millis, now_millis};
use ridectl::units::Secret;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A routing key that must never appear in any output.
const KEY: &str = "R0UT1NG-KEY-0123456789abcdef0123";
const RULE: &str = "city-cancellation-rate";

// ---------------------------------------------------------------------------------
// The PagerDuty stand-in: a tiny HTTP/1.1 server recording every POST body.

/// One request as received.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: Value,
}

/// Answers each request with the next status of its script (202 when the script is
/// used up), as PagerDuty would: a JSON body, `Connection: close`.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (rec, scr) = (received.clone(), script.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (rec, scr) = (rec.clone(), scr.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, rec, scr).await;
                });
            }
        });
        Receiver {
            url,
            received,
            script,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn bodies(&self) -> Vec<Value> {
        self.received().into_iter().map(|r| r.body).collect()
    }

    fn then_answer(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses);
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
    let status = script.lock().unwrap().pop_front().unwrap_or(202);
    let answer = match status {
        202 => serde_json::json!({"status": "success", "message": "Event processed",
                                  "dedup_key": body["dedup_key"]}),
        // PagerDuty's 400 names the problem; echo the key to prove ridectl masks it.
        400 => serde_json::json!({"status": "invalid event", "message": "Event object is invalid",
                                  "errors": [format!("routing_key {} unknown", body["routing_key"])]}),
        429 => serde_json::json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly."}),
        _ => serde_json::json!({"status": "unavailable"}),
    }
    .to_string();
    received.lock().unwrap().push(Received {
        method,
        path,
        content_type: header("content-type"),
        body,
    });
    let response = format!(
        "HTTP/1.1 {status} Status\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

// ---------------------------------------------------------------------------------
// Test data: ride events per city and minute.

/// `(city, minute after t0, requests, cancellations)`.
type Minute = (&'static str, i64, u32, u32);

/// Ride events for `minutes`: each request at its own second of the minute, the first
/// `cancellations` rides cancelled half a second later, the others accepted.
fn ride_events(t0: EpochMillis, minutes: &[Minute]) -> Vec<RideEvent> {
    let mut out = Vec::new();
    for &(city, m, requests, cancellations) in minutes {
        for i in 0..requests {
            let at = t0 + m * 60_000 + i64::from(i) * 1000;
            let ride = format!("{city}-{m}-{i}");
            let base = RideEvent {
                event_id: format!("{ride}-req"),
                schema_version: SCHEMA_VERSION,
                event_type: EventType::Requested,
                ride_id: ride.clone(),
                timestamp: format_millis(at),
                city: city.to_string(),
                estimated_fare: 12.5,
                user_id: format!("u{}", i % 17),
                driver_id: None,
                pickup: LatLng {
                    lat: 52.5,
                    lng: 13.4,
                },
                dropoff: LatLng {
                    lat: 52.6,
                    lng: 13.5,
                },
                final_fare: None,
                cancelled_by: None,
            };
            let end = if i < cancellations {
                RideEvent {
                    event_id: format!("{ride}-cancel"),
                    event_type: EventType::Cancelled,
                    cancelled_by: Some(CancelledBy::Rider),
                    timestamp: format_millis(at + 500),
                    ..base.clone()
                }
            } else {
                RideEvent {
                    event_id: format!("{ride}-accept"),
                    event_type: EventType::Accepted,
                    driver_id: Some(format!("d{i}")),
                    timestamp: format_millis(at + 500),
                    ..base.clone()
                }
            };
            out.push(base);
            out.push(end);
        }
    }
    out
}

/// Writes the events through the real pipeline: Kafka, then `ridectl ingest
/// --bounded` (the materialized view fills `city_minute_rollup`).
async fn ingest_through_kafka(l: &Loaded, events: &[RideEvent]) {
    let records: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.ride_id.clone(), serde_json::to_vec(e).unwrap()))
        .collect();
    common::produce(l, &l.config.topics.ride_events.name, &records).await;
    let (_t, sd) = ridectl::shutdown::Shutdown::manual();
    let opts = ridectl::ingest::IngestOptions {
        bounded: true,
        from_beginning: true,
    };
    let summary = ridectl::ingest::run(&l.config, opts, sd).await.unwrap();
    assert_eq!(summary.ride_rows, events.len() as u64);
}

/// Inserts the events straight into `ride_events` (faster; for the tests that are not
/// about the pipeline).
async fn insert_directly(l: &Loaded, events: &[RideEvent]) {
    let values: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "('{}',1,'{}','{}',parseDateTime64BestEffort('{}',3,'UTC'),'{}',{},'{}','',0,0,0,0,NULL,'',0,{i})",
                e.event_id,
                e.event_type.as_str(),
                e.ride_id,
                e.timestamp,
                e.city,
                e.estimated_fare,
                e.user_id
            )
        })
        .collect();
    let ch = ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write);
    ch.query_raw(&format!(
        "INSERT INTO ride_events (event_id,schema_version,event_type,ride_id,timestamp,city,estimated_fare,user_id,driver_id,pickup_lat,pickup_lng,dropoff_lat,dropoff_lng,final_fare,cancelled_by,kafka_partition,kafka_offset) VALUES {}",
        values.join(",")
    ))
    .execute()
    .await
    .unwrap();
}

/// `spike_city` at 50% cancellations in minutes 0..7, 10% from minute 7 on; the
/// other cities at 10% throughout (20 requests per city and minute, minutes 0..12).
fn spike_history(spike_city: &'static str, others: &[&'static str]) -> Vec<Minute> {
    let mut minutes = Vec::new();
    for m in 0..12 {
        minutes.push((spike_city, m, 20, if m < 7 { 10 } else { 2 }));
        for &c in others {
            minutes.push((c, m, 20, 2));
        }
    }
    minutes
}

/// A whole minute well in the past (inside the raw table's 90-day TTL).
fn past_minute(hours_ago: i64) -> EpochMillis {
    let t = now_millis() - hours_ago * 3_600_000;
    t - t.rem_euclid(60_000)
}

// ---------------------------------------------------------------------------------
// Running the CLI.

/// A pipeline.yaml for `l` whose state file lives in `dir` and whose routing key comes
/// from PAGERDUTY_ROUTING_KEY, as in the real pipeline.yaml.
fn config_for(l: &Loaded, dir: &Path) -> PathBuf {
    let mut l = l.clone();
    l.config.alerts.state_file = dir.join("alerts-state.json");
    let path = common::write_config(&l, dir);
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["alerts"]["pagerduty"]["routing_key"] = "${PAGERDUTY_ROUTING_KEY:-}".into();
    std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
    path
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\nstderr: {}", self.stdout, self.stderr))
    }
}

async fn ridectl(config: &Path, args: &[&str], key: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::from(common::ridectl_cmd());
    cmd.arg("--config").arg(config).args(args);
    match key {
        Some(k) => cmd.env("PAGERDUTY_ROUTING_KEY", k),
        None => cmd.env_remove("PAGERDUTY_ROUTING_KEY"),
    };
    let out = cmd.output().await.unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stdout.contains(KEY) && !run.stderr.contains(KEY),
        "the routing key leaked:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

async fn check_at(config: &Path, url: &str, at: EpochMillis) -> Run {
    let at = format_millis(at);
    ridectl(
        config,
        &[
            "alerts",
            "check",
            "--at",
            &at,
            "--pagerduty-url",
            url,
            "--format",
            "json",
            "--initial-backoff",
            "10ms",
            "--max-backoff",
            "50ms",
            "--max-attempts",
            "3",
        ],
        Some(KEY),
    )
    .await
}

fn actions(bodies: &[Value]) -> Vec<(String, String)> {
    bodies
        .iter()
        .map(|b| {
            (
                b["event_action"].as_str().unwrap_or_default().to_string(),
                b["dedup_key"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn key_of(city: &str) -> String {
    format!("ridectl/{RULE}/{city}")
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(common::unique(tag));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------------------------

/// What one `ridectl alerts check --at <minute>` sent.
struct Step {
    minute: i64,
    report: Value,
    sent: Vec<Value>,
}

/// Replays history as `ridectl alerts watch` would have seen it: one `check` (a new
/// process each time: the state file carries open incidents) at each minute boundary
/// from `t0 + first` to `t0 + last` minutes.
async fn replay(
    config: &Path,
    pd: &Receiver,
    t0: EpochMillis,
    minutes: std::ops::RangeInclusive<i64>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for minute in minutes {
        let before = pd.bodies().len();
        let run = check_at(config, &pd.url, t0 + minute * 60_000).await;
        assert_eq!(run.code, 0, "minute {minute}: {}", run.stderr);
        steps.push(Step {
            minute,
            report: run.json(),
            sent: pd.bodies()[before..].to_vec(),
        });
    }
    steps
}

/// The acceptance scenario on history already in ClickHouse, whatever produced it
/// (these rows, or `ridectl generate --cancel-spike CITY:0.5@0+7m --start-time T0`
/// then `ridectl ingest --bounded`): replayed minute by minute over `minutes`, the
/// spike pages exactly once, for `spike_city` only, then resolves exactly once, and
/// checking again sends nothing. Returns the steps for data-specific checks.
async fn spike_pages_once_and_resolves_once(
    l: &Loaded,
    t0: EpochMillis,
    minutes: std::ops::RangeInclusive<i64>,
    spike_city: &str,
) -> Vec<Step> {
    let dir = temp_dir("alerts-accept");
    let config = config_for(l, &dir);
    let pd = Receiver::start(&[]).await;
    let steps = replay(&config, &pd, t0, minutes.clone()).await;

    let sent: Vec<(i64, String, String)> = steps
        .iter()
        .flat_map(|s| {
            actions(&s.sent)
                .into_iter()
                .map(move |(action, key)| (s.minute, action, key))
        })
        .collect();
    let kinds: Vec<(&str, &str)> = sent
        .iter()
        .map(|(_, a, k)| (a.as_str(), k.as_str()))
        .collect();
    let key = key_of(spike_city);
    assert_eq!(
        kinds,
        vec![("trigger", key.as_str()), ("resolve", key.as_str())],
        "exactly one trigger, for {spike_city} only, then exactly one resolve: {sent:?}"
    );
    // Every trigger is well formed.
    let trigger = &pd.bodies()[0];
    assert_eq!(trigger["routing_key"], KEY);
    let p = &trigger["payload"];
    assert!(p["summary"].as_str().unwrap().contains(spike_city), "{p}");
    assert!(p["source"].as_str().unwrap().starts_with("ridectl/"));
    for field in ["severity", "timestamp", "component", "group", "class"] {
        assert!(p[field].is_string(), "{field}: {p}");
    }
    let d = &p["custom_details"];
    assert_eq!(d["city"], spike_city);
    assert!(d["rate"].as_f64().unwrap() > 0.3, "{d}");
    assert!(d["requests"].as_u64().unwrap() >= 25, "{d}");
    assert!(
        d["cancellations"].is_u64() && d["window"]["minutes"] == 5,
        "{d}"
    );
    let r = pd.received();
    assert_eq!(
        (r[0].method.as_str(), r[0].path.as_str()),
        ("POST", "/v2/enqueue")
    );
    assert_eq!(r[0].content_type, "application/json");
    assert!(
        r[1].body.get("payload").is_none(),
        "resolve carries no payload"
    );

    // Checking again, at the last minute and later: nothing new.
    let last = *minutes.end();
    for m in [last, last + 1] {
        let run = check_at(&config, &pd.url, t0 + m * 60_000 + 5_000).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(pd.bodies().len(), 2);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("alerts-state.json")).unwrap())
            .unwrap();
    assert_eq!(state["incidents"], serde_json::json!({}));
    std::fs::remove_dir_all(dir).ok();
    steps
}

fn status_of(report: &Value, city: &str) -> Option<String> {
    report["rules"][0]["cities"]
        .as_array()?
        .iter()
        .find(|c| c["city"] == city)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_spike_pages_once_for_that_city_and_resolves_once() {
    let l = common::isolated("alerts");
    common::provision(&l).await;
    let t0 = past_minute(3);
    let events = ride_events(
        t0,
        &spike_history("prague", &["berlin", "vienna", "warsaw"]),
    );
    ingest_through_kafka(&l, &events).await;
    // A variant on generated traffic (once `ridectl generate` is merged) runs
    //   ridectl generate --cancel-spike prague:0.5@0+7m --start-time <t0> ...
    //   ridectl ingest --bounded
    // against `l` instead of the two lines above, then the same call below.
    let steps = spike_pages_once_and_resolves_once(&l, t0, 1..=12, "prague").await;

    // On these exact rows: pending through minute 4, the trigger when minutes 0–4 are
    // complete, the resolve when minute 7 (back to 10%) is.
    let at = |m: i64| steps.iter().find(|s| s.minute == m).unwrap();
    assert_eq!(
        status_of(&at(4).report, "prague").as_deref(),
        Some("pending")
    );
    assert_eq!(status_of(&at(4).report, "berlin").as_deref(), Some("ok"));
    assert_eq!(
        actions(&at(5).sent),
        vec![("trigger".into(), key_of("prague"))]
    );
    assert_eq!(
        status_of(&at(7).report, "prague").as_deref(),
        Some("firing")
    );
    assert_eq!(
        actions(&at(8).sent),
        vec![("resolve".into(), key_of("prague"))]
    );
    assert_eq!(
        status_of(&at(8).report, "prague").as_deref(),
        Some("resolved")
    );
    let p = &at(5).sent[0]["payload"];
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["timestamp"], format_millis(t0 + 5 * 60_000));
    let d = &p["custom_details"];
    assert_eq!(d["rate"], 0.5);
    assert_eq!(d["requests"], 100);
    assert_eq!(d["cancellations"], 50);
    assert_eq!(d["window"]["from"], format_millis(t0));
    assert_eq!(d["window"]["to"], format_millis(t0 + 5 * 60_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_5xx_and_429_never_on_400() {
    let policy = RetryPolicy {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_attempts: 4,
        request_timeout: Duration::from_secs(5),
    };
    let event = Event {
        routing_key: Secret::new(KEY),
        event_action: Action::Resolve,
        dedup_key: key_of("berlin"),
        payload: None,
        client: "ridectl".into(),
    };

    let pd = Receiver::start(&[500, 429, 503]).await;
    let client = pagerduty::Client::new(&pd.url, policy).unwrap();
    assert_eq!(client.send(&event).await.unwrap(), 4);
    let bodies = pd.bodies();
    assert_eq!(bodies.len(), 4);
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "same event each time"
    );

    let pd = Receiver::start(&[400]).await;
    let client = pagerduty::Client::new(&pd.url, policy).unwrap();
    let err = client.send(&event).await.unwrap_err();
    assert!(
        matches!(err, SendError::Rejected { status: 400, .. }),
        "{err}"
    );
    assert!(!err.to_string().contains(KEY), "key masked: {err}");
    assert_eq!(pd.bodies().len(), 1, "400 is never retried");

    let pd = Receiver::start(&[500, 500, 500, 500, 500]).await;
    let client = pagerduty::Client::new(&pd.url, policy).unwrap();
    let err = client.send(&event).await.unwrap_err();
    assert!(
        matches!(err, SendError::GaveUp { attempts: 4, .. }),
        "{err}"
    );
    assert_eq!(pd.bodies().len(), 4, "max attempts");

    // Nothing listening: connection errors are retried too, then given up.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client =
        pagerduty::Client::new(&format!("http://127.0.0.1:{port}/v2/enqueue"), policy).unwrap();
    let err = client.send(&event).await.unwrap_err();
    assert!(
        matches!(err, SendError::GaveUp { attempts: 4, .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_events_are_not_recorded_and_go_out_next_time() {
    let l = common::isolated("alerts-fail");
    common::provision(&l).await;
    let t0 = past_minute(2);
    insert_directly(&l, &ride_events(t0, &spike_history("vienna", &["berlin"]))).await;
    let dir = temp_dir("alerts-fail");
    let config = config_for(&l, &dir);
    let at = t0 + 6 * 60_000;

    // PagerDuty down (3 attempts, all 503): exit 69, nothing recorded.
    let pd = Receiver::start(&[503, 503, 503]).await;
    let run = check_at(&config, &pd.url, at).await;
    assert_eq!(run.code, 69, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(pd.bodies().len(), 3);
    assert_eq!(run.json()["events"][0]["delivery"], "failed");
    let state = std::fs::read_to_string(dir.join("alerts-state.json")).unwrap_or_default();
    assert!(!state.contains("vienna"), "{state}");

    // PagerDuty rejects it (400): exit 1, not retried, still not recorded.
    pd.then_answer(&[400]);
    let run = check_at(&config, &pd.url, at).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(pd.bodies().len(), 4);

    // Back: the trigger goes out now, once.
    let run = check_at(&config, &pd.url, at).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run2 = check_at(&config, &pd.url, at).await;
    assert_eq!(run2.code, 0, "{}", run2.stderr);
    let bodies = pd.bodies();
    assert_eq!(bodies.len(), 5);
    assert_eq!(
        actions(&bodies[4..]),
        vec![("trigger".to_string(), key_of("vienna"))]
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_routing_key_is_a_config_error_and_dry_run_sends_nothing() {
    let l = common::isolated("alerts-dry");
    common::provision(&l).await;
    let t0 = past_minute(2);
    insert_directly(&l, &ride_events(t0, &spike_history("warsaw", &["berlin"]))).await;
    let dir = temp_dir("alerts-dry");
    let config = config_for(&l, &dir);
    let pd = Receiver::start(&[]).await;
    let at = format_millis(t0 + 6 * 60_000);

    let run = ridectl(
        &config,
        &["alerts", "check", "--at", &at, "--pagerduty-url", &pd.url],
        None,
    )
    .await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(
        run.stderr.contains("PAGERDUTY_ROUTING_KEY"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("alerts.pagerduty.routing_key"),
        "{}",
        run.stderr
    );

    for key in [None, Some(KEY)] {
        let run = ridectl(
            &config,
            &[
                "alerts",
                "check",
                "--dry-run",
                "--at",
                &at,
                "--pagerduty-url",
                &pd.url,
            ],
            key,
        )
        .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.contains("\"event_action\": \"trigger\""),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains(&key_of("warsaw")), "{}", run.stdout);
        assert!(run.stdout.contains("not sent (dry run)"), "{}", run.stdout);
    }
    assert!(pd.bodies().is_empty());
    let written: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        written,
        vec![std::ffi::OsString::from("pipeline.yaml")],
        "a dry run records nothing"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_pages_once_across_evaluations_and_stops_on_sigterm() {
    let l = common::isolated("alerts-watch");
    common::provision(&l).await;
    // A spike around the current time, so `watch` (which evaluates now) sees it even
    // if a minute boundary passes during the test.
    let now_minute = past_minute(0);
    let t0 = now_minute - 8 * 60_000;
    let minutes: Vec<Minute> = (0..10)
        .flat_map(|m| [("munich", m, 20, 12), ("krakow", m, 20, 1)])
        .collect();
    insert_directly(&l, &ride_events(t0, &minutes)).await;
    let dir = temp_dir("alerts-watch");
    let config = config_for(&l, &dir);
    let pd = Receiver::start(&[]).await;

    let mut child = tokio::process::Command::from(common::ridectl_cmd())
        .arg("--config")
        .arg(&config)
        .args([
            "alerts",
            "watch",
            "--every",
            "1s",
            "--pagerduty-url",
            &pd.url,
        ])
        .env("PAGERDUTY_ROUTING_KEY", KEY)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pd.bodies().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more evaluations: still exactly one trigger.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), async {
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .await
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        (child.wait().await.unwrap(), stdout, stderr)
    })
    .await
    .expect("watch stops on SIGTERM");
    let (status, stdout, stderr) = out;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY));
    assert_eq!(
        actions(&pd.bodies()),
        vec![("trigger".to_string(), key_of("munich"))],
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.matches("alerts evaluated at").count() >= 3,
        "evaluated repeatedly: {stdout}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_is_exit_69() {
    let mut l = common::isolated("alerts-down");
    let port = {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    l.config.clickhouse.url = format!("http://127.0.0.1:{port}");
    let dir = temp_dir("alerts-down");
    let config = config_for(&l, &dir);
    let run = ridectl(&config, &["alerts", "check", "--dry-run"], None).await;
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(run.stderr.contains("cannot be reached"), "{}", run.stderr);
    std::fs::remove_dir_all(dir).ok();
}
