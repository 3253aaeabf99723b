//! Shared helpers of the integration tests. Every test runs against the real local
//! stack (started by scripts/test.sh, or `ridectl local up`) and isolates itself:
//! its own uniquely named topics and its own ClickHouse database.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ridectl::config::{self, Loaded, PipelineConfig};

/// The project directory.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `ridectl` binary built for these tests.
pub fn ridectl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ridectl"))
}

/// The `RIDECTL_*` variables that override single settings: a child `ridectl` given
/// a config file written by [`write_config`] must not inherit them (the file already
/// holds the resolved values, and a test may point a setting elsewhere on purpose).
pub fn override_vars() -> impl Iterator<Item = &'static str> {
    ridectl::config::ENV_OVERRIDES.iter().map(|(var, _)| *var)
}

/// A `ridectl` command without the [`override_vars`]: for config files written by
/// [`write_config`], which hold every resolved value.
pub fn ridectl_cmd() -> std::process::Command {
    let mut c = std::process::Command::new(ridectl_bin());
    for v in override_vars() {
        c.env_remove(v);
    }
    c
}

/// pipeline.yaml as the stack was started with (environment overrides apply).
pub fn loaded() -> Loaded {
    config::load(&project_dir().join("pipeline.yaml"), None).expect("pipeline.yaml must be valid")
}

/// A name unique to this test process and call: `prefix-<pid>-<n>-<nanos>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A configuration whose topics and database belong to this test alone.
pub fn isolated(tag: &str) -> Loaded {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RIDECTL_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
    ridectl::bench::harness::isolated(&loaded(), &unique(tag), "test")
}

/// Creates the topics and applies the schema of `l` (fails the test if the stack is
/// not running, with the command that starts it).
pub async fn provision(l: &Loaded) {
    provision_topics(l).await;
    let migrations =
        ridectl::clickhouse::schema::load_dir(&project_dir().join("sql/schema")).unwrap();
    ridectl::clickhouse::schema::apply(&l.config.clickhouse, &migrations)
        .await
        .expect("ClickHouse endpoint is not running: start the stack with `ridectl local up`");
}

/// Creates the topics of `l` only (for tests that need Kafka but not ClickHouse).
pub async fn provision_topics(l: &Loaded) {
    let cfg: &PipelineConfig = &l.config;
    let timeout = Duration::from_secs(20);
    let kcfg = cfg.kafka.clone();
    tokio::task::spawn_blocking(move || ridectl::kafka::cluster_info(&kcfg, timeout))
        .await
        .unwrap()
        .expect(
            "Kafka is not running: start the stack with `ridectl local up` (scripts/test.sh does)",
        );
    let admin = ridectl::kafka::admin(&cfg.kafka).unwrap();
    let wanted = cfg.topics.resolved();
    let names: Vec<String> = wanted.iter().map(|t| t.name.clone()).collect();
    let (actual, brokers) = ridectl::kafka::topics::describe(&admin, &names, timeout)
        .await
        .unwrap();
    let plan = ridectl::kafka::topics::plan(&wanted, &actual, brokers).unwrap();
    ridectl::kafka::topics::apply(&admin, &plan, timeout)
        .await
        .unwrap();
}

/// Writes `l`'s configuration to `dir/pipeline.yaml` for `ridectl --config` (see
/// [`ridectl::bench::harness::write_config`]: secrets come from the environment,
/// empty on the local stack).
pub fn write_config(l: &Loaded, dir: &Path) -> PathBuf {
    ridectl::bench::harness::write_config(l, dir).unwrap()
}

/// A small deterministic set of valid ride events: `rides` rides in `cities`, each
/// requested then completed or cancelled, one second apart, from `start_ms`.
pub fn simple_rides(
    rides: usize,
    cities: &[&str],
    start_ms: i64,
) -> Vec<ridectl::events::RideEvent> {
    use ridectl::events::{CancelledBy, EventType, LatLng, RideEvent, SCHEMA_VERSION};
    let mut out = Vec::new();
    for i in 0..rides {
        let city = cities[i % cities.len()];
        let base = RideEvent {
            event_id: String::new(),
            schema_version: SCHEMA_VERSION,
            event_type: EventType::Requested,
            ride_id: format!("r{i}"),
            timestamp: ridectl::time::format_millis(start_ms + i as i64 * 1000),
            city: city.to_string(),
            estimated_fare: 10.0 + (i % 7) as f64,
            user_id: format!("u{}", i % 13),
            driver_id: None,
            pickup: LatLng {
                lat: 48.1,
                lng: 17.1,
            },
            dropoff: LatLng {
                lat: 48.2,
                lng: 17.2,
            },
            final_fare: None,
            cancelled_by: None,
        };
        out.push(RideEvent {
            event_id: format!("e{i}-0"),
            ..base.clone()
        });
        let end = if i % 4 == 0 {
            RideEvent {
                event_type: EventType::Cancelled,
                cancelled_by: Some(CancelledBy::Rider),
                ..base.clone()
            }
        } else {
            RideEvent {
                event_type: EventType::Completed,
                driver_id: Some(format!("d{}", i % 5)),
                final_fare: Some(base.estimated_fare),
                ..base.clone()
            }
        };
        out.push(RideEvent {
            event_id: format!("e{i}-1"),
            timestamp: ridectl::time::format_millis(start_ms + i as i64 * 1000 + 500),
            ..end
        });
    }
    out
}

/// Produces `(key, payload)` records to `topic` and waits for every delivery.
pub async fn produce(l: &Loaded, topic: &str, records: &[(String, Vec<u8>)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer =
        ridectl::kafka::client_config(&l.config.kafka, ridectl::kafka::Role::Producer)
            .create()
            .unwrap();
    // Enqueue everything first (send_result does not wait), then await deliveries:
    // awaiting each send in turn would wait out linger.ms per record.
    let mut pending = Vec::with_capacity(records.len());
    for (k, v) in records {
        let mut record = FutureRecord::to(topic).key(k).payload(v);
        loop {
            match producer.send_result(record) {
                Ok(f) => break pending.push(f),
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "{e}"
                    );
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for f in pending {
        f.await
            .expect("producer dropped")
            .map_err(|(e, _)| e)
            .expect("delivery");
    }
}

/// Runs SQL in the test's database and returns the first column of the first row as
/// text (TabSeparated).
pub async fn scalar(l: &Loaded, sql: &str) -> String {
    let client =
        ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write);
    let mut cursor = client.query_raw(sql).fetch_bytes("TabSeparated").unwrap();
    let bytes = cursor.collect().await.unwrap();
    String::from_utf8_lossy(&bytes)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Counts the messages now in `topic` (sum of high − low watermarks).
pub fn topic_count(l: &Loaded, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer =
        ridectl::kafka::client_config(&l.config.kafka, ridectl::kafka::Role::Admin)
            .create()
            .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (lo, hi) = c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            hi - lo
        })
        .sum()
}
