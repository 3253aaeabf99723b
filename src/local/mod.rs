//! The local real stack, without Docker: Apache Kafka brokers in KRaft mode (JVM
//! processes from jars resolved by Maven) and the ClickHouse-compatible HTTP
//! endpoint in front of chDB (a Python process from the project's virtualenv).
//!
//! Everything binds 127.0.0.1. State (data, logs, pid files) lives under
//! `local.state_dir`; jars and the virtualenv under `local.cache_dir`, filled by
//! `scripts/setup.sh`. `down` stops exactly the processes `up` started.

mod chdb;
mod kafka;
pub mod process;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::Loaded;

pub use kafka::{KafkaCluster, SCRAM_MECHANISM, SaslSsl};

/// Where the local stack keeps things.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The project directory (scripts/ lives here).
    pub project: PathBuf,
    /// Data, logs and pid files.
    pub state: PathBuf,
    /// Jars and the Python virtualenv.
    pub cache: PathBuf,
}

impl Paths {
    /// Paths from a loaded configuration.
    pub fn from_config(l: &Loaded) -> Paths {
        Paths {
            project: l.project_dir(),
            state: l.state_dir(),
            cache: l.cache_dir(),
        }
    }

    /// Log file of a component.
    pub fn log(&self, name: &str) -> PathBuf {
        self.state.join("logs").join(format!("{name}.log"))
    }

    /// Pid file of a component.
    pub fn pid(&self, name: &str) -> PathBuf {
        self.state.join("pids").join(format!("{name}.pid"))
    }

    /// The Python interpreter of the project's virtualenv.
    pub fn python(&self) -> PathBuf {
        self.cache.join("venv/bin/python")
    }

    /// The Kafka jars.
    pub fn kafka_libs(&self) -> PathBuf {
        self.cache.join("kafka-libs")
    }

    /// The Spark Kafka connector jars (`scripts/spark/pom.xml`).
    pub fn spark_jars(&self) -> PathBuf {
        self.cache.join("spark-jars")
    }

    /// The pyspark package of the virtualenv (Spark's home: `bin/spark-submit`,
    /// `jars/`), when installed: `venv/lib/python3.*/site-packages/pyspark`.
    pub fn pyspark_home(&self) -> Option<PathBuf> {
        let lib = self.cache.join("venv/lib");
        let mut found: Vec<PathBuf> = std::fs::read_dir(lib)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/pyspark"))
            .filter(|p| p.join("bin/spark-submit").is_file())
            .collect();
        found.sort();
        found.pop()
    }

    /// The marker written into pid files: the state directory, which every process
    /// of this stack has on its command line.
    pub fn marker(&self) -> String {
        self.state.display().to_string()
    }
}

/// One component's status.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentStatus {
    /// Component name (`kafka-1`, `clickhouse`).
    pub name: String,
    /// Process id, when running.
    pub pid: Option<u32>,
    /// Address it serves.
    pub address: String,
    /// `up` (running and answering), `starting` (running, not answering), `down`.
    pub state: &'static str,
    /// Version or error detail.
    pub detail: String,
}

/// Starts Kafka (`brokers` of them) and the ClickHouse endpoint, returning once
/// both answer. Already-running components are left as they are.
pub async fn up(l: &Loaded, brokers: usize) -> anyhow::Result<Vec<ComponentStatus>> {
    let paths = Paths::from_config(l);
    let sasl_ssl = l.config.local.kafka_sasl_ssl.as_ref().map(|s| SaslSsl {
        cert: l.resolve(&s.cert),
        key: l.resolve(&s.key),
        users: s
            .users
            .iter()
            .map(|u| (u.name.clone(), u.password.clone()))
            .collect(),
    });
    let cluster = KafkaCluster::new(&paths, &l.config.local, brokers, sasl_ssl)?;
    cluster.start()?;
    let tls = l
        .config
        .local
        .clickhouse_tls
        .as_ref()
        .map(|t| (l.resolve(&t.cert), l.resolve(&t.key)));
    chdb::start(&paths, &l.config.local, tls)?;
    cluster.wait_ready(Duration::from_secs(90)).await?;
    chdb::wait_ready(&paths, &l.config, Duration::from_secs(90)).await?;
    Ok(status(l).await)
}

/// The status of every component of the stack.
pub async fn status(l: &Loaded) -> Vec<ComponentStatus> {
    let paths = Paths::from_config(l);
    let mut out = KafkaCluster::status(&paths, &l.config.local).await;
    out.push(chdb::status(&paths, &l.config).await);
    out
}

/// Stops every process of the stack; returns the names of those that were running.
pub fn down(l: &Loaded) -> anyhow::Result<Vec<String>> {
    let paths = Paths::from_config(l);
    let mut stopped = Vec::new();
    if process::stop(&paths.pid(chdb::NAME), Duration::from_secs(20))? {
        stopped.push(chdb::NAME.to_string());
    }
    stopped.extend(KafkaCluster::stop_all(&paths)?);
    Ok(stopped)
}
