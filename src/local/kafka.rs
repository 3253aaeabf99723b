//! Local Apache Kafka brokers in KRaft mode: every node is broker and controller,
//! with a static controller quorum, listening on 127.0.0.1.
//!
//! Ports of node `i` (0-based): clients `kafka_port + i`, controller
//! `kafka_port + 1000 + i`. With [`SaslSsl`], the client listener speaks SASL_SSL
//! (SCRAM-SHA-512 over TLS, PEM keystore) and a PLAINTEXT `INTERNAL` listener on
//! `kafka_port + 2000 + i` carries inter-broker traffic and `ridectl local`'s own
//! health checks; controllers stay PLAINTEXT. Everything binds 127.0.0.1.

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
use crate::units::Secret;

/// The only SASL mechanism of the local SASL_SSL listener.
pub const SCRAM_MECHANISM: &str = "SCRAM-SHA-512";

/// What was chosen when the cluster's storage was formatted.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ClusterMeta {
    cluster_id: String,
    brokers: usize,
    base_port: u16,
    /// The client listener is SASL_SSL (SCRAM users were added at format time).
    #[serde(default)]
    sasl_ssl: bool,
}

/// A SASL_SSL client listener: the brokers' TLS identity and SCRAM users.
#[derive(Clone, Debug)]
pub struct SaslSsl {
    /// PEM certificate (chain) of the brokers.
    pub cert: PathBuf,
    /// Unencrypted PKCS#8 PEM key of `cert`.
    pub key: PathBuf,
    /// SCRAM-SHA-512 users (name, password) created when storage is formatted.
    pub users: Vec<(String, Secret)>,
}

/// A local cluster of `brokers` combined broker/controller nodes.
#[derive(Debug)]
pub struct KafkaCluster {
    paths: Paths,
    brokers: usize,
    base_port: u16,
    heap: String,
    sasl_ssl: Option<SaslSsl>,
}

/// Port of node `i`'s (0-based) PLAINTEXT inter-broker listener when the client
/// listener is SASL_SSL.
fn internal_port(base: u16, i: usize) -> u16 {
    base + 2000 + i as u16
}

/// A random cluster id as Kafka makes them (16 bytes, URL-safe base64), never
/// starting with `-`: kafka-storage's argument parser would take it for an option
/// (1 fresh stack in 64 failed to format before; Kafka's `Uuid.randomUuid` avoids
/// it the same way).
fn new_cluster_id(mut random: impl FnMut() -> [u8; 16]) -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn node_name(i: usize) -> String {
    format!("kafka-{i}")
}

impl KafkaCluster {
    /// A cluster description; checks that the jars are present and that an existing
    /// state directory was formatted for the same number of brokers.
    ///
    /// `sasl_ssl` (paths already resolved) switches the client listener to SASL_SSL;
    /// a state directory formatted the other way is refused.
    pub fn new(
        paths: &Paths,
        local: &LocalConfig,
        brokers: usize,
        sasl_ssl: Option<SaslSsl>,
    ) -> anyhow::Result<Self> {
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
            sasl_ssl,
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
        if let Some(meta) = cluster.read_meta()?
            && meta.sasl_ssl != cluster.sasl_ssl.is_some()
        {
            let (was, now) = if meta.sasl_ssl {
                ("SASL_SSL", "PLAINTEXT")
            } else {
                ("PLAINTEXT", "SASL_SSL")
            };
            bail!(
                "the local Kafka state in {} was formatted with a {was} client listener, not {now} \
                     (SCRAM users are created at format time); run `ridectl local down --purge` \
                     to start over, or use another local.state_dir",
                paths.state.display()
            );
        }
        if let Some(s) = &cluster.sasl_ssl {
            for f in [&s.cert, &s.key] {
                if !f.is_file() {
                    bail!(
                        "local.kafka_sasl_ssl: {} does not exist (a PEM file is needed)",
                        f.display()
                    );
                }
            }
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
        let controller = self.controller_port(node - 1);
        let mut p = String::new();
        let _ = writeln!(
            p,
            "# Written by `ridectl local up`; regenerated at every start."
        );
        let mut pairs: Vec<(&str, String)> = vec![
            ("process.roles", "broker,controller".into()),
            ("node.id", node.to_string()),
            ("controller.quorum.voters", voters.join(",")),
            ("controller.listener.names", "CONTROLLER".into()),
        ];
        if self.sasl_ssl.is_some() {
            let internal = internal_port(self.base_port, node - 1);
            pairs.extend([
                (
                    "listeners",
                    format!(
                        "SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal},\
                         CONTROLLER://127.0.0.1:{controller}"
                    ),
                ),
                (
                    "advertised.listeners",
                    format!("SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal}"),
                ),
                (
                    "listener.security.protocol.map",
                    "SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
                ),
                ("inter.broker.listener.name", "INTERNAL".into()),
                ("sasl.enabled.mechanisms", SCRAM_MECHANISM.into()),
                (
                    "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
                ),
                ("ssl.keystore.type", "PEM".into()),
                (
                    "ssl.keystore.location",
                    self.keystore(node).display().to_string(),
                ),
                ("ssl.client.auth", "none".into()),
            ]);
        } else {
            pairs.extend([
                (
                    "listeners",
                    format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"),
                ),
                (
                    "advertised.listeners",
                    format!("PLAINTEXT://127.0.0.1:{port}"),
                ),
                (
                    "listener.security.protocol.map",
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
                ),
                ("inter.broker.listener.name", "PLAINTEXT".into()),
            ]);
        }
        pairs.extend([
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
        ]);
        for (k, v) in pairs {
            let _ = writeln!(p, "{k}={v}");
        }
        p
    }

    /// The PEM keystore of a node: private key then certificate chain, one file
    /// (Kafka's `ssl.keystore.type=PEM` with `ssl.keystore.location`).
    fn keystore(&self, node: usize) -> PathBuf {
        self.paths.state.join(node_name(node)).join("keystore.pem")
    }

    /// Writes the node's keystore from the configured PEM files, readable by the
    /// owner only.
    fn write_keystore(&self, node: usize, s: &SaslSsl) -> anyhow::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let (key, cert) = (read(&s.key)?, read(&s.cert)?);
        if !key.contains("-----BEGIN PRIVATE KEY-----") {
            bail!(
                "{} is not an unencrypted PKCS#8 PEM key (BEGIN PRIVATE KEY), which Kafka's PEM \
                 keystore needs; convert it with `openssl pkcs8 -topk8 -nocrypt`",
                s.key.display()
            );
        }
        let path = self.keystore(node);
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        f.write_all(format!("{}\n{}\n", key.trim_end(), cert.trim_end()).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// `kafka-storage format` arguments that create the SCRAM users.
    fn scram_args(&self) -> Vec<String> {
        self.sasl_ssl
            .iter()
            .flat_map(|s| &s.users)
            .flat_map(|(name, password)| {
                [
                    "--add-scram".to_string(),
                    format!(
                        "{SCRAM_MECHANISM}=[name={name},password={}]",
                        password.expose()
                    ),
                ]
            })
            .collect()
    }

    /// `text` with every SCRAM password replaced by `****` (for error messages).
    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (_, p) in self.sasl_ssl.iter().flat_map(|s| &s.users) {
            if !p.is_empty() {
                out = out.replace(p.expose(), "****");
            }
        }
        out
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
            None => ClusterMeta {
                cluster_id: new_cluster_id(|| rand::rng().random::<[u8; 16]>()),
                brokers: self.brokers,
                base_port: self.base_port,
                sasl_ssl: self.sasl_ssl.is_some(),
            },
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
            if let Some(s) = &self.sasl_ssl {
                self.write_keystore(node, s)?;
            }
            if !dir.join("data/meta.properties").exists() {
                let out = self
                    .java(&[], "kafka.tools.StorageTool")
                    .args(["format", "--ignore-formatted", "-t", &meta.cluster_id, "-c"])
                    .arg(&props)
                    .args(self.scram_args())
                    .output()
                    .context("cannot run java (Java 17+ is required)")?;
                if !out.status.success() {
                    bail!(
                        "formatting Kafka storage for {name} failed:\n{}",
                        self.redact(&format!(
                            "{}{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        ))
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

    /// A PLAINTEXT client of this cluster for health checks: the client listeners,
    /// or the INTERNAL ones when the client listeners are SASL_SSL (the checks need
    /// no credentials, and do not depend on kafka.security matching).
    fn kafka_config(&self) -> KafkaConfig {
        health_config(self.base_port, self.brokers, self.sasl_ssl.is_some())
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
        let sasl_ssl = meta.as_ref().is_some_and(|m| m.sasl_ssl);
        let bootstrap: Vec<String> = (0..brokers)
            .map(|i| format!("127.0.0.1:{}", base + i as u16))
            .collect();
        let cfg = health_config(base, brokers, sasl_ssl);
        let listener = if sasl_ssl { "SASL_SSL" } else { "PLAINTEXT" };
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
                    (Some(_), true) => (
                        "up",
                        format!("broker {node} (KRaft, {listener}), answers metadata"),
                    ),
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

/// A PLAINTEXT client configuration for the health checks of a local cluster.
fn health_config(base: u16, brokers: usize, sasl_ssl: bool) -> KafkaConfig {
    let port = |i| {
        if sasl_ssl {
            internal_port(base, i)
        } else {
            base + i as u16
        }
    };
    KafkaConfig {
        bootstrap_servers: (0..brokers)
            .map(|i| format!("127.0.0.1:{}", port(i)))
            .collect::<Vec<_>>()
            .join(","),
        ..KafkaConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_never_start_with_a_dash() {
        // 0xf8 encodes as '-' first in URL-safe base64.
        let mut draws = vec![[0x11u8; 16], [0xf8u8; 16]];
        let id = new_cluster_id(|| draws.pop().unwrap_or([0; 16]));
        assert!(!id.starts_with('-'));
        assert_eq!(id.len(), 22);
        assert!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode([0xf8u8; 16])
                .starts_with('-')
        );
    }

    fn cluster(sasl_ssl: Option<SaslSsl>) -> KafkaCluster {
        KafkaCluster {
            paths: Paths {
                project: PathBuf::from("/p"),
                state: PathBuf::from("/p/state"),
                cache: PathBuf::from("/p/cache"),
            },
            brokers: 1,
            base_port: 29092,
            heap: "512M".into(),
            sasl_ssl,
        }
    }

    fn secured() -> SaslSsl {
        SaslSsl {
            cert: PathBuf::from("/tls/server.pem"),
            key: PathBuf::from("/tls/server.key"),
            users: vec![("ridectl".into(), Secret::new("s3cret-pw"))],
        }
    }

    #[test]
    fn plaintext_properties_are_unchanged() {
        let p = cluster(None).properties(1);
        assert!(p.contains("listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:30092\n"));
        assert!(p.contains("inter.broker.listener.name=PLAINTEXT\n"));
        assert!(!p.contains("sasl") && !p.contains("ssl."), "{p}");
        assert!(cluster(None).scram_args().is_empty());
    }

    #[test]
    fn sasl_ssl_properties_keep_internal_listeners_plaintext() {
        let c = cluster(Some(secured()));
        let p = c.properties(1);
        for line in [
            "listeners=SASL_SSL://127.0.0.1:29092,INTERNAL://127.0.0.1:31092,CONTROLLER://127.0.0.1:30092",
            "advertised.listeners=SASL_SSL://127.0.0.1:29092,INTERNAL://127.0.0.1:31092",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=INTERNAL",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "ssl.keystore.type=PEM",
            "ssl.keystore.location=/p/state/kafka-1/keystore.pem",
        ] {
            assert!(p.contains(&format!("{line}\n")), "{line} missing:\n{p}");
        }
        assert!(!p.contains("s3cret-pw"), "a password in server.properties");
        assert_eq!(
            c.scram_args(),
            [
                "--add-scram",
                "SCRAM-SHA-512=[name=ridectl,password=s3cret-pw]"
            ]
        );
        assert_eq!(c.redact("bad [password=s3cret-pw]"), "bad [password=****]");
        assert_eq!(
            health_config(29092, 1, true).bootstrap_servers,
            "127.0.0.1:31092"
        );
        assert_eq!(
            health_config(29092, 1, false).bootstrap_servers,
            "127.0.0.1:29092"
        );
    }
}
