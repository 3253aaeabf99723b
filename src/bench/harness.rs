//! What every benchmark (and the integration tests) needs around the code it
//! measures: an isolated copy of the configuration (its own topics, consumer groups
//! and database), that copy written as a file a `ridectl` child reads, provisioning
//! and clean-up, pre-loading synthetic events, and following a child process's CPU
//! and memory through /proc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::synth::{Synth, SynthConfig, SynthEvent};
use crate::config::Loaded;
use crate::kafka::{self, Role};
use crate::time::now_millis;

/// `base` with every topic, consumer group and the ClickHouse database renamed
/// after `id` (`ride-events-<id>`, database `<db_prefix>_<id>`), so a run shares
/// nothing with the live pipeline or with another run.
pub fn isolated(base: &Loaded, id: &str, db_prefix: &str) -> Loaded {
    let mut l = base.clone();
    let t = &mut l.config.topics;
    for spec in [
        &mut t.ride_events,
        &mut t.driver_locations,
        &mut t.aggregated,
        &mut t.dead_letter,
        &mut t.late_events,
    ] {
        spec.name = format!("{}-{id}", spec.name);
    }
    l.config.clickhouse.database = format!("{db_prefix}_{}", id.replace('-', "_"));
    l.config.aggregation.group_id = format!("agg-{id}");
    l.config.ingest.group_id = format!("ingest-{id}");
    l
}

/// [`isolated`] with an id made of `tag`, this process and the time.
pub fn bench_config(base: &Loaded, tag: &str) -> Loaded {
    let id = format!("{tag}-{}-{}", std::process::id(), now_millis());
    isolated(base, &id, "bench")
}

/// Environment variables through which [`spawn_ridectl`] hands the secrets to a
/// child reading a file written by [`write_config`].
const SECRET_VARS: [(&str, &str, &str); 3] = [
    (
        "clickhouse",
        "password",
        "RIDECTL_CHILD_CLICKHOUSE_PASSWORD",
    ),
    (
        "clickhouse",
        "readonly_password",
        "RIDECTL_CHILD_CLICKHOUSE_READONLY_PASSWORD",
    ),
    ("security", "sasl_password", "RIDECTL_CHILD_SASL_PASSWORD"),
];

/// Writes `l` as `dir/pipeline.yaml` for a `ridectl --config` child. Secrets are
/// not written: the file refers to environment variables that [`spawn_ridectl`]
/// sets (empty when unset). Paths are made absolute, so the file works from any
/// directory.
pub fn write_config(l: &Loaded, dir: &Path) -> anyhow::Result<PathBuf> {
    let mut value = serde_yaml::to_value(&l.config)?;
    for (section, key, var) in SECRET_VARS {
        let m = match section {
            "security" => value
                .get_mut("kafka")
                .and_then(|k| k.get_mut("security"))
                .and_then(|s| s.as_mapping_mut()),
            s => value.get_mut(s).and_then(|s| s.as_mapping_mut()),
        };
        if let Some(m) = m {
            m.insert(key.into(), format!("${{{var}:-}}").into());
        }
    }
    if let Some(m) = value
        .get_mut("alerts")
        .and_then(|a| a.get_mut("pagerduty"))
        .and_then(|p| p.as_mapping_mut())
    {
        m.insert("routing_key".into(), "".into());
    }
    if let Some(local) = value.get_mut("local").and_then(|s| s.as_mapping_mut()) {
        for (key, path) in [("state_dir", l.state_dir()), ("cache_dir", l.cache_dir())] {
            let abs = std::path::absolute(&path).unwrap_or(path);
            local.insert(key.into(), abs.display().to_string().into());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, serde_yaml::to_string(&value)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// A `ridectl` command (this executable unless `exe` is given) reading `config`,
/// with the secrets of `l` in the environment and no `RIDECTL_*` override that
/// would shadow the file.
pub fn ridectl_command(l: &Loaded, exe: Option<&Path>, config: &Path) -> anyhow::Result<Command> {
    let exe = match exe {
        Some(e) => e.to_path_buf(),
        None => std::env::current_exe().context("cannot find the ridectl executable")?,
    };
    let mut cmd = Command::new(exe);
    for (var, _) in crate::config::ENV_OVERRIDES {
        cmd.env_remove(var);
    }
    cmd.env_remove("RIDECTL_CONFIG")
        .env_remove("RIDECTL_PROFILE");
    cmd.arg("--config").arg(config);
    let c = &l.config;
    for (value, (_, _, var)) in [
        c.clickhouse.password.expose(),
        c.clickhouse.readonly_password.expose(),
        c.kafka.security.sasl_password.expose(),
    ]
    .into_iter()
    .zip(SECRET_VARS)
    {
        cmd.env(var, value);
    }
    Ok(cmd)
}

/// Starts `ridectl --config CONFIG --log warn ARGS...` with stdout piped and stderr
/// appended to `stderr_log` (or inherited).
pub fn spawn_ridectl(
    l: &Loaded,
    config: &Path,
    args: &[&str],
    stderr_log: Option<&Path>,
) -> anyhow::Result<Child> {
    let mut cmd = ridectl_command(l, None, config)?;
    cmd.args(["--log", "warn"])
        .args(args)
        .stdout(Stdio::piped());
    match stderr_log {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?;
            cmd.stderr(f);
        }
        None => {
            cmd.stderr(Stdio::inherit());
        }
    }
    cmd.spawn()
        .with_context(|| format!("cannot start `ridectl {}`", args.join(" ")))
}

/// Creates the topics and applies the schema of `l`.
pub async fn provision(l: &Loaded) -> anyhow::Result<()> {
    let cfg = &l.config;
    let timeout = cfg.kafka.connect_timeout.get();
    let admin = kafka::admin(&cfg.kafka)?;
    let wanted = cfg.topics.resolved();
    let names: Vec<String> = wanted.iter().map(|t| t.name.clone()).collect();
    let (actual, brokers) = kafka::topics::describe(&admin, &names, timeout).await?;
    let plan = kafka::topics::plan(&wanted, &actual, brokers)?;
    kafka::topics::apply(&admin, &plan, timeout).await?;
    let migrations = crate::clickhouse::schema::load_dir(&l.resolve(Path::new("sql/schema")))?;
    crate::clickhouse::schema::apply(&cfg.clickhouse, &migrations).await?;
    Ok(())
}

/// Deletes the topics and the database of `l` (best effort).
pub async fn cleanup(l: &Loaded) {
    let cfg = &l.config;
    if let Ok(admin) = kafka::admin(&cfg.kafka) {
        let topics = cfg.topics.resolved();
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        let _ = admin
            .delete_topics(&names, &rdkafka::admin::AdminOptions::new())
            .await;
    }
    let _ = crate::clickhouse::server_client(&cfg.clickhouse)
        .query_raw(&format!(
            "DROP DATABASE IF EXISTS `{}`",
            cfg.clickhouse.database
        ))
        .execute()
        .await;
}

/// Queues one synthetic event, waiting while the producer's queue is full.
pub fn enqueue(
    p: &FutureProducer,
    topic: &str,
    e: &SynthEvent,
) -> rdkafka::producer::DeliveryFuture {
    let mut record = FutureRecord::to(topic)
        .key(e.key.as_str())
        .payload(e.json.as_bytes());
    loop {
        match p.send_result(record) {
            Ok(f) => return f,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Produces `n` synthetic ride events (seed `seed`, 50,000/min of event time ending
/// ten minutes ago) to the ride-events topic; returns events/s.
pub async fn preload(l: &Loaded, n: usize, seed: u64) -> anyhow::Result<f64> {
    let p: FutureProducer = kafka::client_config(&l.config.kafka, Role::Producer)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()?;
    let topic = &l.config.topics.ride_events.name;
    // Event times end a few minutes before now (the worker rejects future events).
    let span_ms = (n as f64 / 50_000.0 * 60_000.0) as i64;
    let start = now_millis() - span_ms - 10 * 60_000;
    let t0 = Instant::now();
    let mut pending = Vec::with_capacity(50_000);
    for e in Synth::new(SynthConfig::new(seed, start, 50_000.0)).take(n) {
        pending.push(enqueue(&p, topic, &e));
        if pending.len() >= 50_000 {
            for f in pending.drain(..) {
                f.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for f in pending {
        f.await?.map_err(|(e, _)| e)?;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// CPU seconds (own, and of reaped children) and state of one process.
pub fn proc_cpu(pid: u32) -> Option<(f64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    // utime, stime, cutime, cstime: clock ticks of USER_HZ (100 on Linux).
    let ticks: f64 = (11..15).filter_map(|i| f.get(i)?.parse::<f64>().ok()).sum();
    Some((ticks / 100.0, state))
}

/// A /proc/PID/status size in MiB (`VmRSS:`, `VmHWM:`).
fn proc_status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `pid` and its live descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                    out.extend(c.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
                }
            }
        }
        i += 1;
    }
    out
}

/// CPU seconds and RSS (MiB) of a process tree, and the root's state. Every process
/// counts once: live ones with their own time, reaped ones in their parent's. The
/// RSS of a single process is its peak (VmHWM); of a tree, the sum of the current.
pub fn sample_tree(root: u32) -> Option<(f64, f64, char)> {
    let (root_cpu, state) = proc_cpu(root)?;
    let tree = process_tree(root);
    let cpu = root_cpu
        + tree[1..]
            .iter()
            .filter_map(|p| proc_cpu(*p))
            .map(|c| c.0)
            .sum::<f64>();
    let rss = if tree.len() == 1 {
        proc_status_mib(root, "VmHWM:")
    } else {
        tree.iter().map(|p| proc_status_mib(*p, "VmRSS:")).sum()
    };
    Some((cpu, rss, state))
}

/// A followed child: exit status, CPU seconds of its process tree over time, peak
/// RSS (MiB).
pub struct Watched {
    /// Exit status.
    pub status: std::process::ExitStatus,
    /// (when, cumulative CPU seconds) samples.
    pub cpu: Vec<(Instant, f64)>,
    /// Peak RSS, MiB.
    pub peak_rss_mib: f64,
}

impl Watched {
    /// Total CPU seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu.last().map_or(0.0, |c| c.1)
    }

    /// CPU seconds spent between two instants (the nearest samples).
    pub fn cpu_between(&self, from: Instant, to: Instant) -> f64 {
        let at = |t: Instant| {
            let i = self.cpu.partition_point(|s| s.0 < t);
            self.cpu.get(i).or(self.cpu.last()).map_or(0.0, |s| s.1)
        };
        at(to) - at(from)
    }
}

/// Follows a child until it exits, sampling its process tree every 20 ms.
pub fn watch_tree(mut child: Child) -> anyhow::Result<Watched> {
    let (mut cpu, mut rss) = (Vec::new(), 0.0f64);
    while let Some((c, r, state)) = sample_tree(child.id()) {
        let max = cpu.last().map_or(0.0, |x: &(Instant, f64)| x.1);
        cpu.push((Instant::now(), c.max(max)));
        rss = rss.max(r);
        if state == 'Z' {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().context("waiting for a child process")?;
    Ok(Watched {
        status,
        cpu,
        peak_rss_mib: rss,
    })
}

/// A child's stdout, and when the last line starting with `{` (its JSON summary,
/// printed when the work is done) arrived.
pub struct Stdout {
    /// Everything it printed.
    pub text: String,
    /// When the summary line arrived.
    pub summary_at: Option<Instant>,
}

/// Reads a child's stdout to the end in a thread (a full pipe would block it),
/// copying it to `log`.
pub fn drain_stdout(child: &mut Child, log: PathBuf) -> std::thread::JoinHandle<Stdout> {
    use std::io::BufRead;
    let stdout = child.stdout.take();
    std::thread::spawn(move || {
        let mut out = Stdout {
            text: String::new(),
            summary_at: None,
        };
        if let Some(o) = stdout {
            for line in std::io::BufReader::new(o).lines().map_while(Result::ok) {
                if line.starts_with('{') {
                    out.summary_at = Some(Instant::now());
                }
                out.text.push_str(&line);
                out.text.push('\n');
            }
        }
        let _ = std::fs::write(log, &out.text);
        out
    })
}

/// The JSON summary at the end of a child's stdout.
pub fn last_json(out: &str) -> anyhow::Result<serde_json::Value> {
    let start = out.rfind("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&out[start..]).with_context(|| format!("no summary in: {out}"))
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(sorted[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(51.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn isolated_renames_everything_shared() {
        let base = Loaded {
            config: crate::config::PipelineConfig::default(),
            profile: "local".into(),
            file: "pipeline.yaml".into(),
        };
        let l = isolated(&base, "x-1", "test");
        let t = &l.config.topics;
        assert_eq!(t.ride_events.name, "ride-events-x-1");
        assert_eq!(t.late_events.name, "ride-events-late-x-1");
        assert_eq!(l.config.clickhouse.database, "test_x_1");
        assert_eq!(l.config.aggregation.group_id, "agg-x-1");
        assert_eq!(l.config.ingest.group_id, "ingest-x-1");
    }
}
