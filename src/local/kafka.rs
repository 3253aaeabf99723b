//! Local Apache Kafka brokers in KRaft mode: every node is broker and controller,
//! with a static controller quorum, listening on 127.0.0.1.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::{ComponentStatus, Paths, process};
use crate::config::{KafkaConfig, LocalConfig};

/// What was chosen when the cluster's storage was formatted.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ClusterMeta {
    cluster_id: String,
    brokers: usize,
    base_port: u16,
}

/// A local cluster of `brokers` combined broker/controller nodes.
#[derive(Debug)]
pub struct KafkaCluster {
    paths: Paths,
    brokers: usize,
    base_port: u16,
    heap: String,
}

fn node_name(i: usize) -> String {
    format!("kafka-{i}")
}

impl KafkaCluster {
    /// A cluster description; checks that the jars are present and that an existing
    /// state directory was formatted for the same number of brokers.
    pub fn new(paths: &Paths, local: &LocalConfig, brokers: usize) -> anyhow::Result<Self> {
        if !(brokers == 1 || brokers == 3) {
            bail!("--brokers must be 1 or 3 (got {brokers})");
        }
        let libs = paths.kafka_libs();
        let has_kafka = std::fs::read_dir(&libs)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().starts_with("kafka_2.13-"))
            })
            .unwrap_or(false);
        if !has_kafka {
            bail!(
                "the Kafka jars are missing from {}; run scripts/setup.sh first",
                libs.display()
            );
        }
        let cluster = KafkaCluster {
            paths: paths.clone(),
            brokers,
            base_port: local.kafka_port,
            heap: local.kafka_heap.clone(),
        };
        if let Some(meta) = cluster.read_meta()?
            && (meta.brokers != brokers || meta.base_port != local.kafka_port)
        {
            bail!(
                "the local Kafka state in {} was formatted for {} broker(s) on port {}, not {brokers} on {}; \
                     run `ridectl local down --purge` to start over, or use another local.state_dir",
                paths.state.display(),
                meta.brokers,
                meta.base_port,
                local.kafka_port
            );
        }
        Ok(cluster)
    }

    fn meta_file(&self) -> PathBuf {
        self.paths.state.join("kafka-cluster.json")
    }

    fn read_meta(&self) -> anyhow::Result<Option<ClusterMeta>> {
        match std::fs::read_to_string(self.meta_file()) {
            Ok(text) => Ok(Some(
                serde_json::from_str(&text).context("kafka-cluster.json is corrupt")?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read kafka-cluster.json"),
        }
    }

    /// The bootstrap list of this cluster.
    pub fn bootstrap(&self) -> String {
        (0..self.brokers)
            .map(|i| format!("127.0.0.1:{}", self.base_port + i as u16))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// KRaft controller port of node `i` (0-based): broker port + 1000 + i.
    fn controller_port(&self, i: usize) -> u16 {
        self.base_port + 1000 + i as u16
    }

    fn properties(&self, node: usize) -> String {
        let n = self.brokers;
        let port = self.base_port + (node - 1) as u16;
        let voters: Vec<String> = (1..=n)
            .map(|i| format!("{i}@127.0.0.1:{}", self.controller_port(i - 1)))
            .collect();
        let dir = self.paths.state.join(node_name(node));
        let mut p = String::new();
        let _ = writeln!(
            p,
            "# Written by `ridectl local up`; regenerated at every start."
        );
        let pairs: Vec<(&str, String)> = vec![
            ("process.roles", "broker,controller".into()),
            ("node.id", node.to_string()),
            ("controller.quorum.voters", voters.join(",")),
            (
                "listeners",
                format!(
                    "PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{}",
                    self.controller_port(node - 1)
                ),
            ),
            (
                "advertised.listeners",
                format!("PLAINTEXT://127.0.0.1:{port}"),
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
            ),
            ("controller.listener.names", "CONTROLLER".into()),
            ("inter.broker.listener.name", "PLAINTEXT".into()),
            ("log.dirs", dir.join("data").display().to_string()),
            ("num.partitions", "1".into()),
            ("auto.create.topics.enable", "false".into()),
            ("offsets.topic.replication.factor", n.min(3).to_string()),
            ("offsets.topic.num.partitions", "12".into()),
            (
                "transaction.state.log.replication.factor",
                n.min(3).to_string(),
            ),
            ("transaction.state.log.min.isr", n.min(2).to_string()),
            (
                "share.coordinator.state.topic.replication.factor",
                n.min(3).to_string(),
            ),
            (
                "share.coordinator.state.topic.min.isr",
                n.min(2).to_string(),
            ),
            ("group.initial.rebalance.delay.ms", "0".into()),
            ("log.segment.bytes", "268435456".into()),
            ("num.network.threads", "2".into()),
            ("num.io.threads", "4".into()),
        ];
        for (k, v) in pairs {
            let _ = writeln!(p, "{k}={v}");
        }
        p
    }

    fn java(&self, jvm_opts: &[String], main: &str) -> Command {
        let mut cmd = Command::new("java");
        cmd.args(jvm_opts)
            .arg("-cp")
            .arg(format!("{}/*", self.paths.kafka_libs().display()))
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.paths
                    .project
                    .join("scripts/kafka/log4j2.properties")
                    .display()
            ))
            .arg("-Djava.awt.headless=true")
            .arg(main);
        cmd
    }

    /// Formats storage on first start and starts every node that is not running.
    pub fn start(&self) -> anyhow::Result<()> {
        let meta = match self.read_meta()? {
            Some(m) => m,
            None => {
                let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(rand::rng().random::<[u8; 16]>());
                ClusterMeta {
                    cluster_id: id,
                    brokers: self.brokers,
                    base_port: self.base_port,
                }
            }
        };
        for node in 1..=self.brokers {
            let name = node_name(node);
            if process::running(&self.paths.pid(&name)).is_some() {
                continue;
            }
            let dir = self.paths.state.join(&name);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let props = dir.join("server.properties");
            std::fs::write(&props, self.properties(node))
                .with_context(|| format!("cannot write {}", props.display()))?;
            if !dir.join("data/meta.properties").exists() {
                let out = self
                    .java(&[], "kafka.tools.StorageTool")
                    .args(["format", "--ignore-formatted", "-t", &meta.cluster_id, "-c"])
                    .arg(&props)
                    .output()
                    .context("cannot run java (Java 17+ is required)")?;
                if !out.status.success() {
                    bail!(
                        "formatting Kafka storage for {name} failed:\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            let jvm = [
                format!("-Xmx{}", self.heap),
                "-Xms256m".into(),
                "-XX:+UseG1GC".into(),
            ];
            let mut cmd = self.java(&jvm, "kafka.Kafka");
            cmd.arg(&props);
            process::spawn(
                cmd,
                &self.paths.log(&name),
                &self.paths.pid(&name),
                &self.paths.marker(),
            )?;
        }
        std::fs::write(self.meta_file(), serde_json::to_string_pretty(&meta)?)
            .context("cannot write kafka-cluster.json")?;
        Ok(())
    }

    fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.bootstrap(),
            ..KafkaConfig::default()
        }
    }

    /// Waits until every broker is listed in a metadata answer; fails with the tail
    /// of a broker's log if one exits or the time runs out.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let cfg = self.kafka_config();
        // A JVM can die at start-up on a loaded machine without writing a line; one
        // restart of the missing nodes before giving up.
        let mut restarted = false;
        loop {
            for node in 1..=self.brokers {
                let name = node_name(node);
                if process::running(&self.paths.pid(&name)).is_none() {
                    if !restarted {
                        restarted = true;
                        tracing::warn!(
                            "Kafka broker {name} exited during start-up; starting it once more"
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        self.start()?;
                        continue;
                    }
                    bail!(
                        "Kafka broker {name} exited during start-up; last lines of {}:\n{}",
                        self.paths.log(&name).display(),
                        process::tail(&self.paths.log(&name), 30)
                    );
                }
            }
            let info = tokio::task::spawn_blocking({
                let cfg = cfg.clone();
                move || crate::kafka::cluster_info(&cfg, Duration::from_secs(2))
            })
            .await?;
            if let Ok(info) = info
                && info.brokers.len() == self.brokers
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let name = node_name(1);
                bail!(
                    "Kafka did not answer a metadata request with all {} broker(s) within {timeout:?}; last lines of {}:\n{}",
                    self.brokers,
                    self.paths.log(&name).display(),
                    process::tail(&self.paths.log(&name), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Status of every node found in the state directory.
    pub async fn status(paths: &Paths, local: &LocalConfig) -> Vec<ComponentStatus> {
        let meta = std::fs::read_to_string(paths.state.join("kafka-cluster.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<ClusterMeta>(&t).ok());
        let brokers = meta.as_ref().map_or(1, |m| m.brokers);
        let base = meta.as_ref().map_or(local.kafka_port, |m| m.base_port);
        let bootstrap: Vec<String> = (0..brokers)
            .map(|i| format!("127.0.0.1:{}", base + i as u16))
            .collect();
        let cfg = KafkaConfig {
            bootstrap_servers: bootstrap.join(","),
            ..KafkaConfig::default()
        };
        let info = tokio::task::spawn_blocking(move || {
            crate::kafka::cluster_info(&cfg, Duration::from_secs(3))
        })
        .await
        .ok()
        .and_then(Result::ok);
        (1..=brokers)
            .map(|node| {
                let name = node_name(node);
                let pid = process::running(&paths.pid(&name));
                let address = bootstrap[node - 1].clone();
                let listed = info
                    .as_ref()
                    .is_some_and(|i| i.brokers.iter().any(|(id, _)| *id == node as i32));
                let (state, detail) = match (pid, listed) {
                    (Some(_), true) => ("up", format!("broker {node} (KRaft), answers metadata")),
                    (Some(_), false) => ("starting", "running, not in metadata yet".to_string()),
                    (None, _) => ("down", String::new()),
                };
                ComponentStatus {
                    name,
                    pid,
                    address,
                    state,
                    detail,
                }
            })
            .collect()
    }

    /// Stops every node found in the state directory.
    pub fn stop_all(paths: &Paths) -> anyhow::Result<Vec<String>> {
        let mut stopped = Vec::new();
        for node in 1..=3 {
            let name = node_name(node);
            if process::stop(&paths.pid(&name), Duration::from_secs(30))? {
                stopped.push(name);
            }
        }
        Ok(stopped)
    }
}
