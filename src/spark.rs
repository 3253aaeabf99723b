//! `ridectl aggregate --engine spark`: the Spark Structured Streaming engine of the
//! aggregation (design: `docs/spark.md`).
//!
//! The job is `jobs/ride_analytics.py`, embedded in the binary so that the one
//! that runs is always the one this ridectl was built with. [`SparkInstall::locate`]
//! finds what `scripts/setup.sh` installed (pyspark's `spark-submit` in the project's
//! virtualenv, the Kafka connector jars resolved by Maven) and fails at once, saying
//! how to install them, when something is missing; [`spark_submit_command`] builds
//! the `spark-submit` command line from `pipeline.yaml` (pure: unit-tested below).
//! Nothing is downloaded when a job starts: the jars go to `--jars`, never
//! `--packages`. Secrets go through the environment, never argv.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::config::Loaded;
use crate::config::SecurityProtocol;
use crate::exit::Unavailable;
use crate::local::Paths;

/// The PySpark job.
pub const JOB: &str = include_str!("../jobs/ride_analytics.py");
/// The driver's logging configuration.
pub const LOG4J: &str = include_str!("../scripts/spark/log4j2.properties");
/// The master when none is given: every core of this machine.
pub const DEFAULT_MASTER: &str = "local[*]";
/// File-name prefix of the connector jar (`spark-sql-kafka-0-10_<scala>-<spark>.jar`).
pub const CONNECTOR_JAR_PREFIX: &str = "spark-sql-kafka-0-10_";
/// Environment variable that hands the ClickHouse password to the job.
pub const CLICKHOUSE_PASSWORD_ENV: &str = "RIDECTL_CLICKHOUSE_PASSWORD";
/// Environment variable that hands the Kafka SASL password to the job.
pub const KAFKA_PASSWORD_ENV: &str = "RIDECTL_KAFKA_SASL_PASSWORD";

const HOW_TO_INSTALL: &str = "run scripts/setup.sh (it installs pyspark into the virtualenv and \
resolves the Kafka connector jars from Maven Central, once)";

/// How to run the job (the command-line flags of `ridectl aggregate`).
#[derive(Clone, Debug, Default)]
pub struct SparkOptions {
    /// `--master`: `local[N]`, `spark://host:7077`, `yarn`, `k8s://https://...`
    /// (None: [`DEFAULT_MASTER`]).
    pub master: Option<String>,
    /// Process the topic's events up to its end offsets at start, finalize every
    /// window, exit.
    pub bounded: bool,
    /// Checkpoint location overriding `aggregation.spark_checkpoint_dir`.
    pub checkpoint: Option<String>,
    /// Extra `--conf KEY=VALUE` (after the defaults, so they win).
    pub conf: Vec<String>,
}

/// What `scripts/setup.sh` installed for the Spark engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparkInstall {
    /// pyspark's directory: Spark's home.
    pub spark_home: PathBuf,
    /// The virtualenv's Python, for the driver.
    pub python: PathBuf,
    /// The Kafka connector and its dependencies.
    pub jars: Vec<PathBuf>,
    /// The job file.
    pub job: PathBuf,
    /// The driver's log4j2 configuration file.
    pub log4j: PathBuf,
}

impl SparkInstall {
    /// Finds pyspark and the connector jars of the project's cache and writes the
    /// embedded job next to them. Fails with [`Unavailable`] and the command that
    /// installs them when something is missing or of another Spark version.
    pub fn locate(l: &Loaded) -> anyhow::Result<SparkInstall> {
        let mut paths = Paths::from_config(l);
        // Absolute: spark-submit and the JVM resolve paths from other directories.
        paths.cache = std::path::absolute(&paths.cache).unwrap_or(paths.cache);
        let Some(spark_home) = paths.pyspark_home() else {
            return Err(Unavailable(format!(
                "pyspark is not installed in {}: {HOW_TO_INSTALL}",
                paths.cache.join("venv").display()
            ))
            .into());
        };
        let version = pyspark_version(&spark_home)?;
        let jars = connector_jars(&paths.spark_jars(), &version)?;
        let dir = paths.cache.join("spark-job");
        let job = write_if_changed(&dir, "ride_analytics.py", JOB)?;
        let log4j = write_if_changed(&dir, "log4j2.properties", LOG4J)?;
        Ok(SparkInstall {
            spark_home,
            python: paths.python(),
            jars,
            job,
            log4j,
        })
    }

    /// `bin/spark-submit` of the installation.
    pub fn spark_submit(&self) -> PathBuf {
        self.spark_home.join("bin/spark-submit")
    }
}

/// The installed pyspark version, from `pyspark/version.py`.
fn pyspark_version(home: &Path) -> anyhow::Result<String> {
    let file = home.join("version.py");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    text.lines()
        .find(|l| l.starts_with("__version__"))
        .and_then(|l| l.split(['"', '\'']).nth(1))
        .map(str::to_string)
        .with_context(|| format!("no __version__ in {}", file.display()))
}

/// The jars of `dir`, which must hold the connector for Spark `version`.
fn connector_jars(dir: &Path, version: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut jars: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jar"))
                .collect()
        })
        .unwrap_or_default();
    jars.sort();
    let connector = jars.iter().find_map(|p| {
        let name = p.file_name()?.to_str()?;
        name.strip_prefix(CONNECTOR_JAR_PREFIX).map(str::to_string)
    });
    match connector {
        None => Err(Unavailable(format!(
            "the Spark Kafka connector jars are missing from {}: {HOW_TO_INSTALL}",
            dir.display()
        ))
        .into()),
        Some(name) if !name.ends_with(&format!("-{version}.jar")) => Err(Unavailable(format!(
            "the Spark Kafka connector in {} ({CONNECTOR_JAR_PREFIX}{name}) is not for the \
             installed pyspark {version}: {HOW_TO_INSTALL}",
            dir.display()
        ))
        .into()),
        Some(_) => Ok(jars),
    }
}

/// Writes `content` to `dir/name` unless it is there already (atomically: other
/// runs may be reading it).
fn write_if_changed(dir: &Path, name: &str, content: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if std::fs::read_to_string(&path).is_ok_and(|c| c == content) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, content).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The checkpoint location: `--checkpoint`, else `aggregation.spark_checkpoint_dir`
/// (relative to the project) with one subdirectory per consumer group. URIs
/// (`hdfs://`, `s3a://`, `file:/`) are passed as they are.
pub fn checkpoint_location(l: &Loaded, opts: &SparkOptions) -> String {
    if let Some(c) = &opts.checkpoint {
        return c.clone();
    }
    let a = &l.config.aggregation;
    let dir = a.spark_checkpoint_dir.to_string_lossy();
    if dir.contains(":/") {
        return format!("{}/{}", dir.trim_end_matches('/'), a.group_id);
    }
    let dir = l.resolve(&a.spark_checkpoint_dir).join(&a.group_id);
    std::path::absolute(&dir)
        .unwrap_or(dir)
        .display()
        .to_string()
}

/// The `spark-submit` command that runs the job with `l`'s configuration.
///
/// Everything the job needs comes from `pipeline.yaml`: Kafka servers, security and
/// topics; window, slide, watermark, trigger and clock skew; ClickHouse URL, user,
/// database and table; the approximate-distinct rsd; the checkpoint. Passwords are
/// set in the command's environment ([`CLICKHOUSE_PASSWORD_ENV`],
/// [`KAFKA_PASSWORD_ENV`]), so `ps` never shows them.
pub fn spark_submit_command(l: &Loaded, install: &SparkInstall, opts: &SparkOptions) -> Command {
    let cfg = &l.config;
    let a = &cfg.aggregation;
    let mut cmd = Command::new(install.spark_submit());
    let master = opts.master.as_deref().unwrap_or(DEFAULT_MASTER);
    let jars: Vec<String> = install
        .jars
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    cmd.arg("--master").arg(master);
    cmd.arg("--name").arg(format!(
        "ridectl-aggregate {}{}",
        cfg.topics.ride_events.name,
        if opts.bounded { " (bounded)" } else { "" }
    ));
    if !jars.is_empty() {
        cmd.arg("--jars").arg(jars.join(","));
    }
    cmd.arg("--driver-java-options").arg(format!(
        "-Dlog4j2.configurationFile=file:{}",
        install.log4j.display()
    ));
    let defaults = [
        // A few windows per city: a handful of shuffle partitions, not 200.
        "spark.sql.shuffle.partitions=4",
        "spark.sql.session.timeZone=UTC",
        "spark.ui.showConsoleProgress=false",
    ];
    for c in defaults
        .iter()
        .copied()
        .chain(opts.conf.iter().map(String::as_str))
    {
        cmd.arg("--conf").arg(c);
    }
    cmd.arg(&install.job);

    let ms = |d: crate::units::HumanDuration| d.as_millis_i64().to_string();
    let args: Vec<(&str, String)> = vec![
        ("--bootstrap-servers", cfg.kafka.bootstrap_servers.clone()),
        ("--input-topic", cfg.topics.ride_events.name.clone()),
        ("--output-topic", cfg.topics.aggregated.name.clone()),
        ("--window-ms", ms(a.window)),
        ("--slide-ms", ms(a.slide)),
        ("--watermark-ms", ms(a.watermark)),
        ("--trigger-ms", ms(a.trigger_interval)),
        ("--max-clock-skew-ms", ms(a.max_clock_skew)),
        ("--rsd", a.spark_rsd.to_string()),
        ("--clickhouse-url", cfg.clickhouse.url.clone()),
        ("--clickhouse-user", cfg.clickhouse.user.clone()),
        ("--clickhouse-database", cfg.clickhouse.database.clone()),
        (
            "--clickhouse-timeout-s",
            cfg.clickhouse
                .request_timeout
                .get()
                .as_secs_f64()
                .to_string(),
        ),
        ("--table", a.output_table.clone()),
        ("--checkpoint", checkpoint_location(l, opts)),
    ];
    for (k, v) in args {
        cmd.arg(k).arg(v);
    }
    let sec = &cfg.kafka.security;
    if sec.protocol != SecurityProtocol::Plaintext {
        let proto = serde_json::to_value(sec.protocol)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        cmd.arg("--kafka-security-protocol").arg(proto);
    }
    if sec.protocol.uses_sasl() {
        cmd.arg("--kafka-sasl-mechanism").arg(&sec.sasl_mechanism);
        cmd.arg("--kafka-sasl-username").arg(&sec.sasl_username);
        if !sec.sasl_password.is_empty() {
            cmd.env(KAFKA_PASSWORD_ENV, sec.sasl_password.expose());
        }
    }
    if sec.protocol.uses_tls() {
        if let Some(ca) = &sec.ssl_ca_location {
            cmd.arg("--kafka-ssl-ca-location").arg(l.resolve(ca));
        }
        if !sec.ssl_endpoint_identification {
            cmd.arg("--kafka-no-endpoint-identification");
        }
    }
    if opts.bounded {
        cmd.arg("--bounded");
    }

    // Spark's home is pyspark's, whatever SPARK_HOME the shell has; the driver runs
    // in the virtualenv (the job has no Python UDFs: executors never start Python).
    cmd.env("SPARK_HOME", &install.spark_home)
        .env("PYSPARK_PYTHON", &install.python)
        .env("PYSPARK_DRIVER_PYTHON", &install.python);
    if !cfg.clickhouse.password.is_empty() {
        cmd.env(CLICKHOUSE_PASSWORD_ENV, cfg.clickhouse.password.expose());
    } else {
        // Not one inherited from the shell for another server.
        cmd.env_remove(CLICKHOUSE_PASSWORD_ENV);
    }
    cmd
}

/// The command as a shell line, for `--print`: the environment it sets (secrets
/// shown as `***`), then the program and its arguments, quoted.
pub fn shell_line(cmd: &Command) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in cmd.get_envs() {
        let Some(v) = v else { continue };
        let k = k.to_string_lossy();
        let v = if k == CLICKHOUSE_PASSWORD_ENV || k == KAFKA_PASSWORD_ENV {
            "***".into()
        } else {
            shell_quote(v.to_os_string())
        };
        parts.push(format!("{k}={v}"));
    }
    parts.push(shell_quote(cmd.get_program().to_os_string()));
    parts.extend(cmd.get_args().map(|a| shell_quote(a.to_os_string())));
    parts.join(" ")
}

fn shell_quote(s: OsString) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs the job in place of this process (its exit code is the command's; signals
/// reach spark-submit directly). Returns only if it cannot be started.
pub fn exec(mut cmd: Command) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let program = cmd.get_program().to_owned();
    let err = cmd.exec();
    anyhow::Error::from(err).context(format!("cannot run {}", Path::new(&program).display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::units::Secret;

    fn loaded(yaml_extra: &str) -> Loaded {
        let text = format!(
            "clickhouse:\n  url: http://ch:8123\n  user: writer\n  database: analytics\n{yaml_extra}"
        );
        config::load_str(
            &text,
            Path::new("/srv/ridectl/pipeline.yaml"),
            None,
            &|_| None,
        )
        .unwrap()
    }

    fn install() -> SparkInstall {
        SparkInstall {
            spark_home: "/venv/site-packages/pyspark".into(),
            python: "/venv/bin/python".into(),
            jars: vec!["/c/a.jar".into(), "/c/b.jar".into()],
            job: "/c/spark-job/ride_analytics.py".into(),
            log4j: "/c/spark-job/log4j2.properties".into(),
        }
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn value_of(args: &[String], flag: &str) -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    }

    fn env_of(cmd: &Command, key: &str) -> Option<String> {
        cmd.get_envs()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
    }

    #[test]
    fn every_parameter_comes_from_the_configuration() {
        let l = loaded("");
        let cmd = spark_submit_command(&l, &install(), &SparkOptions::default());
        assert_eq!(
            cmd.get_program(),
            "/venv/site-packages/pyspark/bin/spark-submit"
        );
        let a = args(&cmd);
        let job = a
            .iter()
            .position(|x| x.ends_with("ride_analytics.py"))
            .unwrap();
        let (submit, job_args) = (&a[..job], &a[job + 1..]);
        assert_eq!(value_of(submit, "--master").as_deref(), Some("local[*]"));
        assert_eq!(
            value_of(submit, "--jars").as_deref(),
            Some("/c/a.jar,/c/b.jar")
        );
        assert!(!submit.iter().any(|x| x == "--packages"));
        assert!(submit.iter().any(|x| x == "spark.sql.shuffle.partitions=4"));
        for (flag, want) in [
            ("--bootstrap-servers", "127.0.0.1:9092"),
            ("--input-topic", "ride-events"),
            ("--output-topic", "analytics-aggregated"),
            ("--window-ms", "300000"),
            ("--slide-ms", "60000"),
            ("--watermark-ms", "30000"),
            ("--trigger-ms", "1000"),
            ("--max-clock-skew-ms", "300000"),
            ("--rsd", "0.01"),
            ("--clickhouse-url", "http://ch:8123"),
            ("--clickhouse-user", "writer"),
            ("--clickhouse-database", "analytics"),
            ("--clickhouse-timeout-s", "30"),
            ("--table", "city_window_metrics"),
            (
                "--checkpoint",
                "/srv/ridectl/.ridectl/spark-checkpoints/ridectl-aggregate",
            ),
        ] {
            assert_eq!(value_of(job_args, flag).as_deref(), Some(want), "{flag}");
        }
        assert!(!job_args.iter().any(|x| x == "--bounded"));
        assert!(!job_args.iter().any(|x| x.starts_with("--kafka-")));
        assert_eq!(
            env_of(&cmd, "PYSPARK_PYTHON").as_deref(),
            Some("/venv/bin/python")
        );
        assert_eq!(
            env_of(&cmd, "SPARK_HOME").as_deref(),
            Some("/venv/site-packages/pyspark")
        );
    }

    #[test]
    fn options_master_bounded_checkpoint_conf() {
        let l = loaded(
            "aggregation:\n  window: 10m\n  slide: 10m\n  spark_rsd: 0.02\n  \
             spark_checkpoint_dir: hdfs://nn:8020/ckpt/\n",
        );
        let opts = SparkOptions {
            master: Some("spark://127.0.0.1:7077".into()),
            bounded: true,
            checkpoint: None,
            conf: vec!["spark.sql.shuffle.partitions=64".into()],
        };
        let a = args(&spark_submit_command(&l, &install(), &opts));
        assert_eq!(
            value_of(&a, "--master").as_deref(),
            Some("spark://127.0.0.1:7077")
        );
        assert_eq!(value_of(&a, "--window-ms").as_deref(), Some("600000"));
        assert_eq!(value_of(&a, "--slide-ms").as_deref(), Some("600000"));
        assert_eq!(value_of(&a, "--rsd").as_deref(), Some("0.02"));
        assert_eq!(
            value_of(&a, "--checkpoint").as_deref(),
            Some("hdfs://nn:8020/ckpt/ridectl-aggregate")
        );
        assert_eq!(a.last().map(String::as_str), Some("--bounded"));
        // The user's conf comes after the default, so it wins.
        let confs: Vec<&String> = a
            .iter()
            .filter(|x| x.starts_with("spark.sql.shuffle.partitions="))
            .collect();
        assert_eq!(
            confs.last().unwrap().as_str(),
            "spark.sql.shuffle.partitions=64"
        );

        let explicit = SparkOptions {
            checkpoint: Some("/tmp/ck".into()),
            ..opts
        };
        let a = args(&spark_submit_command(&l, &install(), &explicit));
        assert_eq!(value_of(&a, "--checkpoint").as_deref(), Some("/tmp/ck"));
    }

    #[test]
    fn secrets_go_through_the_environment_not_argv() {
        let mut l = loaded(
            "kafka:\n  security:\n    protocol: SASL_SSL\n    sasl_username: svc\n    \
             sasl_password: kafka-secret\n    ssl_ca_location: /etc/ca.pem\n",
        );
        l.config.clickhouse.password = Secret::new("ch-secret");
        let cmd = spark_submit_command(&l, &install(), &SparkOptions::default());
        let a = args(&cmd);
        assert!(!a.iter().any(|x| x.contains("secret")), "{a:?}");
        assert_eq!(
            value_of(&a, "--kafka-security-protocol").as_deref(),
            Some("SASL_SSL")
        );
        assert_eq!(
            value_of(&a, "--kafka-sasl-mechanism").as_deref(),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(
            value_of(&a, "--kafka-sasl-username").as_deref(),
            Some("svc")
        );
        assert_eq!(
            value_of(&a, "--kafka-ssl-ca-location").as_deref(),
            Some("/etc/ca.pem")
        );
        assert_eq!(
            env_of(&cmd, CLICKHOUSE_PASSWORD_ENV).as_deref(),
            Some("ch-secret")
        );
        assert_eq!(
            env_of(&cmd, KAFKA_PASSWORD_ENV).as_deref(),
            Some("kafka-secret")
        );
        let line = shell_line(&cmd);
        assert!(!line.contains("secret"), "{line}");
        assert!(line.contains("RIDECTL_CLICKHOUSE_PASSWORD=***"));
        assert!(line.contains("'local[*]'"));
    }

    #[test]
    fn missing_or_mismatched_connector_jars_say_how_to_install() {
        let dir = std::env::temp_dir().join(format!("ridectl-spark-jars-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let err = connector_jars(&dir, "4.2.0").unwrap_err();
        assert!(err.is::<Unavailable>());
        assert!(err.to_string().contains("run scripts/setup.sh"), "{err}");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kafka-clients-3.9.2.jar"), "").unwrap();
        assert!(connector_jars(&dir, "4.2.0").is_err());
        std::fs::write(dir.join("spark-sql-kafka-0-10_2.13-4.1.0.jar"), "").unwrap();
        let err = connector_jars(&dir, "4.2.0").unwrap_err();
        assert!(
            err.to_string()
                .contains("not for the installed pyspark 4.2.0")
        );
        std::fs::remove_file(dir.join("spark-sql-kafka-0-10_2.13-4.1.0.jar")).unwrap();
        std::fs::write(dir.join("spark-sql-kafka-0-10_2.13-4.2.0.jar"), "").unwrap();
        let jars = connector_jars(&dir, "4.2.0").unwrap();
        assert_eq!(jars.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
