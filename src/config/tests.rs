//! Unit tests of configuration loading: each error case reports its position.

use std::path::Path as FsPath;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "KAFKA_HOST" => Some("broker-1".into()),
        "CH_PASSWORD" => Some("s3cret".into()),
        "PARTS" => Some("48".into()),
        _ => None,
    }
}

fn load(text: &str, profile: Option<&str>) -> Result<Loaded, ConfigError> {
    load_str(text, FsPath::new("pipeline.yaml"), profile, &env)
}

fn problems(text: &str) -> Vec<Problem> {
    match load(text, None) {
        Ok(_) => panic!("expected problems"),
        Err(e) => e.problems,
    }
}

#[test]
fn empty_file_gives_defaults() {
    let l = load("", None).unwrap();
    assert_eq!(l.profile, "local");
    assert_eq!(l.config.topics.ride_events.partitions, 12);
    assert_eq!(l.config.aggregation.window.get().as_secs(), 300);
}

#[test]
fn the_shipped_pipeline_yaml_is_valid_in_every_profile() {
    let path = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("pipeline.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let prod_env = |name: &str| match name {
        "KAFKA_BOOTSTRAP_SERVERS" => Some("k1:9092,k2:9092".to_string()),
        "KAFKA_USERNAME" => Some("ridectl".to_string()),
        "KAFKA_PASSWORD" | "CLICKHOUSE_PASSWORD" | "CLICKHOUSE_READONLY_PASSWORD" => {
            Some("x".to_string())
        }
        "CLICKHOUSE_URL" => Some("https://ch.example:8443".to_string()),
        _ => None,
    };
    let local = load_str(&text, &path, Some("local"), &prod_env).unwrap();
    assert!(
        local
            .config
            .topics
            .resolved()
            .iter()
            .all(|t| t.replication_factor == 1)
    );
    let prod = load_str(&text, &path, Some("prod"), &prod_env).unwrap();
    for t in prod.config.topics.resolved() {
        assert_eq!(t.replication_factor, 3, "{}", t.name);
        assert_eq!(
            t.config.get("min.insync.replicas").map(String::as_str),
            Some("2")
        );
    }
    assert_eq!(
        prod.config.kafka.security.protocol,
        SecurityProtocol::SaslSsl
    );
}

#[test]
fn three_problems_in_one_run_with_lines() {
    let text = "\
kafka:
  bootstrap_servers: ${KAFKA_HOST}:9092
  colour: blue
topics:
  ride_events:
    name: ride-events
    partitions: twelve
clickhouse:
  password: ${UNSET_SECRET}
";
    let ps = problems(text);
    assert_eq!(ps.len(), 3, "{ps:#?}");
    assert_eq!(ps[0].path, "kafka.colour");
    assert_eq!(ps[0].pos, Some((3, 3)));
    assert!(
        ps[0].message.contains("unknown field `colour`"),
        "{}",
        ps[0].message
    );
    assert_eq!(ps[1].path, "topics.ride_events.partitions");
    assert_eq!(ps[1].pos, Some((7, 17)));
    assert!(ps[1].message.contains("invalid type"), "{}", ps[1].message);
    assert_eq!(ps[2].path, "clickhouse.password");
    assert_eq!(ps[2].pos, Some((9, 13)));
    assert!(ps[2].message.contains("UNSET_SECRET is not set"));
}

#[test]
fn display_names_file_line_and_column() {
    let err = load("kafka:\n  nope: 1\n", None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("pipeline.yaml:2:3: kafka.nope: unknown field `nope`"),
        "{text}"
    );
}

#[test]
fn unknown_top_level_section() {
    let ps = problems("kafak:\n  bootstrap_servers: x\n");
    assert_eq!(ps[0].path, "kafak");
    assert_eq!(ps[0].pos, Some((1, 1)));
}

#[test]
fn interpolation_with_defaults_and_types() {
    let l = load(
        "kafka:\n  bootstrap_servers: ${KAFKA_HOST}:9092\ntopics:\n  ride_events: {name: r, partitions: '${PARTS}'}\nclickhouse:\n  password: ${CH_PASSWORD}\n  database: ${DB:-analytics}\n",
        None,
    )
    .unwrap();
    assert_eq!(l.config.kafka.bootstrap_servers, "broker-1:9092");
    assert_eq!(l.config.topics.ride_events.partitions, 48);
    assert_eq!(l.config.clickhouse.password.expose(), "s3cret");
    assert_eq!(l.config.clickhouse.database, "analytics");
}

#[test]
fn profiles_merge_and_errors_point_into_the_profile() {
    let text = "\
topics:
  defaults: {replication_factor: 1}
profiles:
  local: {}
  prod:
    topics:
      defaults:
        replication_factor: three
";
    let l = load(text, Some("local")).unwrap();
    assert_eq!(l.config.topics.defaults.replication_factor, 1);
    let err = load(text, Some("prod")).unwrap_err();
    assert_eq!(err.problems[0].path, "topics.defaults.replication_factor");
    assert_eq!(err.problems[0].pos, Some((8, 29)));
    let err = load(text, Some("staging")).unwrap_err();
    assert!(
        err.problems[0]
            .message
            .contains("profile \"staging\" is not defined (defined: local, prod)")
    );
}

#[test]
fn semantic_checks() {
    let text = "\
aggregation:
  window: 5m
  slide: 7m
topics:
  ride_events: {name: 'bad name!', partitions: 0}
generator:
  lifecycle:
    driver_cancel: 1.5
";
    let ps = problems(text);
    let paths: Vec<&str> = ps.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"aggregation.slide"), "{paths:?}");
    assert!(paths.contains(&"topics.ride_events.name"), "{paths:?}");
    assert!(
        paths.contains(&"topics.ride_events.partitions"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"generator.lifecycle.driver_cancel"),
        "{paths:?}"
    );
    let slide = ps.iter().find(|p| p.path == "aggregation.slide").unwrap();
    assert_eq!(slide.pos, Some((3, 10)));
}

#[test]
fn sasl_requires_credentials() {
    let ps = problems("kafka:\n  security: {protocol: SASL_SSL}\n");
    let paths: Vec<&str> = ps.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"kafka.security.sasl_username"));
    assert!(paths.contains(&"kafka.security.sasl_password"));
}

#[test]
fn bad_yaml_syntax_has_a_position() {
    let ps = problems("kafka:\n  bootstrap_servers: [unclosed\n");
    assert!(ps[0].message.starts_with("not valid YAML"));
    assert!(ps[0].pos.is_some());
}

#[test]
fn environment_overrides_win() {
    let env =
        |name: &str| (name == "RIDECTL_CLICKHOUSE_URL").then(|| "https://ch:8443".to_string());
    let l = load_str(
        "clickhouse: {url: 'http://x:8123'}\n",
        FsPath::new("p.yaml"),
        None,
        &env,
    )
    .unwrap();
    assert_eq!(l.config.clickhouse.url, "https://ch:8443");
}

#[test]
fn secrets_are_masked_when_shown() {
    let l = load("clickhouse:\n  password: ${CH_PASSWORD}\n", None).unwrap();
    let shown = serde_yaml::to_string(&l.config).unwrap();
    assert!(!shown.contains("s3cret"));
    assert!(shown.contains("password: '****'"), "{shown}");
}

#[test]
fn alert_rules_are_whole_minutes_and_uniquely_named() {
    let text = "\
alerts:
  rules:
    - {name: cancel, threshold: 0.3, for: 90s}
    - {name: cancel, threshold: 0.5, for: 10m}
";
    let ps = problems(text);
    let msgs: Vec<String> = ps
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("alerts.rules[0].for: must be a whole number of minutes")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("alerts.rules[1].name: rule \"cancel\" is defined twice")),
        "{msgs:?}"
    );
}

#[test]
fn credentials_in_the_clickhouse_url_are_refused_without_echoing_them() {
    let ps = problems("clickhouse: {url: 'https://u:hunter2@ch:8443'}\n");
    let p = ps.iter().find(|p| p.path == "clickhouse.url").unwrap();
    assert!(p.message.contains("must not contain credentials"), "{ps:?}");
    assert!(ps.iter().all(|p| !p.message.contains("hunter2")), "{ps:?}");
}
