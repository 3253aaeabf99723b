//! Open incidents, persisted in `alerts.state_file` so that no incident is triggered
//! twice, also across restarts of `ridectl alerts watch` and between `check` runs.
//!
//! The file is JSON, rewritten atomically (a temporary file in the same directory,
//! fsynced, then renamed over the old one), so a crash leaves either the old or the
//! new state, never a torn file. A lock file next to it (`flock`) keeps two `ridectl
//! alerts` processes from evaluating — and paging — at the same time.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// The incidents ridectl has triggered and not yet resolved, by dedup key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Open incidents by PagerDuty dedup key.
    pub incidents: BTreeMap<String, Incident>,
}

/// One open incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// The rule that fired.
    pub rule: String,
    /// The city it fired for.
    pub city: String,
    /// Evaluation time of the trigger (ISO-8601).
    pub triggered_at: String,
    /// The cancellation rate over the window when it fired.
    pub rate: f64,
}

impl AlertState {
    /// An empty state.
    pub fn new() -> AlertState {
        AlertState {
            version: STATE_VERSION,
            incidents: BTreeMap::new(),
        }
    }

    /// True when the incident `key` is open.
    pub fn is_open(&self, key: &str) -> bool {
        self.incidents.contains_key(key)
    }
}

/// Reads the state file; a missing file is an empty state. A file that cannot be read
/// is an error naming it: starting over silently would page again for open incidents.
pub fn load(path: &Path) -> anyhow::Result<AlertState> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AlertState::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let state: AlertState = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a ridectl alert state file; move it away to start over \
             (open incidents will be triggered again)",
            path.display()
        )
    })?;
    if state.version != STATE_VERSION {
        bail!(
            "{} has state format version {}, this ridectl reads version {STATE_VERSION}",
            path.display(),
            state.version
        );
    }
    Ok(state)
}

/// Writes the state file atomically: temporary file, fsync, rename, fsync of the
/// directory.
pub fn save(path: &Path, state: &AlertState) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "alerts-state.json".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(state)?)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::from(e).context(format!("cannot write {}", path.display()))
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An exclusive lock on the state file (`<state_file>.lock`), held while evaluating
/// and sending. Released on drop.
#[derive(Debug)]
pub struct StateLock {
    _lock: nix::fcntl::Flock<File>,
}

impl StateLock {
    /// Takes the lock, or fails at once naming the other holder's file.
    pub fn acquire(state_file: &Path) -> anyhow::Result<StateLock> {
        let dir = parent_dir(state_file);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut lock_path = state_file.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(StateLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
                "another `ridectl alerts` is evaluating with the state file {} (lock {} is held)",
                state_file.display(),
                lock_path.display()
            ),
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", lock_path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ridectl-state-{tag}-{}-{}",
            std::process::id(),
            crate::time::now_millis()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_file_is_empty_and_round_trips() {
        let dir = temp_dir("rt");
        let path = dir.join("sub").join("state.json");
        assert_eq!(load(&path).unwrap(), AlertState::new());
        let mut s = AlertState::new();
        s.incidents.insert(
            "k".into(),
            Incident {
                rule: "r".into(),
                city: "berlin".into(),
                triggered_at: "2026-01-01T00:00:00.000Z".into(),
                rate: 0.5,
            },
        );
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), s);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = temp_dir("corrupt");
        let path = dir.join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(err.contains("state.json"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = temp_dir("lock");
        let path = dir.join("state.json");
        let first = StateLock::acquire(&path).unwrap();
        let err = StateLock::acquire(&path).unwrap_err().to_string();
        assert!(err.contains("another `ridectl alerts`"), "{err}");
        drop(first);
        StateLock::acquire(&path).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
