//! `ridectl topics create|list|describe|delete`.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::kafka::{self, topics};
use crate::output::{self, Format};

/// Create, inspect and repair the Kafka topics.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ridectl topics create --dry-run        show what would change
  ridectl topics create                  create missing topics, repair drift
  ridectl topics describe ride-events --format json
  ridectl topics delete ride-events --yes")]
pub struct TopicsArgs {
    #[command(subcommand)]
    action: TopicsAction,
}

#[derive(Debug, Subcommand)]
enum TopicsAction {
    /// Create the topics of pipeline.yaml, add partitions and repair config drift.
    Create {
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List the pipeline's topics and whether they exist.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Partitions, replication and non-default configs of one topic or all.
    Describe {
        /// Topic name (default: every topic of pipeline.yaml).
        name: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs the subcommand.
pub async fn run(global: &GlobalArgs, args: TopicsArgs) -> anyhow::Result<u8> {
    let loaded = global.load()?;
    let cfg = &loaded.config;
    let timeout = cfg.kafka.connect_timeout.get();
    let wanted = cfg.topics.resolved();
    let names: Vec<String> = wanted.iter().map(|t| t.name.clone()).collect();
    // Fail fast with a clear message (and exit 69) when Kafka is not there.
    let kcfg = cfg.kafka.clone();
    tokio::task::spawn_blocking(move || kafka::cluster_info(&kcfg, timeout)).await??;
    let admin = kafka::admin(&cfg.kafka)?;
    match args.action {
        TopicsAction::Create { dry_run, format } => {
            let (actual, brokers) = topics::describe(&admin, &names, timeout).await?;
            let actions = topics::plan(&wanted, &actual, brokers)?;
            if !dry_run {
                topics::apply(&admin, &actions, timeout).await?;
            }
            print_plan(&actions, dry_run, format)?;
        }
        TopicsAction::List { format } => {
            let (actual, _) = topics::describe(&admin, &names, timeout).await?;
            let rows: Vec<serde_json::Value> = wanted
                .iter()
                .map(|t| {
                    serde_json::json!({"role": t.role, "name": t.name, "exists": actual.contains_key(&t.name),
                        "partitions": actual.get(&t.name).map(|s| s.partitions)})
                })
                .collect();
            if format == Format::Json {
                output::print_json(&rows)?;
            } else {
                let mut t = output::table(&["role", "topic", "exists", "partitions"], &[3]);
                for r in &rows {
                    t.add_row(vec![
                        r["role"].as_str().unwrap_or_default().to_string(),
                        r["name"].as_str().unwrap_or_default().to_string(),
                        r["exists"].to_string(),
                        r["partitions"]
                            .as_i64()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
        }
        TopicsAction::Describe { name, format } => {
            let names = name.map_or(names, |n| vec![n]);
            let (actual, _) = topics::describe(&admin, &names, timeout).await?;
            let missing: Vec<&String> = names.iter().filter(|n| !actual.contains_key(*n)).collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "no such topic: {} (create it with `ridectl topics create`)",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let states: Vec<&topics::TopicState> =
                names.iter().filter_map(|n| actual.get(n)).collect();
            if format == Format::Json {
                if states.len() == 1 {
                    output::print_json(states[0])?
                } else {
                    output::print_json(&states)?
                }
            } else {
                let mut t =
                    output::table(&["topic", "partitions", "replication", "configs"], &[1, 2]);
                for s in states {
                    let cfgs: Vec<String> =
                        s.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    t.add_row(vec![
                        s.name.clone(),
                        s.partitions.to_string(),
                        s.replication_factor.to_string(),
                        cfgs.join("\n"),
                    ]);
                }
                println!("{t}");
            }
        }
        TopicsAction::Delete { name, yes } => {
            if !yes {
                return crate::exit::usage(format!(
                    "deleting {name} loses its data: add --yes to confirm"
                ));
            }
            topics::delete(&admin, &name, timeout).await?;
            println!("deleted {name}");
        }
    }
    // Give librdkafka a moment to close cleanly.
    drop(admin);
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(crate::exit::OK)
}

fn print_plan(actions: &[topics::Action], dry_run: bool, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return output::print_json(&serde_json::json!({"dry_run": dry_run, "actions": actions}));
    }
    let verb = |done: &'static str, planned: &'static str| if dry_run { planned } else { done };
    for a in actions {
        match a {
            topics::Action::UpToDate { name } => println!("{name}: up to date"),
            topics::Action::Create { topic } => println!(
                "{}: {} ({} partitions, replication factor {})",
                topic.name,
                verb("created", "would create"),
                topic.partitions,
                topic.replication_factor
            ),
            topics::Action::Update {
                name,
                add_partitions,
                config_changes,
                ..
            } => {
                println!("{name}: {}", verb("updated", "would update"));
                if let Some((from, to)) = add_partitions {
                    println!("  partitions: {from} → {to}");
                }
                for c in config_changes {
                    println!(
                        "  {}: {} → {}",
                        c.key,
                        c.from.as_deref().unwrap_or("(default)"),
                        c.to
                    );
                }
            }
        }
    }
    if actions.iter().all(|a| a.is_noop()) {
        println!("nothing to do");
    }
    Ok(())
}
