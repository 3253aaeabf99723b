//! Kafka clients built from `pipeline.yaml`, and topic provisioning ([`topics`]).

pub mod dlq;
pub mod topics;

use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::{KafkaConfig, Props};
use crate::exit::Unavailable;

/// Which client a configuration is for: decides which property sections apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Admin client (topics).
    Admin,
    /// Producer (`kafka.producer` applies).
    Producer,
    /// Consumer (`kafka.consumer` applies).
    Consumer,
}

/// The librdkafka configuration for a client: bootstrap servers, security, then
/// `kafka.client`, then the role's own section (later wins).
pub fn client_config(k: &KafkaConfig, role: Role) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers);
    c.set("client.id", "ridectl");
    let s = &k.security;
    c.set("security.protocol", s.protocol.as_str());
    if s.protocol.uses_sasl() {
        c.set("sasl.mechanism", &s.sasl_mechanism);
        c.set("sasl.username", &s.sasl_username);
        c.set("sasl.password", s.sasl_password.expose());
    }
    if s.protocol.uses_tls() {
        if let Some(ca) = &s.ssl_ca_location {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        let verify = if s.ssl_endpoint_identification {
            "https"
        } else {
            "none"
        };
        c.set("ssl.endpoint.identification.algorithm", verify);
    }
    let apply = |c: &mut ClientConfig, props: &Props| {
        for (key, value) in props {
            c.set(key, &value.0);
        }
    };
    apply(&mut c, &k.client);
    match role {
        Role::Producer => apply(&mut c, &k.producer),
        Role::Consumer => apply(&mut c, &k.consumer),
        Role::Admin => {}
    }
    c
}

/// An admin client.
pub fn admin(k: &KafkaConfig) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    client_config(k, Role::Admin)
        .create()
        .context("cannot create the Kafka admin client (check kafka.* in pipeline.yaml)")
}

/// What a metadata request says about the cluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ClusterInfo {
    /// Broker ids and addresses.
    pub brokers: Vec<(i32, String)>,
    /// Number of topics.
    pub topics: usize,
}

/// Asks the cluster for its metadata, failing with [`Unavailable`] (exit 69) when no
/// broker answers within `timeout`, or with the broker's error (e.g. bad credentials).
pub fn cluster_info(k: &KafkaConfig, timeout: Duration) -> anyhow::Result<ClusterInfo> {
    let consumer: BaseConsumer = client_config(k, Role::Admin)
        .create()
        .context("cannot create a Kafka client (check kafka.* in pipeline.yaml)")?;
    let md = consumer.fetch_metadata(None, timeout).map_err(|e| {
        let hint = match e.rdkafka_error_code() {
            Some(rdkafka::types::RDKafkaErrorCode::Authentication) => {
                "authentication failed: check kafka.security (user, password, mechanism)"
            }
            _ => "is it running? (`ridectl local up` starts a local broker)",
        };
        Unavailable(format!(
            "Kafka at {} did not answer a metadata request within {timeout:?}: {e}; {hint}",
            k.bootstrap_servers
        ))
    })?;
    Ok(ClusterInfo {
        brokers: md
            .brokers()
            .iter()
            .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
            .collect(),
        topics: md.topics().len(),
    })
}

/// The group's committed offsets for `tpl`, retrying while the group coordinator
/// is still being elected or loading (normal on a fresh cluster), up to `timeout`.
pub fn committed_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: rdkafka::TopicPartitionList,
    timeout: Duration,
) -> anyhow::Result<rdkafka::TopicPartitionList> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match consumer.committed_offsets(tpl.clone(), timeout) {
            Ok(t) => return Ok(t),
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        Code::NotCoordinator
                            | Code::CoordinatorLoadInProgress
                            | Code::CoordinatorNotAvailable
                    )
                ) && std::time::Instant::now() < deadline =>
            {
                tracing::debug!("group coordinator not ready ({e}); retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e).context("read committed offsets"),
        }
    }
}
