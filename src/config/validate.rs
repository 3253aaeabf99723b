//! Range and cross-reference checks on a deserialized configuration, all in one
//! place. Each problem is `(dotted path, message)`.

use std::collections::HashSet;

use super::model::*;

type Problems = Vec<(String, String)>;

/// Checks every section; returns all problems found.
pub fn validate(c: &PipelineConfig) -> Problems {
    let mut out = Problems::new();
    kafka(&c.kafka, &mut out);
    topics(&c.topics, &mut out);
    clickhouse(&c.clickhouse, &mut out);
    generator(&c.generator, &mut out);
    aggregation(&c.aggregation, &mut out);
    if c.ingest.batch_max_rows == 0 {
        push(&mut out, "ingest.batch_max_rows", "must be at least 1");
    }
    if c.ingest.retry_initial_backoff.get() > c.ingest.retry_max_backoff.get() {
        push(
            &mut out,
            "ingest.retry_initial_backoff",
            "must not exceed ingest.retry_max_backoff",
        );
    }
    alerts(&c.alerts, &mut out);
    if c.local.kafka_port == 0 || c.local.clickhouse_port == 0 {
        push(&mut out, "local", "ports must be between 1 and 65535");
    }
    local_security(&c.local, &mut out);
    out
}

/// SCRAM credentials travel to `kafka-storage format --add-scram
/// 'SCRAM-SHA-512=[name=N,password=P]'`, whose syntax cannot quote these characters.
fn local_security(l: &LocalConfig, out: &mut Problems) {
    let Some(s) = &l.kafka_sasl_ssl else { return };
    if s.users.is_empty() {
        push(
            out,
            "local.kafka_sasl_ssl.users",
            "must list at least one SCRAM user",
        );
    }
    let unquotable = |v: &str| v.is_empty() || v.contains([',', '[', ']', '"', '=', ' ']);
    for (i, u) in s.users.iter().enumerate() {
        if unquotable(&u.name) {
            push(
                out,
                &format!("local.kafka_sasl_ssl.users[{i}].name"),
                "must be non-empty without , [ ] \" = or spaces",
            );
        }
        if unquotable(u.password.expose()) {
            push(
                out,
                &format!("local.kafka_sasl_ssl.users[{i}].password"),
                "must be non-empty without , [ ] \" = or spaces",
            );
        }
    }
}

fn push(out: &mut Problems, path: &str, msg: impl Into<String>) {
    out.push((path.to_string(), msg.into()));
}

fn kafka(k: &KafkaConfig, out: &mut Problems) {
    if k.bootstrap_servers.trim().is_empty() {
        push(
            out,
            "kafka.bootstrap_servers",
            "must list at least one host:port",
        );
    }
    for server in k
        .bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let port_ok = server
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            push(
                out,
                "kafka.bootstrap_servers",
                format!("{server:?} is not host:port"),
            );
        }
    }
    let s = &k.security;
    if s.protocol.uses_sasl() {
        const MECHS: [&str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];
        if !MECHS.contains(&s.sasl_mechanism.as_str()) {
            push(
                out,
                "kafka.security.sasl_mechanism",
                format!("must be one of {}", MECHS.join(", ")),
            );
        }
        if s.sasl_username.is_empty() {
            push(
                out,
                "kafka.security.sasl_username",
                "is required with a SASL protocol",
            );
        }
        if s.sasl_password.is_empty() {
            push(
                out,
                "kafka.security.sasl_password",
                "is required with a SASL protocol (e.g. ${KAFKA_PASSWORD})",
            );
        }
    }
    for (section, props) in [
        ("client", &k.client),
        ("producer", &k.producer),
        ("consumer", &k.consumer),
    ] {
        for key in props.keys() {
            if key.starts_with("sasl.") || key.starts_with("security.") {
                push(
                    out,
                    &format!("kafka.{section}.{key}"),
                    "set security in kafka.security, not as a client property",
                );
            }
        }
    }
}

fn topics(t: &TopicsConfig, out: &mut Problems) {
    if t.defaults.replication_factor < 1 {
        push(
            out,
            "topics.defaults.replication_factor",
            "must be at least 1",
        );
    }
    let mut names = HashSet::new();
    for topic in t.resolved() {
        let at = |field: &str| format!("topics.{}.{field}", topic.role);
        let name_ok = !topic.name.is_empty()
            && topic.name.len() <= 249
            && topic
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && topic.name != "."
            && topic.name != "..";
        if !name_ok {
            push(
                out,
                &at("name"),
                format!(
                    "{:?} is not a valid topic name (letters, digits, '.', '_', '-'; at most 249)",
                    topic.name
                ),
            );
        }
        if !names.insert(topic.name.clone()) {
            push(
                out,
                &at("name"),
                format!("topic {:?} is used for two roles", topic.name),
            );
        }
        if topic.partitions < 1 {
            push(out, &at("partitions"), "must be at least 1");
        }
        if topic.replication_factor < 1 {
            push(out, &at("replication_factor"), "must be at least 1");
        }
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn clickhouse(c: &ClickHouseConfig, out: &mut Problems) {
    if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
        push(
            out,
            "clickhouse.url",
            format!(
                "{:?} must start with http:// or https://",
                crate::clickhouse::display_url(&c.url)
            ),
        );
    }
    if crate::clickhouse::display_url(&c.url) != c.url {
        push(
            out,
            "clickhouse.url",
            "must not contain credentials (user:password@); use clickhouse.user and \
             clickhouse.password (from the environment)",
        );
    }
    if !is_identifier(&c.database) {
        push(
            out,
            "clickhouse.database",
            format!("{:?} is not a valid database name", c.database),
        );
    }
    if c.user.is_empty() {
        push(out, "clickhouse.user", "must not be empty");
    }
    if c.request_timeout.get().is_zero() {
        push(
            out,
            "clickhouse.request_timeout",
            "must be greater than zero",
        );
    }
}

fn probability(out: &mut Problems, path: &str, p: f64) {
    if !(0.0..=1.0).contains(&p) {
        push(
            out,
            path,
            format!("{p} is not a probability between 0 and 1"),
        );
    }
}

fn range(out: &mut Problems, path: &str, r: &[crate::units::HumanDuration; 2]) {
    if r[0] > r[1] {
        push(
            out,
            path,
            format!("[{}, {}]: the minimum exceeds the maximum", r[0], r[1]),
        );
    }
}

fn generator(g: &GeneratorConfig, out: &mut Problems) {
    if g.cities.is_empty() {
        push(out, "generator.cities", "must list at least one city");
    }
    let mut seen = HashSet::new();
    for (i, c) in g.cities.iter().enumerate() {
        let at = |f: &str| format!("generator.cities[{i}].{f}");
        if c.name.is_empty() || !seen.insert(c.name.clone()) {
            push(
                out,
                &at("name"),
                format!("{:?} is empty or used twice", c.name),
            );
        }
        if !(c.weight > 0.0 && c.weight.is_finite()) {
            push(out, &at("weight"), "must be greater than zero");
        }
        let [lat0, lng0, lat1, lng1] = c.bbox;
        let lat_ok =
            (-90.0..=90.0).contains(&lat0) && (-90.0..=90.0).contains(&lat1) && lat0 < lat1;
        let lng_ok =
            (-180.0..=180.0).contains(&lng0) && (-180.0..=180.0).contains(&lng1) && lng0 < lng1;
        if !lat_ok || !lng_ok {
            push(
                out,
                &at("bbox"),
                "must be [min_lat, min_lng, max_lat, max_lng] with min < max",
            );
        }
        if c.base_fare < 0.0 || c.per_km < 0.0 {
            push(out, &at("base_fare"), "fares must not be negative");
        }
        if c.riders == 0 || c.drivers == 0 {
            push(out, &at("riders"), "riders and drivers must be at least 1");
        }
    }
    let l = &g.lifecycle;
    probability(
        out,
        "generator.lifecycle.rider_cancel_before_accept",
        l.rider_cancel_before_accept,
    );
    probability(
        out,
        "generator.lifecycle.rider_cancel_after_accept",
        l.rider_cancel_after_accept,
    );
    probability(out, "generator.lifecycle.driver_cancel", l.driver_cancel);
    if l.rider_cancel_before_accept + l.rider_cancel_after_accept + l.driver_cancel > 1.0 {
        push(
            out,
            "generator.lifecycle",
            "the cancellation probabilities add up to more than 1",
        );
    }
    range(out, "generator.lifecycle.accept_delay", &l.accept_delay);
    range(out, "generator.lifecycle.pickup_delay", &l.pickup_delay);
    range(out, "generator.lifecycle.cancel_delay", &l.cancel_delay);
    if l.avg_speed_kmh <= 0.0 {
        push(
            out,
            "generator.lifecycle.avg_speed_kmh",
            "must be greater than zero",
        );
    }
    if g.driver_location_interval.get().is_zero() {
        push(
            out,
            "generator.driver_location_interval",
            "must be greater than zero",
        );
    }
}

fn aggregation(a: &AggregationConfig, out: &mut Problems) {
    let (w, s) = (a.window.get(), a.slide.get());
    if w.is_zero() {
        push(out, "aggregation.window", "must be greater than zero");
    }
    if s.is_zero() || s > w {
        push(
            out,
            "aggregation.slide",
            format!(
                "must be greater than zero and at most the window ({})",
                a.window
            ),
        );
    } else if !w.is_zero() && w.as_millis() % s.as_millis() != 0 {
        push(
            out,
            "aggregation.slide",
            format!(
                "the window ({}) must be a whole multiple of the slide ({})",
                a.window, a.slide
            ),
        );
    }
    if a.trigger_interval.get().is_zero() {
        push(
            out,
            "aggregation.trigger_interval",
            "must be greater than zero",
        );
    }
    if !is_identifier(&a.output_table) {
        push(
            out,
            "aggregation.output_table",
            format!("{:?} is not a valid table name", a.output_table),
        );
    }
    if !(a.spark_rsd > 0.0 && a.spark_rsd < 0.4) {
        push(
            out,
            "aggregation.spark_rsd",
            "must be between 0 and 0.4 (Spark's limit)",
        );
    }
    if a.group_id.is_empty() {
        push(out, "aggregation.group_id", "must not be empty");
    }
}

fn alerts(a: &AlertsConfig, out: &mut Problems) {
    let mut names = HashSet::new();
    for (i, r) in a.rules.iter().enumerate() {
        let at = |f: &str| format!("alerts.rules[{i}].{f}");
        if !names.insert(r.name.as_str()) {
            push(
                out,
                &at("name"),
                format!(
                    "rule {:?} is defined twice (names key the PagerDuty incidents)",
                    r.name
                ),
            );
        }
        if !(r.threshold > 0.0 && r.threshold <= 1.0) {
            push(out, &at("threshold"), "must be a rate in (0, 1], e.g. 0.30");
        }
        if r.for_duration.get().as_secs() < 60 {
            push(
                out,
                &at("for"),
                "must be at least 1m (rates are evaluated per minute)",
            );
        } else if !r.for_duration.get().as_millis().is_multiple_of(60_000) {
            push(
                out,
                &at("for"),
                "must be a whole number of minutes (rates are evaluated per minute)",
            );
        }
        if !["critical", "error", "warning", "info"].contains(&r.severity.as_str()) {
            push(
                out,
                &at("severity"),
                "must be critical, error, warning or info",
            );
        }
        if r.name.is_empty() {
            push(out, &at("name"), "must not be empty");
        }
    }
    if !(a.pagerduty.url.starts_with("http://") || a.pagerduty.url.starts_with("https://")) {
        push(out, "alerts.pagerduty.url", "must be an http(s) URL");
    }
}
