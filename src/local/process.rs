//! Background processes of the local stack: started in their own process group
//! (a Ctrl-C in the terminal does not reach them), output to a log file, and a pid
//! file. A pid file names its process only while `/proc/PID/cmdline` still contains
//! the marker it was written with, so `local down` never signals a stranger that
//! reused the pid.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Starts `cmd` in the background; returns its pid.
pub fn spawn(mut cmd: Command, log: &Path, pid_file: &Path, marker: &str) -> anyhow::Result<u32> {
    for p in [log, pid_file] {
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open the log {}", log.display()))?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let pid = child.id();
    fs::write(pid_file, format!("{pid}\n{marker}\n"))
        .with_context(|| format!("cannot write {}", pid_file.display()))?;
    Ok(pid)
}

/// The pid in `pid_file` if that process is alive and still ours.
pub fn running(pid_file: &Path) -> Option<u32> {
    let text = fs::read_to_string(pid_file).ok()?;
    let mut lines = text.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    let marker = lines.next().unwrap_or_default();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    // A zombie has an empty command line: it is gone for our purposes.
    let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = state
        .rsplit(')')
        .next()
        .is_some_and(|s| s.trim_start().starts_with('Z'));
    (cmdline.contains(marker) && !zombie).then_some(pid)
}

/// Sends `signal` to the process in `pid_file`, if it is running.
pub fn signal(pid_file: &Path, signal: Signal) -> anyhow::Result<bool> {
    match running(pid_file) {
        Some(pid) => {
            kill(Pid::from_raw(pid as i32), signal)
                .with_context(|| format!("cannot signal pid {pid}"))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Stops the process: SIGTERM, then SIGKILL after `grace`. Removes the pid file.
/// Returns whether a process was running.
pub fn stop(pid_file: &Path, grace: Duration) -> anyhow::Result<bool> {
    let Some(pid) = running(pid_file) else {
        let _ = fs::remove_file(pid_file);
        return Ok(false);
    };
    let target = Pid::from_raw(pid as i32);
    // SIGCONT first, in case a fault test left it stopped.
    let _ = kill(target, Signal::SIGCONT);
    kill(target, Signal::SIGTERM).with_context(|| format!("cannot stop pid {pid}"))?;
    let start = Instant::now();
    while running(pid_file).is_some() {
        if start.elapsed() > grace {
            let _ = kill(target, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = fs::remove_file(pid_file);
    Ok(true)
}

/// The last `n` lines of a log file (for error messages).
pub fn tail(log: &Path, n: usize) -> String {
    let Ok(f) = fs::File::open(log) else {
        return format!("(no log at {})", log.display());
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
