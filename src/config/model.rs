//! The typed model of `pipeline.yaml`.
//!
//! Every struct denies unknown keys and gives every optional key a default, so a
//! minimal file works and a typo is an error, never silently ignored. Ranges and
//! cross-references are checked in [`super::validate`], in one place.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::units::{HumanDuration, Rate, Secret};

/// The whole pipeline configuration, after the profile is merged and `${VAR}`s are
/// expanded.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Kafka connection and client settings.
    pub kafka: KafkaConfig,
    /// The topics ridectl provisions and uses.
    pub topics: TopicsConfig,
    /// ClickHouse connection.
    pub clickhouse: ClickHouseConfig,
    /// Synthetic event generator defaults.
    pub generator: GeneratorConfig,
    /// The windowed aggregation worker.
    pub aggregation: AggregationConfig,
    /// The raw-event ingest worker.
    pub ingest: IngestConfig,
    /// Alert rules and notification targets.
    pub alerts: AlertsConfig,
    /// The local development stack (`ridectl local`).
    pub local: LocalConfig,
}

/// A scalar Kafka/ClickHouse property value: written in YAML as a string, number or
/// boolean, always handed to clients as a string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PropValue(pub String);

impl<'de> Deserialize<'de> for PropValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            I(i64),
            F(f64),
            S(String),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("invalid type: expected a string, number or boolean")
        })?;
        Ok(PropValue(match raw {
            Raw::B(b) => b.to_string(),
            Raw::I(i) => i.to_string(),
            Raw::F(f) => f.to_string(),
            Raw::S(s) => s,
        }))
    }
}

/// A map of client or topic properties (`linger.ms: 50`).
pub type Props = BTreeMap<String, PropValue>;

/// Kafka connection and client settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// librdkafka properties applied to every client.
    pub client: Props,
    /// librdkafka properties applied to producers (after `client`).
    pub producer: Props,
    /// librdkafka properties applied to consumers (after `client`).
    pub consumer: Props,
    /// Transport security and authentication.
    pub security: KafkaSecurity,
    /// How long a command waits for the cluster to answer before it gives up.
    pub connect_timeout: HumanDuration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        let producer = [
            ("linger.ms", "50"),
            ("batch.num.messages", "1000"),
            ("compression.type", "lz4"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
        ];
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            client: Props::new(),
            producer: producer
                .iter()
                .map(|(k, v)| (k.to_string(), PropValue(v.to_string())))
                .collect(),
            consumer: Props::new(),
            security: KafkaSecurity::default(),
            connect_timeout: HumanDuration::from_secs(10),
        }
    }
}

/// Kafka `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    Plaintext,
    /// TLS without SASL.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS (production).
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// True when SASL credentials are used.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// True when TLS is used.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// Kafka transport security and authentication.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub protocol: SecurityProtocol,
    /// SASL mechanism (`SCRAM-SHA-512`, `SCRAM-SHA-256`, `PLAIN`).
    pub sasl_mechanism: String,
    /// SASL user name.
    pub sasl_username: String,
    /// SASL password (from the environment: `${KAFKA_PASSWORD}`).
    pub sasl_password: Secret,
    /// PEM file of the CA that signed the brokers' certificates.
    pub ssl_ca_location: Option<PathBuf>,
    /// Verify that the broker certificate matches its host name.
    pub ssl_endpoint_identification: bool,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        KafkaSecurity {
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            ssl_ca_location: None,
            ssl_endpoint_identification: true,
        }
    }
}

/// The topics ridectl provisions, by role.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Defaults applied to every topic below.
    pub defaults: TopicDefaults,
    /// Raw ride lifecycle events, keyed by ride_id.
    pub ride_events: TopicSpec,
    /// Driver GPS updates, keyed by driver_id (compacted).
    pub driver_locations: TopicSpec,
    /// Windowed per-city metrics, keyed by city.
    pub aggregated: TopicSpec,
    /// Malformed events with the reason, from every consumer.
    pub dead_letter: TopicSpec,
    /// Valid events that arrived after their windows were final.
    pub late_events: TopicSpec,
}

fn props(pairs: &[(&str, &str)]) -> Props {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), PropValue(v.to_string())))
        .collect()
}

impl Default for TopicsConfig {
    fn default() -> Self {
        let topic = |name: &str, partitions: i32, config: &[(&str, &str)]| TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: None,
            config: props(config),
        };
        TopicsConfig {
            defaults: TopicDefaults::default(),
            ride_events: topic(
                "ride-events",
                12,
                &[("retention.ms", "604800000"), ("compression.type", "lz4")],
            ),
            driver_locations: topic(
                "driver-locations",
                24,
                &[
                    ("retention.ms", "86400000"),
                    ("cleanup.policy", "compact,delete"),
                ],
            ),
            aggregated: topic("analytics-aggregated", 6, &[]),
            dead_letter: topic("ride-events-dlq", 3, &[("retention.ms", "1209600000")]),
            late_events: topic("ride-events-late", 3, &[("retention.ms", "604800000")]),
        }
    }
}

impl TopicsConfig {
    /// Every topic with its role name, defaults applied.
    pub fn resolved(&self) -> Vec<ResolvedTopic> {
        [
            ("ride_events", &self.ride_events),
            ("driver_locations", &self.driver_locations),
            ("aggregated", &self.aggregated),
            ("dead_letter", &self.dead_letter),
            ("late_events", &self.late_events),
        ]
        .into_iter()
        .map(|(role, spec)| {
            let mut config = self.defaults.config.clone();
            config.extend(spec.config.clone());
            ResolvedTopic {
                role,
                name: spec.name.clone(),
                partitions: spec.partitions,
                replication_factor: spec
                    .replication_factor
                    .unwrap_or(self.defaults.replication_factor),
                config: config.into_iter().map(|(k, v)| (k, v.0)).collect(),
            }
        })
        .collect()
    }
}

/// Settings shared by every topic.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicDefaults {
    /// Replicas per partition (1 locally, 3 in production).
    pub replication_factor: i32,
    /// Topic configs applied to every topic (e.g. `min.insync.replicas`).
    pub config: Props,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            replication_factor: 1,
            config: Props::new(),
        }
    }
}

/// One topic as written in `pipeline.yaml`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// The topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition; `topics.defaults.replication_factor` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// Topic-level configs (`retention.ms`, `cleanup.policy`, ...).
    #[serde(default)]
    pub config: Props,
}

/// A topic with the defaults applied: what `topics create` provisions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedTopic {
    /// Role in the pipeline (`ride_events`, `dead_letter`, ...).
    pub role: &'static str,
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i32,
    /// Topic-level configs.
    pub config: BTreeMap<String, String>,
}

/// ClickHouse connection.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP(S) URL of a server, cluster load balancer or the local endpoint.
    pub url: String,
    /// User for writers (ingest, aggregate, schema).
    pub user: String,
    /// Password of `user`.
    pub password: Secret,
    /// Database holding the pipeline's tables.
    pub database: String,
    /// Compress request and response bodies with LZ4.
    pub compression: bool,
    /// Read-only user for `ridectl query`, alerts and Grafana (empty: use `user`).
    pub readonly_user: String,
    /// Password of `readonly_user`.
    pub readonly_password: Secret,
    /// Per-request timeout.
    pub request_timeout: HumanDuration,
    /// PEM file of the CA that signed the server's certificate, for `https://` URLs
    /// whose certificate the system trust store does not cover (self-signed CAs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_location: Option<PathBuf>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: Secret::default(),
            database: "ridectl".into(),
            compression: true,
            readonly_user: String::new(),
            readonly_password: Secret::default(),
            request_timeout: HumanDuration::from_secs(30),
            ca_location: None,
        }
    }
}

/// One simulated city.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CityConfig {
    /// City name as it appears in events (lower case).
    pub name: String,
    /// Relative share of ride requests.
    pub weight: f64,
    /// Bounding box `[min_lat, min_lng, max_lat, max_lng]`.
    pub bbox: [f64; 4],
    /// Fare: base amount.
    pub base_fare: f64,
    /// Fare: amount per kilometre.
    pub per_km: f64,
    /// Distinct riders in the city's pool.
    pub riders: u32,
    /// Distinct drivers in the city's pool (each sends GPS updates while online).
    pub drivers: u32,
}

/// Ride lifecycle probabilities and delays.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// Probability that the rider cancels before a driver accepts.
    pub rider_cancel_before_accept: f64,
    /// Probability that the rider cancels after acceptance, before pickup.
    pub rider_cancel_after_accept: f64,
    /// Probability that the driver cancels after acceptance, before pickup.
    pub driver_cancel: f64,
    /// Delay from request to acceptance: `[min, max]`.
    pub accept_delay: [HumanDuration; 2],
    /// Delay from acceptance to pickup (trip start): `[min, max]`.
    pub pickup_delay: [HumanDuration; 2],
    /// Average speed used to turn trip distance into duration, km/h.
    pub avg_speed_kmh: f64,
    /// Delay from request (or acceptance) to a cancellation: `[min, max]`.
    pub cancel_delay: [HumanDuration; 2],
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            rider_cancel_before_accept: 0.06,
            rider_cancel_after_accept: 0.04,
            driver_cancel: 0.03,
            accept_delay: [HumanDuration::from_secs(3), HumanDuration::from_secs(60)],
            pickup_delay: [HumanDuration::from_secs(60), HumanDuration::from_secs(420)],
            avg_speed_kmh: 28.0,
            cancel_delay: [HumanDuration::from_secs(5), HumanDuration::from_secs(180)],
        }
    }
}

/// Synthetic event generator defaults (`ridectl generate`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Ride events per unit of time (`50000/min`). Also the simulated clock's pace
    /// with `--rate max`.
    pub rate: Rate,
    /// Seed of the random generator (`null`: random).
    pub seed: Option<u64>,
    /// How often each online driver sends a GPS update.
    pub driver_location_interval: HumanDuration,
    /// Produce driver location updates at all.
    pub driver_locations: bool,
    /// Cities with their weights, areas, fares and id pools.
    pub cities: Vec<CityConfig>,
    /// Ride lifecycle probabilities and delays.
    pub lifecycle: LifecycleConfig,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        let city = |name: &str, weight, bbox, base_fare, per_km, riders, drivers| CityConfig {
            name: name.into(),
            weight,
            bbox,
            base_fare,
            per_km,
            riders,
            drivers,
        };
        GeneratorConfig {
            rate: Rate::PerSecond(50_000.0 / 60.0),
            seed: None,
            driver_location_interval: HumanDuration::from_secs(5),
            driver_locations: true,
            cities: vec![
                city(
                    "berlin",
                    0.22,
                    [52.40, 13.20, 52.62, 13.60],
                    3.9,
                    1.55,
                    60_000,
                    600,
                ),
                city(
                    "vienna",
                    0.16,
                    [48.13, 16.25, 48.30, 16.50],
                    3.8,
                    1.45,
                    40_000,
                    400,
                ),
                city(
                    "prague",
                    0.14,
                    [49.98, 14.30, 50.15, 14.60],
                    2.9,
                    1.10,
                    35_000,
                    350,
                ),
                city(
                    "warsaw",
                    0.14,
                    [52.15, 20.90, 52.33, 21.15],
                    2.6,
                    0.95,
                    35_000,
                    350,
                ),
                city(
                    "budapest",
                    0.12,
                    [47.42, 18.95, 47.58, 19.20],
                    2.5,
                    0.95,
                    30_000,
                    300,
                ),
                city(
                    "munich",
                    0.10,
                    [48.06, 11.45, 48.22, 11.70],
                    4.2,
                    1.70,
                    25_000,
                    250,
                ),
                city(
                    "krakow",
                    0.07,
                    [49.99, 19.85, 50.11, 20.08],
                    2.2,
                    0.85,
                    15_000,
                    150,
                ),
                city(
                    "bratislava",
                    0.05,
                    [48.10, 17.05, 48.20, 17.20],
                    2.5,
                    0.90,
                    10_000,
                    100,
                ),
            ],
            lifecycle: LifecycleConfig::default(),
        }
    }
}

/// The windowed aggregation worker (`ridectl aggregate`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregationConfig {
    /// Kafka consumer group.
    pub group_id: String,
    /// Window length.
    pub window: HumanDuration,
    /// Slide between window starts (equal to `window`: tumbling windows).
    pub slide: HumanDuration,
    /// Allowed lateness: watermark = highest event time − this.
    pub watermark: HumanDuration,
    /// How often changed windows are emitted.
    pub trigger_interval: HumanDuration,
    /// Events more than this far ahead of the wall clock are rejected (dead letter).
    pub max_clock_skew: HumanDuration,
    /// A partition with no new events for this long stops holding the watermark back.
    pub idle_partition_timeout: HumanDuration,
    /// ClickHouse table of window rows.
    pub output_table: String,
    /// Where the local engine's Spark checkpoints live (`--engine spark`).
    pub spark_checkpoint_dir: PathBuf,
    /// Approximate-distinct relative standard deviation used by Spark.
    pub spark_rsd: f64,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            group_id: "ridectl-aggregate".into(),
            window: HumanDuration::from_secs(300),
            slide: HumanDuration::from_secs(60),
            watermark: HumanDuration::from_secs(30),
            trigger_interval: HumanDuration::from_secs(1),
            max_clock_skew: HumanDuration::from_secs(300),
            idle_partition_timeout: HumanDuration::from_secs(10),
            output_table: "city_window_metrics".into(),
            spark_checkpoint_dir: PathBuf::from(".ridectl/spark-checkpoints"),
            spark_rsd: 0.01,
        }
    }
}

/// The raw-event ingest worker (`ridectl ingest`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Kafka consumer group.
    pub group_id: String,
    /// A batch is written when it holds this many rows...
    pub batch_max_rows: u64,
    /// ...or when its first row is this old.
    pub batch_max_wait: HumanDuration,
    /// First retry delay after a failed insert (doubles up to `retry_max_backoff`).
    pub retry_initial_backoff: HumanDuration,
    /// Longest delay between retries.
    pub retry_max_backoff: HumanDuration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            group_id: "ridectl-ingest".into(),
            batch_max_rows: 100_000,
            batch_max_wait: HumanDuration::from_millis(500),
            retry_initial_backoff: HumanDuration::from_millis(200),
            retry_max_backoff: HumanDuration::from_secs(10),
        }
    }
}

/// Alert rules and the PagerDuty target.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The rules evaluated by `ridectl alerts` (and mirrored in Grafana).
    pub rules: Vec<AlertRule>,
    /// PagerDuty Events API v2 target.
    pub pagerduty: PagerDutyConfig,
    /// Where `alerts watch` remembers open incidents across restarts.
    pub state_file: PathBuf,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            rules: vec![AlertRule::default()],
            pagerduty: PagerDutyConfig::default(),
            state_file: PathBuf::from(".ridectl/alerts-state.json"),
        }
    }
}

/// One alert rule: a per-city rate above a threshold for a duration.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRule {
    /// Rule name, part of the PagerDuty dedup key.
    pub name: String,
    /// Threshold on the city's cancellation rate (0.30 = 30%).
    pub threshold: f64,
    /// How long the rate must stay above the threshold.
    #[serde(rename = "for")]
    pub for_duration: HumanDuration,
    /// Minutes with fewer requests than this are not evaluated (avoids noise).
    pub min_requests: u64,
    /// PagerDuty severity (`critical`, `error`, `warning`, `info`).
    pub severity: String,
}

impl Default for AlertRule {
    fn default() -> Self {
        AlertRule {
            name: "city-cancellation-rate".into(),
            threshold: 0.30,
            for_duration: HumanDuration::from_secs(300),
            min_requests: 5,
            severity: "critical".into(),
        }
    }
}

/// PagerDuty Events API v2 target.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerDutyConfig {
    /// Events API endpoint.
    pub url: String,
    /// Integration (routing) key, from the environment.
    pub routing_key: Secret,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        PagerDutyConfig {
            url: "https://events.pagerduty.com/v2/enqueue".into(),
            routing_key: Secret::default(),
        }
    }
}

/// The local development stack.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// State directory: data, logs, pid files (relative to the project root).
    pub state_dir: PathBuf,
    /// Cache directory: Kafka jars, Python virtualenv.
    pub cache_dir: PathBuf,
    /// First broker port (the next brokers use the following ports).
    pub kafka_port: u16,
    /// Port of the local ClickHouse-compatible HTTP endpoint.
    pub clickhouse_port: u16,
    /// JVM heap of each local broker.
    pub kafka_heap: String,
    /// Serve clients on a SASL_SSL listener (SCRAM-SHA-512 over TLS) instead of
    /// PLAINTEXT; absent: PLAINTEXT, as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_sasl_ssl: Option<LocalKafkaSaslSsl>,
    /// Serve the ClickHouse endpoint over HTTPS; absent: plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clickhouse_tls: Option<LocalTls>,
}

/// A TLS server identity: certificate chain and private key, both PEM files.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTls {
    /// PEM certificate (chain) of the server; must name 127.0.0.1 in its SANs.
    pub cert: PathBuf,
    /// Unencrypted PKCS#8 PEM private key of `cert`.
    pub key: PathBuf,
}

/// The local brokers' SASL_SSL client listener.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalKafkaSaslSsl {
    /// PEM certificate (chain) of the brokers; must name 127.0.0.1 in its SANs.
    pub cert: PathBuf,
    /// Unencrypted PKCS#8 PEM private key of `cert`.
    pub key: PathBuf,
    /// SCRAM-SHA-512 users created when the storage is formatted (first start).
    pub users: Vec<ScramUser>,
}

/// A SCRAM user of the local brokers.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScramUser {
    /// User name.
    pub name: String,
    /// Password (from the environment: `${KAFKA_PASSWORD}`).
    pub password: Secret,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            state_dir: PathBuf::from(".ridectl/state"),
            cache_dir: PathBuf::from(".ridectl/cache"),
            kafka_port: 9092,
            clickhouse_port: 8123,
            kafka_heap: "1G".into(),
            kafka_sasl_ssl: None,
            clickhouse_tls: None,
        }
    }
}
