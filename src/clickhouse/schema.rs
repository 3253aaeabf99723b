//! Schema migrations: the ordered `.sql` files of `sql/schema/`, applied once each
//! and recorded with their SHA-256 in `schema_migrations`.
//!
//! An applied file that changed is refused (write a new file instead). The
//! Kafka-engine variant of the seed design lives in `sql/optional/` and is never
//! applied by `schema apply`: chDB cannot run Kafka-engine consumers.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ClickHouseConfig;

/// One migration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Migration {
    /// File name (`001_ride_events.sql`).
    pub name: String,
    /// Hex SHA-256 of the file's bytes.
    pub checksum: String,
    /// The statements in the file.
    #[serde(skip)]
    pub statements: Vec<String>,
}

/// A migration's state in the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MigrationStatus {
    /// File name.
    pub name: String,
    /// `applied`, `pending` or `changed` (applied, but the file differs now).
    pub state: &'static str,
    /// When it was applied, if it was.
    pub applied_at: Option<String>,
}

#[derive(Row, Deserialize)]
struct AppliedRow {
    name: String,
    checksum: String,
    applied_at: String,
}

#[derive(Row, Serialize)]
struct NewRow<'a> {
    name: &'a str,
    checksum: &'a str,
}

/// Reads the migrations in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<Migration>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the schema directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            let text = String::from_utf8(bytes.clone())
                .with_context(|| format!("{} is not UTF-8", p.display()))?;
            Ok(Migration {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                checksum: hex(&Sha256::digest(&bytes)),
                statements: split_statements(&text),
            })
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits SQL text on `;` outside quotes and comments; drops empty statements.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    cur.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    for n in chars.by_ref() {
                        if n == '\n' {
                            cur.push('\n');
                            break;
                        }
                    }
                }
                ';' => {
                    if !cur.trim().is_empty() {
                        out.push(cur.trim().to_string());
                    }
                    cur.clear();
                }
                _ => cur.push(c),
            },
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

async fn ensure_bookkeeping(c: &ClickHouseConfig) -> anyhow::Result<clickhouse::Client> {
    super::try_server_client(c)?
        .query_raw(&format!("CREATE DATABASE IF NOT EXISTS `{}`", c.database))
        .execute()
        .await
        .with_context(|| format!("cannot create database {}", c.database))?;
    let client = super::try_client(c, super::Access::Write)?;
    client
        .query_raw(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) \
             ENGINE = MergeTree ORDER BY name",
        )
        .execute()
        .await
        .context("cannot create schema_migrations")?;
    Ok(client)
}

async fn applied(client: &clickhouse::Client) -> anyhow::Result<Vec<AppliedRow>> {
    client
        .query("SELECT name, checksum, toString(applied_at) AS applied_at FROM schema_migrations ORDER BY name")
        .fetch_all::<AppliedRow>()
        .await
        .context("cannot read schema_migrations")
}

/// The state of every migration file.
pub async fn status(
    c: &ClickHouseConfig,
    migrations: &[Migration],
) -> anyhow::Result<Vec<MigrationStatus>> {
    let client = ensure_bookkeeping(c).await?;
    let done = applied(&client).await?;
    Ok(migrations
        .iter()
        .map(|m| {
            let row = done.iter().find(|r| r.name == m.name);
            MigrationStatus {
                name: m.name.clone(),
                state: match row {
                    None => "pending",
                    Some(r) if r.checksum == m.checksum => "applied",
                    Some(_) => "changed",
                },
                applied_at: row.map(|r| r.applied_at.clone()),
            }
        })
        .collect())
}

/// Applies the pending migrations in order; returns the names applied. Refuses to
/// run anything if an applied file changed.
pub async fn apply(c: &ClickHouseConfig, migrations: &[Migration]) -> anyhow::Result<Vec<String>> {
    let client = ensure_bookkeeping(c).await?;
    let done = applied(&client).await?;
    let changed: Vec<&str> = migrations
        .iter()
        .filter(|m| {
            done.iter()
                .any(|r| r.name == m.name && r.checksum != m.checksum)
        })
        .map(|m| m.name.as_str())
        .collect();
    if !changed.is_empty() {
        bail!(
            "already-applied schema files were changed: {} — applied migrations are immutable; \
             revert the change and add a new numbered file in sql/schema/ instead",
            changed.join(", ")
        );
    }
    let mut ran = Vec::new();
    for m in migrations
        .iter()
        .filter(|m| !done.iter().any(|r| r.name == m.name))
    {
        for (i, stmt) in m.statements.iter().enumerate() {
            client
                .query_raw(stmt)
                .execute()
                .await
                .with_context(|| format!("{}: statement {} failed", m.name, i + 1))?;
        }
        let mut insert = client.insert::<NewRow<'_>>("schema_migrations").await?;
        insert
            .write(&NewRow {
                name: &m.name,
                checksum: &m.checksum,
            })
            .await?;
        insert
            .end()
            .await
            .with_context(|| format!("cannot record {}", m.name))?;
        ran.push(m.name.clone());
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_outside_quotes_and_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (x String DEFAULT ';');\n\nSELECT 'it''s; fine' ; ;";
        let s = split_statements(sql);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("CREATE TABLE a"));
        assert!(s[0].contains("';'"));
        assert_eq!(s[1], "SELECT 'it''s; fine'");
    }

    #[test]
    fn shipped_schema_files_load_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/schema");
        let m = load_dir(&dir).unwrap();
        assert!(!m.is_empty());
        assert!(m.windows(2).all(|w| w[0].name < w[1].name));
        assert!(
            m.iter()
                .all(|x| !x.statements.is_empty() && x.checksum.len() == 64)
        );
    }
}
