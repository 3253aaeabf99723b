//! `ridectl query NAME | --list | sql "SELECT ..."`.

use std::time::Duration;

use clap::Args;

use super::GlobalArgs;
use crate::exit;
use crate::query::render::{self, QueryFormat};
use crate::query::{self, Params, ResultSet};
use crate::time::{now_millis, parse_iso8601};
use crate::units::HumanDuration;

/// Run a named query (sql/queries/NAME.sql) or ad-hoc SQL.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl query --list
  ridectl query city-stats                       last hour, all cities
  ridectl query cancellations --since 30m --city berlin --city prague
  ridectl query rides-per-minute --from 2026-11-26T10:00:00Z --to 2026-11-26T11:00:00Z --format csv
  ridectl query rides-per-minute --since 7d --step 1h   hourly buckets (default: 10m for 7d)
  ridectl query city-stats --watch 10s           refresh in place until Ctrl-C
  ridectl query sql \"SELECT city, count() FROM ride_events GROUP BY city\" --format json

City names are always bound parameters, never spliced into SQL.")]
pub struct QueryArgs {
    /// Query name (see --list), or `sql` followed by the SQL text.
    name: Option<String>,
    /// The SQL text, after `sql`.
    sql: Option<String>,
    /// List the named queries.
    #[arg(long)]
    list: bool,
    /// Time range: from this long ago until now.
    #[arg(long, default_value = "1h", conflicts_with = "from")]
    since: HumanDuration,
    /// Time range start (ISO-8601, e.g. 2026-11-26T10:00:00Z).
    #[arg(long, value_parser = parse_time)]
    from: Option<i64>,
    /// Time range end (ISO-8601; default now).
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    /// Only this city (repeatable).
    #[arg(long = "city")]
    cities: Vec<String>,
    /// Bucket of the per-minute series (whole minutes, e.g. 5m, 1h); default: 1m up
    /// to a day, then the smallest round step that keeps 1,440 buckets or fewer.
    #[arg(long, value_parser = parse_step)]
    step: Option<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
    /// Re-run every interval, refreshing the screen, until Ctrl-C.
    #[arg(long)]
    watch: Option<HumanDuration>,
    /// Directory of the named queries.
    #[arg(long, default_value = "sql/queries")]
    dir: std::path::PathBuf,
}

fn parse_step(s: &str) -> Result<u32, String> {
    let d: HumanDuration = s.parse()?;
    let ms = d.as_millis_i64();
    if ms < 60_000 || ms % 60_000 != 0 {
        return Err(format!(
            "{s:?} is not a whole number of minutes (e.g. 1m, 15m, 1h)"
        ));
    }
    u32::try_from(ms / 60_000).map_err(|_| format!("{s:?} is too long"))
}

fn parse_time(s: &str) -> Result<i64, String> {
    parse_iso8601(s)
        .ok_or_else(|| format!("{s:?} is not an ISO-8601 time such as 2026-11-26T10:00:00Z"))
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: QueryArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    let dir = loaded.resolve(&args.dir);
    if args.list {
        for q in query::list(&dir)? {
            println!("{:<18} {}", q.name, q.description);
        }
        return Ok(exit::OK);
    }
    let Some(name) = args.name.clone() else {
        return exit::usage(
            "name a query (see `ridectl query --list`) or use `ridectl query sql \"SELECT ...\"`",
        );
    };
    let sql = if name == "sql" {
        match &args.sql {
            Some(s) => s.clone(),
            None => {
                return exit::usage("`ridectl query sql` needs the SQL text as its next argument");
            }
        }
    } else {
        if args.sql.is_some() {
            return exit::usage(format!("unexpected argument after the query name {name:?}"));
        }
        query::find(&dir, &name)?.sql
    };
    if let Some(w) = args.watch
        && w.get() < Duration::from_millis(200)
    {
        return exit::usage("--watch must be at least 200ms");
    }
    let cfg = &loaded.config;
    let threshold = cfg.alerts.rules.first().map_or(0.30, |r| r.threshold);
    loop {
        let to = args.to.unwrap_or_else(now_millis);
        let from = args.from.unwrap_or(to - args.since.as_millis_i64());
        if from >= to {
            return exit::usage("--from must be before --to");
        }
        let mut params = Params::new(from, to, args.cities.clone(), threshold);
        if let Some(step) = args.step {
            params.step_minutes = step;
        }
        let rs = query::run_sql(&cfg.clickhouse, &sql, &params).await?;
        let lag = if name == "freshness" {
            Some(lag_rows(cfg).await?)
        } else {
            None
        };
        if args.watch.is_some() && args.format == QueryFormat::Table {
            print!("\x1b[2J\x1b[H");
            println!(
                "ridectl query {name} — every {} (Ctrl-C to stop)",
                args.watch.unwrap_or_default()
            );
        }
        print_result(&rs, lag.as_ref(), args.format, threshold)?;
        match args.watch {
            Some(every) => tokio::select! {
                _ = tokio::time::sleep(every.get()) => {}
                _ = tokio::signal::ctrl_c() => return Ok(exit::OK),
            },
            None => return Ok(exit::OK),
        }
    }
}

async fn lag_rows(cfg: &crate::config::PipelineConfig) -> anyhow::Result<ResultSet> {
    let mut rs = ResultSet {
        columns: vec!["consumer_group".into(), "topic".into(), "lag".into()],
        types: vec!["String".into(), "String".into(), "Int64".into()],
        ..ResultSet::default()
    };
    for l in query::pipeline_lag(cfg).await? {
        rs.rows
            .push(vec![l.consumer_group.into(), l.topic.into(), l.lag.into()]);
    }
    Ok(rs)
}

fn print_result(
    rs: &ResultSet,
    lag: Option<&ResultSet>,
    format: QueryFormat,
    threshold: f64,
) -> anyhow::Result<()> {
    match format {
        QueryFormat::Table => {
            println!(
                "{}",
                render::table(rs, threshold, crate::output::color_enabled())
            );
            if let Some(l) = lag {
                println!("{}", render::table(l, threshold, false));
            }
        }
        QueryFormat::Json => match lag {
            Some(l) => crate::output::print_json(
                &serde_json::json!({"freshness": render::json(rs), "consumer_lag": render::json(l)}),
            )?,
            None => crate::output::print_json(&render::json(rs))?,
        },
        QueryFormat::Csv => {
            print!("{}", render::csv(rs));
            if let Some(l) = lag {
                print!("\n{}", render::csv(l));
            }
        }
    }
    Ok(())
}
