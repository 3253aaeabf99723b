//! Exit codes and the typed errors that select them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the command failed (details on stderr) |
//! | 2 | usage error: a flag or argument is wrong; nothing was done |
//! | 69 | a dependency (Kafka, ClickHouse) is unavailable |
//! | 77 | Kafka or ClickHouse refused the credentials (authentication failed) |
//! | 78 | configuration error in pipeline.yaml; nothing was done |
//! | 130 | interrupted by a second Ctrl-C |

use std::fmt;

/// Success.
pub const OK: u8 = 0;
/// Generic failure.
pub const FAILURE: u8 = 1;
/// Bad usage (same as clap's).
pub const USAGE: u8 = 2;
/// A service the command needs did not answer (`EX_UNAVAILABLE`).
pub const UNAVAILABLE: u8 = 69;
/// Kafka or ClickHouse refused the credentials (`EX_NOPERM`).
pub const AUTH: u8 = 77;
/// Bad configuration (`EX_CONFIG`).
pub const CONFIG: u8 = 78;
/// Interrupted.
pub const INTERRUPTED: u8 = 130;

/// A usage error found after parsing (a flag value clap cannot check alone).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A dependency (broker, ClickHouse) did not answer in time.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Kafka or ClickHouse refused the credentials: never retried. The message names
/// the user, the mechanism and the setting to check, never the secret.
#[derive(Debug)]
pub struct AuthFailed(pub String);

impl fmt::Display for AuthFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthFailed {}

/// Returns a usage error (exit code 2) naming the flag.
pub fn usage<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(UsageError(msg.into()).into())
}

/// The exit code for an error: the first typed error in its chain decides.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<crate::config::ConfigError>() {
            return CONFIG;
        }
        if cause.is::<UsageError>() {
            return USAGE;
        }
        if cause.is::<AuthFailed>() {
            return AUTH;
        }
        if cause.is::<Unavailable>() {
            return UNAVAILABLE;
        }
    }
    FAILURE
}
