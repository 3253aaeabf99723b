//! The ClickHouse-compatible HTTP endpoint over chDB (`scripts/chdb_server.py`).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{ComponentStatus, Paths, process};
use crate::config::{LocalConfig, PipelineConfig};

/// Component name (pid and log file).
pub const NAME: &str = "clickhouse";

/// Starts the endpoint unless it is running; `tls` (certificate and key PEM files)
/// makes it serve HTTPS.
pub fn start(
    paths: &Paths,
    local: &LocalConfig,
    tls: Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<()> {
    if process::running(&paths.pid(NAME)).is_some() {
        return Ok(());
    }
    let python = paths.python();
    if !python.exists() {
        bail!(
            "the Python virtualenv with chDB is missing ({}); run scripts/setup.sh first",
            python.display()
        );
    }
    let data = paths.state.join("clickhouse");
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let mut cmd = Command::new(&python);
    cmd.arg(paths.project.join("scripts/chdb_server.py"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &local.clickhouse_port.to_string(),
        ])
        .arg("--path")
        .arg(&data);
    let users = paths.state.join("clickhouse-users.json");
    if users.exists() {
        cmd.arg("--users-file").arg(&users);
    }
    if let Some((cert, key)) = tls {
        for f in [&cert, &key] {
            if !f.is_file() {
                bail!(
                    "local.clickhouse_tls: {} does not exist (a PEM file is needed)",
                    f.display()
                );
            }
        }
        cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    process::spawn(cmd, &paths.log(NAME), &paths.pid(NAME), &paths.marker())?;
    Ok(())
}

/// Waits until the endpoint answers `SELECT version()`.
pub async fn wait_ready(
    paths: &Paths,
    cfg: &PipelineConfig,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if crate::clickhouse::version(&cfg.clickhouse, Duration::from_secs(2))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if process::running(&paths.pid(NAME)).is_none() {
            bail!(
                "the ClickHouse endpoint exited during start-up; last lines of {}:\n{}",
                paths.log(NAME).display(),
                process::tail(&paths.log(NAME), 30)
            );
        }
        if start.elapsed() > timeout {
            bail!(
                "the ClickHouse endpoint did not answer within {timeout:?}; last lines of {}:\n{}",
                paths.log(NAME).display(),
                process::tail(&paths.log(NAME), 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The endpoint's status.
pub async fn status(paths: &Paths, cfg: &PipelineConfig) -> ComponentStatus {
    let pid = process::running(&paths.pid(NAME));
    let answer = crate::clickhouse::version(&cfg.clickhouse, Duration::from_secs(2)).await;
    let (state, detail) = match (&answer, pid) {
        (Ok(v), _) => ("up", format!("ClickHouse {v} (chDB)")),
        (Err(_), Some(_)) => ("starting", "running, not answering yet".to_string()),
        (Err(_), None) => ("down", String::new()),
    };
    ComponentStatus {
        name: NAME.into(),
        pid,
        address: format!(
            "{}://127.0.0.1:{}",
            if cfg.local.clickhouse_tls.is_some() {
                "https"
            } else {
                "http"
            },
            cfg.local.clickhouse_port
        ),
        state,
        detail,
    }
}
