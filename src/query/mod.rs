//! `ridectl query`: named queries kept as SQL files in `sql/queries/`, run with
//! bound parameters (never spliced into the SQL) on the read-only ClickHouse user.
//!
//! Every named query may use these parameters: `{from:DateTime64(3, 'UTC')}`,
//! `{to:DateTime64(3, 'UTC')}`, `{cities:Array(String)}` (empty: all cities) and
//! `{threshold:Float64}` (the alert threshold).

pub mod render;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::clickhouse::Access;
use crate::config::ClickHouseConfig;
use crate::time::{EpochMillis, format_clickhouse};

/// A named query from `sql/queries/NAME.sql`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NamedQuery {
    /// File stem (`city-stats`).
    pub name: String,
    /// The first comment line of the file.
    pub description: String,
    /// The SQL text.
    #[serde(skip)]
    pub sql: String,
}

/// Reads every `*.sql` of `dir`, sorted by name.
pub fn list(dir: &Path) -> anyhow::Result<Vec<NamedQuery>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let description = sql
            .lines()
            .find_map(|l| l.trim().strip_prefix("--"))
            .map(|d| d.trim().to_string())
            .unwrap_or_default();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(NamedQuery {
            name,
            description,
            sql,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Finds a named query, or says which exist.
pub fn find(dir: &Path, name: &str) -> anyhow::Result<NamedQuery> {
    let all = list(dir)?;
    let names: Vec<String> = all.iter().map(|q| q.name.clone()).collect();
    all.into_iter().find(|q| q.name == name).ok_or_else(|| {
        crate::exit::UsageError(format!(
            "no query named {name:?}; available: {} (see `ridectl query --list`)",
            names.join(", ")
        ))
        .into()
    })
}

/// The bound parameters of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Start of the time range (inclusive).
    pub from: EpochMillis,
    /// End of the time range (exclusive).
    pub to: EpochMillis,
    /// Cities to keep (empty: all).
    pub cities: Vec<String>,
    /// Alert threshold on cancellation rates.
    pub threshold: f64,
}

/// A result set: column names and types, and rows as JSON values.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ResultSet {
    /// Column names.
    pub columns: Vec<String>,
    /// ClickHouse type of each column.
    pub types: Vec<String>,
    /// Rows, one value per column.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Time the query took, in milliseconds.
    pub elapsed_ms: f64,
}

impl ResultSet {
    /// The index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Runs SQL with the parameters bound; returns the rows.
pub async fn run_sql(
    ch: &ClickHouseConfig,
    sql: &str,
    params: &Params,
) -> anyhow::Result<ResultSet> {
    let client = crate::clickhouse::try_client(ch, Access::Read)?;
    let started = Instant::now();
    let mut cursor = client
        .query_raw(sql)
        .param("from", format_clickhouse(params.from))
        .param("to", format_clickhouse(params.to))
        .param("cities", &params.cities)
        .param("threshold", params.threshold)
        .with_setting("output_format_json_quote_64bit_integers", "0")
        .fetch_bytes("JSONCompactEachRowWithNamesAndTypes")?;
    let bytes = cursor.collect().await.map_err(|e| {
        if crate::clickhouse::is_auth_error(&e) {
            anyhow::Error::new(crate::clickhouse::auth_failed(ch, Access::Read))
        } else {
            anyhow::Error::new(e).context("query failed")
        }
    })?;
    let mut rs = parse_compact(&bytes)?;
    rs.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(rs)
}

/// Parses `JSONCompactEachRowWithNamesAndTypes` output.
pub fn parse_compact(bytes: &[u8]) -> anyhow::Result<ResultSet> {
    let mut lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let mut next_strings = |what: &str| -> anyhow::Result<Vec<String>> {
        match lines.next() {
            Some(l) => serde_json::from_slice(l).with_context(|| format!("bad {what} line")),
            None => Ok(Vec::new()),
        }
    };
    let columns = next_strings("names")?;
    let types = next_strings("types")?;
    if columns.len() != types.len() {
        bail!("names and types differ in length");
    }
    let rows = lines
        .map(|l| serde_json::from_slice::<Vec<serde_json::Value>>(l).context("bad row"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(ResultSet {
        columns,
        types,
        rows,
        elapsed_ms: 0.0,
    })
}

/// Consumer lag of one group: (topic, partition, lag) for every partition of `topics`.
pub fn consumer_lag(
    k: &crate::config::KafkaConfig,
    group: &str,
    topics: &[&str],
    timeout: Duration,
) -> anyhow::Result<Vec<(String, i32, i64)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let mut cc = crate::kafka::client_config(k, crate::kafka::Role::Consumer);
    cc.set("group.id", group).set("enable.auto.commit", "false");
    let c: BaseConsumer = cc.create().context("cannot create a Kafka client")?;
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let md = c
            .fetch_metadata(Some(t), timeout)
            .with_context(|| format!("metadata of {t}"))?;
        for topic in md.topics().iter().filter(|x| x.error().is_none()) {
            for p in topic.partitions() {
                tpl.add_partition(t, p.id());
            }
        }
    }
    let committed = crate::kafka::committed_offsets(&c, tpl, timeout)?;
    let mut out = Vec::new();
    for e in committed.elements() {
        let (low, high) = c.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        out.push((e.topic().to_string(), e.partition(), (high - at).max(0)));
    }
    Ok(out)
}
