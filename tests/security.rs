//! Security end to end, on a stack of its own: a Kafka broker whose client listener
//! is SASL_SSL (SCRAM-SHA-512, certificate from a CA made here with rcgen) and the
//! ClickHouse endpoint over HTTPS with a writer and a read-only user. `generate`,
//! `aggregate`, `ingest` and `query` run through it from the `ridectl` binary with
//! the secrets in the environment; wrong passwords fail fast with exit 77 and a
//! clear message; no output ever contains a secret. Everything started here is
//! stopped by a guard, also when an assertion fails.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ridectl::clickhouse::Access;
use ridectl::config::{Loaded, LocalKafkaSaslSsl, LocalTls, ScramUser, SecurityProtocol};
use ridectl::units::{HumanDuration, Secret};

const KAFKA_USER: &str = "ridectl";
const CH_USER: &str = "ridectl_writer";
const CH_READONLY_USER: &str = "ridectl_readonly";
const EVENTS: u64 = 3000;

/// Secrets unique to this run, so a match in some output cannot be a coincidence.
struct Secrets {
    kafka: String,
    clickhouse: String,
    readonly: String,
    wrong: String,
}

impl Secrets {
    fn new() -> Secrets {
        let tag = common::unique("pw").replace('-', "");
        Secrets {
            kafka: format!("Kafka{tag}Secret"),
            clickhouse: format!("Ch{tag}Writer"),
            readonly: format!("Ro{tag}Reader"),
            wrong: format!("Wrong{tag}Guess"),
        }
    }

    fn all(&self) -> [&str; 4] {
        [&self.kafka, &self.clickhouse, &self.readonly, &self.wrong]
    }
}

/// Stops the stack and deletes its state when the test ends, however it ends.
struct StackGuard {
    loaded: Loaded,
    dir: PathBuf,
}

impl Drop for StackGuard {
    fn drop(&mut self) {
        if let Err(e) = ridectl::local::down(&self.loaded) {
            eprintln!("stopping the security test stack failed: {e:#}");
        }
        if std::env::var_os("RIDECTL_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A broker port whose controller (+1000) and inter-broker (+2000) ports are free too.
fn free_kafka_port() -> u16 {
    let seed = std::process::id() as u16;
    (0..400)
        .map(|i| 20_000 + (seed.wrapping_mul(7).wrapping_add(i * 13)) % 6_000)
        .find(|&p| port_free(p) && port_free(p + 1000) && port_free(p + 2000))
        .expect("no free port triple for the test broker")
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and a certificate for 127.0.0.1/localhost signed by it, as PEM files.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "ridectl test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = server.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// The test's configuration: its own ports, state, topics and database, SASL_SSL to
/// Kafka and HTTPS to ClickHouse, both trusting the test CA.
fn secured_config(dir: &Path, s: &Secrets, certs: &(PathBuf, PathBuf, PathBuf)) -> Loaded {
    let mut l = common::isolated("security");
    let (ca, cert, key) = certs.clone();
    let kafka_port = free_kafka_port();
    let ch_port = free_port();
    let c = &mut l.config;
    c.local.state_dir = dir.join("state");
    c.local.kafka_port = kafka_port;
    c.local.clickhouse_port = ch_port;
    c.local.kafka_heap = "512M".into();
    c.local.kafka_sasl_ssl = Some(LocalKafkaSaslSsl {
        cert: cert.clone(),
        key: key.clone(),
        users: vec![ScramUser {
            name: KAFKA_USER.into(),
            password: Secret::new(&s.kafka),
        }],
    });
    c.local.clickhouse_tls = Some(LocalTls { cert, key });
    c.kafka.bootstrap_servers = format!("127.0.0.1:{kafka_port}");
    let sec = &mut c.kafka.security;
    sec.protocol = SecurityProtocol::SaslSsl;
    sec.sasl_mechanism = "SCRAM-SHA-512".into();
    sec.sasl_username = KAFKA_USER.into();
    sec.sasl_password = Secret::new(&s.kafka);
    sec.ssl_ca_location = Some(ca.clone());
    sec.ssl_endpoint_identification = true;
    let ch = &mut c.clickhouse;
    ch.url = format!("https://127.0.0.1:{ch_port}");
    ch.user = CH_USER.into();
    ch.password = Secret::new(&s.clickhouse);
    ch.readonly_user = CH_READONLY_USER.into();
    ch.readonly_password = Secret::new(&s.readonly);
    ch.ca_location = Some(ca);
    // Tumbling one-minute windows: every event is counted in exactly one window.
    c.aggregation.window = HumanDuration::from_secs(60);
    c.aggregation.slide = HumanDuration::from_secs(60);
    l
}

/// The configuration as a file for the CLI, every secret as `${VAR}` from the
/// environment (as in production), plus librdkafka's debug log when `debug`.
fn write_cli_config(l: &Loaded, dir: &Path, name: &str, debug: bool) -> PathBuf {
    use serde_yaml::Value;
    let mut v = serde_yaml::to_value(&l.config).unwrap();
    let set = |v: &mut Value, path: &[&str], value: &str| {
        let mut cur = v;
        for key in &path[..path.len() - 1] {
            cur = cur.get_mut(*key).unwrap();
        }
        cur.as_mapping_mut()
            .unwrap()
            .insert(path[path.len() - 1].into(), value.into());
    };
    set(
        &mut v,
        &["kafka", "security", "sasl_password"],
        "${KAFKA_PASSWORD}",
    );
    set(
        &mut v,
        &["clickhouse", "password"],
        "${CLICKHOUSE_PASSWORD}",
    );
    set(
        &mut v,
        &["clickhouse", "readonly_password"],
        "${CLICKHOUSE_READONLY_PASSWORD}",
    );
    set(&mut v, &["alerts", "pagerduty", "routing_key"], "");
    let users = v["local"]["kafka_sasl_ssl"]["users"]
        .as_sequence_mut()
        .unwrap();
    users[0]
        .as_mapping_mut()
        .unwrap()
        .insert("password".into(), "${KAFKA_PASSWORD}".into());
    let cache = l.cache_dir().display().to_string();
    set(&mut v, &["local", "cache_dir"], &cache);
    if debug {
        let client = v["kafka"]["client"].as_mapping_mut().unwrap();
        client.insert("debug".into(), "security,broker,conf".into());
    }
    let path = dir.join(name);
    std::fs::write(&path, serde_yaml::to_string(&v).unwrap()).unwrap();
    path
}

/// Runs the CLI and keeps everything it printed for the final secret check.
struct Cli<'a> {
    config: PathBuf,
    secrets: &'a Secrets,
    transcript: Vec<String>,
}

/// One finished command.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Cli<'_> {
    fn run(&mut self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd: Command = common::ridectl_cmd();
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env("KAFKA_PASSWORD", &self.secrets.kafka)
            .env("CLICKHOUSE_PASSWORD", &self.secrets.clickhouse)
            .env("CLICKHOUSE_READONLY_PASSWORD", &self.secrets.readonly)
            .env("NO_COLOR", "1")
            .env_remove("RIDECTL_LOG")
            .env_remove("RIDECTL_PROFILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().unwrap();
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed: started.elapsed(),
        };
        self.transcript.push(format!(
            "$ ridectl {}\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        ));
        run
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&mut self, args: &[&str]) -> String {
        let r = self.run(args, &[]);
        assert_eq!(
            r.code,
            0,
            "ridectl {} failed:\n{}{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_and_https_end_to_end_with_fast_auth_failures_and_no_secret_printed() {
    let test_started = Instant::now();
    let secrets = Secrets::new();
    let dir = common::project_dir()
        .join(".ridectl")
        .join(common::unique("security-test"));
    std::fs::create_dir_all(&dir).unwrap();
    let certs = make_certificates(&dir);
    let l = secured_config(&dir, &secrets, &certs);
    let _guard = StackGuard {
        loaded: l.clone(),
        dir: dir.clone(),
    };

    // The ClickHouse endpoint's users: a writer and a read-only user.
    let state = l.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    let users = serde_json::json!({"users": {
        CH_USER: {"password": secrets.clickhouse},
        CH_READONLY_USER: {"password": secrets.readonly, "readonly": true},
    }});
    std::fs::write(state.join("clickhouse-users.json"), users.to_string()).unwrap();

    let up_started = Instant::now();
    let statuses = ridectl::local::up(&l, 1).await.expect("local up");
    let up_secs = up_started.elapsed().as_secs_f64();
    assert!(statuses.iter().all(|s| s.state == "up"), "{statuses:?}");
    assert!(statuses[0].detail.contains("SASL_SSL"), "{statuses:?}");
    assert!(statuses[1].address.starts_with("https://"), "{statuses:?}");

    let mut cli = Cli {
        config: write_cli_config(&l, &dir, "pipeline.yaml", false),
        secrets: &secrets,
        transcript: Vec::new(),
    };

    // Through SASL_SSL and HTTPS: topics, schema, generate, aggregate, ingest.
    cli.ok(&["topics", "create"]);
    let sql = common::project_dir().join("sql");
    let schema_dir = sql.join("schema").display().to_string();
    let queries_dir = sql.join("queries").display().to_string();
    cli.ok(&["schema", "apply", "--dir", &schema_dir]);
    let count = EVENTS.to_string();
    let generated: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "generate",
        "--count",
        &count,
        "--rate",
        "max",
        "--seed",
        "11",
        "--no-driver-locations",
        "--quiet",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(generated["ride_events"]["delivered"], EVENTS, "{generated}");
    let aggregated: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "aggregate",
        "--bounded",
        "--from-beginning",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(aggregated["consumed"], EVENTS, "{aggregated}");
    let accepted = aggregated["accepted"].as_u64().unwrap();
    let late: u64 = aggregated["late"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(accepted + late, EVENTS, "{aggregated}");
    assert!(accepted > EVENTS / 2, "{aggregated}");
    assert_eq!(
        common::scalar(
            &l,
            "SELECT sum(total_events) FROM city_window_metrics FINAL"
        )
        .await,
        accepted.to_string()
    );
    cli.ok(&["ingest", "--bounded", "--from-beginning"]);

    // The read-only user reads what the writer wrote...
    let rows: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "query",
        "sql",
        "SELECT count() AS n FROM ride_events",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(rows[0]["n"], EVENTS, "{rows}");
    // ...and cannot write, through the CLI or the library.
    let denied = cli.run(
        &[
            "query",
            "sql",
            "INSERT INTO ride_events (event_id) VALUES ('x')",
        ],
        &[],
    );
    assert_ne!(denied.code, 0);
    assert!(denied.stderr.contains("READONLY"), "{}", denied.stderr);
    let reader = ridectl::clickhouse::try_client(&l.config.clickhouse, Access::Read).unwrap();
    let err = reader
        .query("CREATE TABLE t_readonly (a UInt8) ENGINE = Memory")
        .execute()
        .await
        .expect_err("the read-only user created a table");
    assert!(err.to_string().contains("READONLY"), "{err}");
    let writer = ridectl::clickhouse::try_client(&l.config.clickhouse, Access::Write).unwrap();
    writer
        .query("CREATE TABLE t_writer (a UInt8) ENGINE = Memory")
        .execute()
        .await
        .expect("the writer can create a table");

    // HTTPS is real: without the test CA the certificate is not trusted, and plain
    // HTTP to the port gets no answer.
    let mut no_ca = l.config.clickhouse.clone();
    no_ca.ca_location = None;
    let e = ridectl::clickhouse::version(&no_ca, Duration::from_secs(5))
        .await
        .expect_err("an untrusted certificate was accepted");
    assert!(format!("{e:#}").contains("certificate"), "{e:#}");
    let mut plain = l.config.clickhouse.clone();
    plain.url = plain.url.replace("https://", "http://");
    assert!(
        ridectl::clickhouse::version(&plain, Duration::from_secs(5))
            .await
            .is_err()
    );

    // A wrong Kafka password: every Kafka command stops at once, exit 77, saying
    // which user and mechanism failed and what to check.
    let mut kafka_failures = Vec::new();
    for args in [
        &["topics", "create"][..],
        &["generate", "--count", "10", "--quiet"],
        &["aggregate", "--bounded"],
        &["ingest", "--bounded"],
    ] {
        let r = cli.run(args, &[("KAFKA_PASSWORD", &secrets.wrong)]);
        assert_eq!(r.code, 77, "ridectl {args:?}:\n{}{}", r.stdout, r.stderr);
        assert!(
            r.elapsed < Duration::from_secs(8),
            "ridectl {args:?} took {:?} to fail",
            r.elapsed
        );
        for needle in [
            "refused SASL authentication",
            "\"ridectl\"",
            "SCRAM-SHA-512",
            "KAFKA_PASSWORD",
        ] {
            assert!(
                r.stderr.contains(needle),
                "{needle:?} missing:\n{}",
                r.stderr
            );
        }
        kafka_failures.push(format!("{} {:.1}s", args[0], r.elapsed.as_secs_f64()));
    }

    // Wrong ClickHouse passwords: the writer (schema, ingest) and the reader (query).
    let r = cli.run(
        &["schema", "apply", "--dir", &schema_dir],
        &[("CLICKHOUSE_PASSWORD", &secrets.wrong)],
    );
    assert_eq!(r.code, 77, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("refused user \"{CH_USER}\""))
            && r.stderr.contains("CLICKHOUSE_PASSWORD"),
        "{}",
        r.stderr
    );
    let r = cli.run(
        &["ingest", "--bounded"],
        &[("CLICKHOUSE_PASSWORD", &secrets.wrong)],
    );
    assert_eq!(r.code, 77, "{}{}", r.stdout, r.stderr);
    let r = cli.run(
        &["query", "city-stats", "--dir", &queries_dir],
        &[("CLICKHOUSE_READONLY_PASSWORD", &secrets.wrong)],
    );
    assert_eq!(r.code, 77, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains(&format!("refused user \"{CH_READONLY_USER}\""))
            && r.stderr.contains("CLICKHOUSE_READONLY_PASSWORD"),
        "{}",
        r.stderr
    );

    // config show masks every secret; debug logs (ridectl's and librdkafka's own
    // configuration dump) do not print them either.
    let shown = cli.ok(&["config", "show"]);
    assert!(shown.contains("sasl_password: '****'"), "{shown}");
    cli.ok(&["config", "show", "--format", "json"]);
    cli.config = write_cli_config(&l, &dir, "pipeline-debug.yaml", true);
    let r = cli.run(
        &[
            "--log",
            "debug",
            "generate",
            "--count",
            "20",
            "--quiet",
            "--no-driver-locations",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("sasl.password = [redacted]"),
        "librdkafka's configuration dump is missing, the check below would prove nothing"
    );

    for (i, text) in cli.transcript.iter().enumerate() {
        for secret in secrets.all() {
            assert!(
                !text.contains(secret),
                "a secret was printed by command #{i}:\n{text}"
            );
        }
    }
    eprintln!(
        "security test: stack up in {up_secs:.1}s, auth failures [{}], total {:.1}s",
        kafka_failures.join(", "),
        test_started.elapsed().as_secs_f64()
    );
}
