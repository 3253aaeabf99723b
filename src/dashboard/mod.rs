//! `ridectl dashboard`: the Grafana dashboard of this repository
//! (`grafana/dashboards/*.json`), served live to a browser by ridectl itself.
//!
//! One definition, two renderers: Grafana shows the dashboard in production, ridectl
//! shows the same panels, titles, layout, SQL, units, thresholds and refresh locally,
//! with nothing else installed.
//!
//! Design:
//!
//! * [`model`] reads the dashboard with the typed Grafana model and lists what the
//!   local renderer understands; an unknown panel type becomes a "not supported here"
//!   placeholder, an unknown option a logged [`model::Problem`].
//! * [`query`] turns a browser request — a panel id, a range of the time picker and
//!   variable values, never SQL — into the panel's SQL, expanded by
//!   [`crate::grafana::macros`] (the one implementation of Grafana's variables and the
//!   ClickHouse plugin's macros). Queries run as the read-only ClickHouse user.
//! * [`server`] is a hyper 1.x HTTP/1 server: the embedded page ([`assets`]: plain
//!   JS/CSS and uPlot from npm, no CDN), the dashboard's layout, panel data, and one
//!   server-sent-event stream per browser.
//! * Fresher than Grafana's 10-second refresh: one poller task (shared by every
//!   browser, idle when none is connected) asks ClickHouse once per second for a
//!   cheap watermark — the row counts of the tables the panels read, answered from
//!   part metadata — and announces a change over SSE; browsers then re-read their
//!   panels. Panel results are cached per (panel, range, variables) for the current
//!   watermark and one second, with one query in flight per key, so ten browsers
//!   with the same view cost the queries of one.
//! * One [`crate::shutdown::Shutdown`] stops the listener, the poller and every
//!   event stream.

pub mod assets;
pub mod browser;
pub mod model;
pub mod query;
pub mod server;

pub use model::{LocalDashboard, PanelKind};
pub use server::{Auth, Options, Server};
