//! Benchmarks run against the real local stack (`ridectl bench ...`).
pub mod synth;
