//! Grafana, as ridectl reads it: the typed model of the provisioning files and
//! dashboards under `grafana/` ([`model`]), and the one implementation of what
//! happens to a panel's SQL between the dashboard JSON and ClickHouse ([`macros`]:
//! dashboard variables, then the ClickHouse plugin's macros).
//!
//! The tests run every dashboard query through [`macros`] against the real endpoint;
//! the local dashboard server (`ridectl dashboard`) expands its panels with it too, so
//! Grafana in production and ridectl locally run the same SQL.

pub mod macros;
pub mod model;
