//! `ridectl dashboard`: the Grafana dashboard of grafana/dashboards/, live in a
//! browser, served by ridectl (see [`crate::dashboard`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::GlobalArgs;
use crate::clickhouse::Access;
use crate::dashboard::{self, Auth, Options, Server};
use crate::exit;
use crate::shutdown::Shutdown;
use crate::units::HumanDuration;

/// Serve the live ops dashboard (the Grafana dashboard, rendered by ridectl).
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl dashboard                                  http://127.0.0.1:3000/
  ridectl dashboard --listen 127.0.0.1:8080 --open   another port; open a browser
  RIDECTL_DASHBOARD_AUTH='ops:${DASH_PASSWORD}' ridectl dashboard --listen 0.0.0.0:3000

The panels, layout, SQL, units, thresholds and refresh are those of the Grafana
dashboard (grafana/dashboards/*.json); queries run as clickhouse.readonly_user (the
writer when none is configured). ClickHouse is polled once per second for new data,
for all browsers at once, and changes are pushed to them at once (server-sent
events). The browser can only ask for a panel by id with a time range and variable
values, never SQL. A non-loopback --listen requires --auth.")]
pub struct DashboardArgs {
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Open the dashboard in the default browser (xdg-open).
    #[arg(long)]
    open: bool,
    /// Require basic auth `user:password`; `${VAR}` in it is read from the
    /// environment. Required for a non-loopback --listen.
    #[arg(long, env = "RIDECTL_DASHBOARD_AUTH", hide_env_values = true)]
    auth: Option<String>,
    /// The dashboard: a JSON file, or a directory whose first *.json is used.
    #[arg(long, default_value = "grafana/dashboards")]
    dashboard: PathBuf,
    /// How often ClickHouse is asked whether there is new data.
    #[arg(long, default_value = "1s")]
    poll: HumanDuration,
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: DashboardArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    let auth = match &args.auth {
        Some(spec) => match Auth::parse(spec) {
            Ok(a) => Some(a),
            Err(e) => return exit::usage(format!("{e:#}")),
        },
        None => None,
    };
    if auth.is_none() && !args.listen.ip().is_loopback() {
        return exit::usage(format!(
            "--listen {} is not a loopback address: give --auth user:${{VAR}} (or \
             RIDECTL_DASHBOARD_AUTH) so that only you can read the dashboard",
            args.listen
        ));
    }
    if args.poll.get() < Duration::from_millis(100) {
        return exit::usage("--poll must be at least 100ms");
    }
    let file = dashboard::model::dashboard_file(&loaded.resolve(&args.dashboard))?;
    let d = dashboard::model::load(&file)?;
    for p in d.problems() {
        tracing::warn!("{}: {p} (drawn without it)", file.display());
    }
    for p in &d.panels {
        if let dashboard::PanelKind::Unsupported(t) = &p.kind {
            tracing::warn!(
                "{}: panel {} {:?} is a {t} panel: shown as not supported here",
                file.display(),
                p.id,
                p.title
            );
        }
    }
    let ch = loaded.config.clickhouse.clone();
    let (user, _) = Access::Read.user(&ch);
    let user = user.to_string();
    crate::clickhouse::version_as(&ch, Access::Read, Duration::from_secs(10)).await?;
    if ch.readonly_user.is_empty() {
        eprintln!(
            "note: clickhouse.readonly_user is not configured: the dashboard reads as {user:?}, \
             the writer (set CLICKHOUSE_READONLY_USER / CLICKHOUSE_READONLY_PASSWORD, see docs/security.md)"
        );
    }
    let shutdown = Shutdown::from_signals()?;
    let title = d.title.clone();
    let server = Server::bind(
        Options {
            listen: args.listen,
            auth,
            dashboard: d,
            clickhouse: ch.clone(),
            poll_every: args.poll.get(),
        },
        shutdown,
    )
    .await?;
    let addr = server.local_addr()?;
    let url = format!("http://{addr}/");
    println!(
        "ridectl dashboard: {title} ({}) at {url}\n  reading ClickHouse {} database {} as {user:?}; Ctrl-C to stop",
        file.display(),
        crate::clickhouse::display_url(&ch.url),
        ch.database
    );
    if args.open {
        match std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(_) => {}
            Err(e) => eprintln!("note: cannot open a browser ({e}); open {url} yourself"),
        }
    }
    server.run().await?;
    Ok(exit::OK)
}
