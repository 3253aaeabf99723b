//! `ridectl schema apply|status`.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::clickhouse::{self, schema};
use crate::output::{self, Format};

/// Apply the ClickHouse schema in sql/schema/.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl schema apply              create the database and tables (idempotent)
  ridectl schema status --format json")]
pub struct SchemaArgs {
    #[command(subcommand)]
    action: SchemaAction,
    /// Directory of ordered migration files.
    #[arg(long, global = true, default_value = "sql/schema")]
    dir: std::path::PathBuf,
}

#[derive(Debug, Subcommand)]
enum SchemaAction {
    /// Apply the files not applied yet, in order.
    Apply,
    /// Show which files are applied, pending or changed.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: SchemaArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    let ch = &loaded.config.clickhouse;
    let dir = loaded.resolve(&args.dir);
    let migrations = schema::load_dir(&dir)?;
    clickhouse::version(ch, Duration::from_secs(10)).await?;
    match args.action {
        SchemaAction::Apply => {
            let ran = schema::apply(ch, &migrations).await?;
            if ran.is_empty() {
                println!("schema is up to date ({} files applied)", migrations.len());
            } else {
                for name in &ran {
                    println!("applied {name}");
                }
            }
        }
        SchemaAction::Status { format } => {
            let st = schema::status(ch, &migrations).await?;
            if format == Format::Json {
                output::print_json(&st)?;
            } else {
                let mut t = output::table(&["file", "state", "applied at"], &[]);
                for s in &st {
                    t.add_row(vec![
                        s.name.clone(),
                        s.state.to_string(),
                        s.applied_at.clone().unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
            if st.iter().any(|s| s.state == "changed") {
                return Ok(crate::exit::FAILURE);
            }
        }
    }
    Ok(crate::exit::OK)
}
