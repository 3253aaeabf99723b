//! Benchmarks of the pipeline's parts against the local stack (`ridectl bench ...`).
//! Each benchmark measures, prints a table (or JSON) and leaves nothing behind.
//! Results are recorded in BENCHMARKS.md; none of this is a timed test. [`synth`]
//! makes the deterministic synthetic events some of them (and tests) use.

pub mod aggregate;
pub mod e2e;
pub mod e2e_browser;
pub mod generate;
pub mod harness;
pub mod ingest;
pub mod query;
pub mod spark;
pub mod synth;

use std::time::Duration;

/// CPU time (user + system) used so far by this process, or by its waited-for
/// children.
pub fn cpu_time(children: bool) -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let who = if children {
        UsageWho::RUSAGE_CHILDREN
    } else {
        UsageWho::RUSAGE_SELF
    };
    getrusage(who).map_or(Duration::ZERO, |u| {
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec().max(0) as u64)
                + Duration::from_micros(t.tv_usec().max(0) as u64)
        };
        tv(u.user_time()) + tv(u.system_time())
    })
}
