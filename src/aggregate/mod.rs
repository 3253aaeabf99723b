//! `ridectl aggregate`: the native windowed aggregation worker.
pub mod engine;
pub mod window;
