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
    let mut l = loaded();
    let id = unique(tag);
    let t = &mut l.config.topics;
    for spec in [
        &mut t.ride_events,
        &mut t.driver_locations,
        &mut t.aggregated,
        &mut t.dead_letter,
        &mut t.late_events,
    ] {
        spec.name = format!("{}-{id}", spec.name);
    }
    l.config.clickhouse.database = format!("test_{}", id.replace('-', "_"));
    l.config.aggregation.group_id = format!("agg-{id}");
    l.config.ingest.group_id = format!("ingest-{id}");
    l
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

/// Writes `l`'s configuration to a YAML file that the CLI can read with --config
/// (secrets are written in clear: test stacks only).
pub fn write_config(l: &Loaded, dir: &Path) -> PathBuf {
    let mut value = serde_yaml::to_value(&l.config).unwrap();
    // Secret fields serialize masked; the local stack has no passwords.
    for (section, key) in [
        ("clickhouse", "password"),
        ("clickhouse", "readonly_password"),
        ("alerts", "pagerduty"),
    ] {
        if let Some(m) = value.get_mut(section).and_then(|s| s.as_mapping_mut()) {
            if key == "pagerduty" {
                if let Some(pd) = m.get_mut("pagerduty").and_then(|p| p.as_mapping_mut()) {
                    pd.insert("routing_key".into(), "".into());
                }
            } else {
                m.insert(key.into(), "".into());
            }
        }
    }
    if let Some(k) = value
        .get_mut("kafka")
        .and_then(|k| k.get_mut("security"))
        .and_then(|s| s.as_mapping_mut())
    {
        k.insert("sasl_password".into(), "".into());
    }
    // Paths relative to the project, wherever the file is written.
    if let Some(local) = value.get_mut("local").and_then(|s| s.as_mapping_mut()) {
        for key in ["state_dir", "cache_dir"] {
            let p = l.resolve(Path::new(
                local.get(key).and_then(|v| v.as_str()).unwrap_or("."),
            ));
            local.insert(key.into(), p.display().to_string().into());
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, serde_yaml::to_string(&value).unwrap()).unwrap();
    path
}
