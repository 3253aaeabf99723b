//! Benchmarks run against the real local stack (`ridectl bench ...`), and the
//! deterministic synthetic events they (and the integration tests) use.
pub mod aggregate;
pub mod spark;
pub mod synth;
