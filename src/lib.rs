//! ridectl: a real-time ride analytics pipeline on Kafka and ClickHouse.
//!
//! The library mirrors the pipeline: [`config`] (pipeline.yaml), [`events`] (the wire
//! schema), [`kafka`] (clients and topic provisioning), [`clickhouse`] (client and
//! schema migrations), [`local`] (the local real stack), [`generate`] (the traffic
//! generator), [`grafana`] (the dashboard model and the plugin's macros),
//! [`dashboard`] (`ridectl dashboard`: the Grafana dashboard served live), [`ingest`]
//! and [`query`] (raw events in ClickHouse), [`alerts`] (alert rules and PagerDuty),
//! [`bench`] (benchmarks), [`verify`] (end-to-end checks), [`dlq`] (inspecting and
//! replaying dead letters), and one module per command under
//! [`cli`]. The binary only parses arguments and calls [`cli::run`].

#![warn(missing_docs)]

pub mod aggregate;
pub mod alerts;
pub mod bench;
pub mod cli;
pub mod clickhouse;
pub mod config;
pub mod dashboard;
pub mod dlq;
pub mod events;
pub mod exit;
pub mod generate;
pub mod grafana;
pub mod ingest;
pub mod kafka;
pub mod local;
pub mod output;
pub mod query;
pub mod shutdown;
pub mod spark;
pub mod throttle;
pub mod time;
pub mod units;
pub mod verify;
