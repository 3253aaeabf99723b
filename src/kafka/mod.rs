//! Kafka clients built from `pipeline.yaml`, and topic provisioning ([`topics`]).

pub mod dlq;
pub mod read;
pub mod topics;

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::{KafkaConfig, Props};
use crate::exit::{AuthFailed, Unavailable};
use rdkafka::types::RDKafkaErrorCode;

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
/// broker answers within `timeout`, and with [`AuthFailed`] (exit 77) as soon as a
/// broker refuses the SASL credentials or the TLS handshake fails: librdkafka
/// retries those forever, so the wait is cut into short metadata requests and the
/// error events queued in between are checked.
pub fn cluster_info(k: &KafkaConfig, timeout: Duration) -> anyhow::Result<ClusterInfo> {
    let consumer: BaseConsumer<Preflight> = client_config(k, Role::Admin)
        .create_with_context(Preflight::default())
        .context("cannot create a Kafka client (check kafka.* in pipeline.yaml)")?;
    let deadline = Instant::now() + timeout;
    let md = loop {
        let step = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500));
        let err = match consumer.fetch_metadata(None, step) {
            Ok(md) => break md,
            Err(e) => e,
        };
        // Error events (authentication, TLS) are served by polling the client.
        let mut codes = vec![err.rdkafka_error_code()];
        while let Some(Err(e)) = consumer.poll(Duration::ZERO) {
            codes.push(e.rdkafka_error_code());
        }
        codes.extend(consumer.context().errors().into_iter().map(Some));
        if let Some(failed) = codes
            .into_iter()
            .flatten()
            .find_map(|c| security_failure(k, c))
        {
            return Err(failed.into());
        }
        if Instant::now() >= deadline {
            return Err(Unavailable(format!(
                "Kafka at {} did not answer a metadata request within {timeout:?}: {err}; \
                 is it running? (`ridectl local up` starts a local broker)",
                k.bootstrap_servers
            ))
            .into());
        }
    };
    Ok(ClusterInfo {
        brokers: md
            .brokers()
            .iter()
            .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
            .collect(),
        topics: md.topics().len(),
    })
}

/// The context of [`cluster_info`]'s client: remembers the error codes librdkafka
/// reports and keeps its messages at debug level (the caller reports one clear
/// error instead of librdkafka's retries).
#[derive(Default)]
struct Preflight {
    errors: std::sync::Mutex<Vec<RDKafkaErrorCode>>,
}

impl Preflight {
    /// The error codes reported so far (drained).
    fn errors(&self) -> Vec<RDKafkaErrorCode> {
        self.errors
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

impl ClientContext for Preflight {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!("librdkafka: {fac} {message}");
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!("librdkafka: {error}: {reason}");
        if let (Some(code), Ok(mut errors)) = (error.rdkafka_error_code(), self.errors.lock()) {
            errors.push(code);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Preflight {}

/// The [`AuthFailed`] error for an authentication or TLS error code, naming the
/// user, mechanism and settings to check (never the password).
pub fn security_failure(k: &KafkaConfig, code: RDKafkaErrorCode) -> Option<AuthFailed> {
    let s = &k.security;
    let at = &k.bootstrap_servers;
    match code {
        RDKafkaErrorCode::Authentication if s.protocol.uses_sasl() => Some(AuthFailed(format!(
            "Kafka at {at} refused SASL authentication of user {:?} with {}: check \
             kafka.security.sasl_username / sasl_password (pipeline.yaml reads them from the \
             environment, e.g. KAFKA_USERNAME / KAFKA_PASSWORD) and sasl_mechanism",
            s.sasl_username, s.sasl_mechanism
        ))),
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL if s.protocol.uses_tls() => {
            Some(AuthFailed(format!(
                "the TLS handshake with Kafka at {at} failed: check kafka.security.ssl_ca_location \
                 ({}) and that the broker certificate names the host you connect to",
                s.ssl_ca_location
                    .as_ref()
                    .map_or("not set: the system CAs".to_string(), |p| p
                        .display()
                        .to_string())
            )))
        }
        _ => None,
    }
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
