//! `ridectl config validate|show`.

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::output::{self, Format};

/// Check or print pipeline.yaml.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ridectl config validate\n  ridectl config show --profile prod --format json"
)]
pub struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Check the file; list every problem with its line and column (exit 78 if any).
    Validate,
    /// Print the effective configuration (profile merged, variables expanded, secrets masked).
    Show {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Runs the subcommand.
pub fn run(global: &GlobalArgs, args: ConfigArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    match args.action {
        ConfigAction::Validate => {
            println!(
                "{}: valid (profile {})",
                loaded.file.display(),
                loaded.profile
            );
        }
        ConfigAction::Show {
            format: Format::Json,
        } => output::print_json(&loaded.config)?,
        ConfigAction::Show {
            format: Format::Table,
        } => {
            println!("# {} (profile {})", loaded.file.display(), loaded.profile);
            print!("{}", serde_yaml::to_string(&loaded.config)?);
        }
    }
    Ok(crate::exit::OK)
}
