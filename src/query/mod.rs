//! `ridectl query`: named queries kept as SQL files in `sql/queries/`, run with
//! bound parameters (never spliced into the SQL) on the read-only ClickHouse user.
//!
//! Every named query may use these parameters: `{from:DateTime64(3, 'UTC')}`,
//! `{to:DateTime64(3, 'UTC')}`, `{cities:Array(String)}` (empty: all cities),
//! `{threshold:Float64}` (the alert threshold) and `{step:UInt32}` (minutes per
//! time bucket of a series: 1 up to a day, coarser beyond, see [`auto_step_minutes`]).

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
    /// Minutes per time bucket of the per-minute series.
    pub step_minutes: u32,
}

impl Params {
    /// Parameters for a range, with the bucket size chosen by [`auto_step_minutes`].
    pub fn new(from: EpochMillis, to: EpochMillis, cities: Vec<String>, threshold: f64) -> Self {
        Params {
            from,
            to,
            cities,
            threshold,
            step_minutes: auto_step_minutes(from, to),
        }
    }
}

/// Most buckets per city a series returns when its step is chosen automatically:
/// one day of minutes.
pub const MAX_BUCKETS: u64 = 1440;

/// The smallest "round" bucket (1, 2, 5, 10, 15, 30 minutes, 1, 2, 3, 6, 12, 24 hours)
/// that keeps a range at [`MAX_BUCKETS`] buckets or fewer: a day or less is per
/// minute, 30 days are half-hours. A series is for reading, and a month of minutes
/// (345,600 rows for 8 cities) is neither readable nor fast to transfer.
pub fn auto_step_minutes(from: EpochMillis, to: EpochMillis) -> u32 {
    const STEPS: [u32; 12] = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];
    let minutes = u64::try_from(to - from).unwrap_or(0).div_ceil(60_000);
    STEPS
        .into_iter()
        .find(|s| minutes.div_ceil(u64::from(*s)) <= MAX_BUCKETS)
        .unwrap_or(1440)
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
        .param("step", params.step_minutes)
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

/// Where one partition stands for a consumer group: its committed offset (if
/// any) and the partition's low and high watermarks.
struct PartitionOffsets {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    low: i64,
    high: i64,
}

/// The committed offsets of `group` and the watermarks of every partition of
/// `topics`, with one Kafka client.
fn partition_offsets(
    k: &crate::config::KafkaConfig,
    group: &str,
    topics: &[&str],
    timeout: Duration,
) -> anyhow::Result<Vec<PartitionOffsets>> {
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
        out.push(PartitionOffsets {
            topic: e.topic().to_string(),
            partition: e.partition(),
            committed: match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            },
            low,
            high,
        });
    }
    Ok(out)
}

/// Lag of one worker on one topic, messages.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerLag {
    /// Consumer group.
    pub consumer_group: String,
    /// Topic.
    pub topic: String,
    /// Messages not yet processed: for ingest, the offsets not committed (a
    /// commit follows every insert); for aggregate, the offsets past the position
    /// it recorded in `aggregate_progress` (its Kafka commit trails by the open
    /// windows, up to a window length: that is replay distance, not lag).
    pub lag: i64,
}

/// The lag of the ingest and aggregate workers configured in `cfg`.
pub async fn pipeline_lag(cfg: &crate::config::PipelineConfig) -> anyhow::Result<Vec<WorkerLag>> {
    let rides = cfg.topics.ride_events.name.clone();
    let locations = cfg.topics.driver_locations.name.clone();
    let (k, group) = (cfg.kafka.clone(), cfg.ingest.group_id.clone());
    let timeout = cfg.kafka.connect_timeout.get();
    let offsets = tokio::task::spawn_blocking(move || {
        partition_offsets(&k, &group, &[&rides, &locations], timeout)
    })
    .await??;
    // Messages past `at` (the low watermark when nothing is recorded).
    let behind = |o: &PartitionOffsets, at: Option<i64>| (o.high - at.unwrap_or(o.low)).max(0);
    let mut out = Vec::new();
    for t in [
        &cfg.topics.ride_events.name,
        &cfg.topics.driver_locations.name,
    ] {
        out.push(WorkerLag {
            consumer_group: cfg.ingest.group_id.clone(),
            topic: t.clone(),
            lag: offsets
                .iter()
                .filter(|o| &o.topic == t)
                .map(|o| behind(o, o.committed))
                .sum(),
        });
    }
    let positions: Vec<(i32, i64)> = crate::clickhouse::client(&cfg.clickhouse, Access::Read)
        .query(
            "SELECT partition, position FROM aggregate_progress FINAL \
             WHERE group_id = ? AND topic = ? AND partition >= 0",
        )
        .bind(&cfg.aggregation.group_id)
        .bind(&cfg.topics.ride_events.name)
        .fetch_all()
        .await
        .context("read aggregate_progress")?;
    let lag = offsets
        .iter()
        .filter(|o| o.topic == cfg.topics.ride_events.name)
        .map(|o| {
            let at = positions
                .iter()
                .find(|x| x.0 == o.partition)
                .map(|x| x.1.max(o.low));
            behind(o, at)
        })
        .sum();
    out.push(WorkerLag {
        consumer_group: cfg.aggregation.group_id.clone(),
        topic: cfg.topics.ride_events.name.clone(),
        lag,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_a_series_at_a_day_of_minutes_or_fewer() {
        let h = 3_600_000;
        assert_eq!(auto_step_minutes(0, h), 1);
        assert_eq!(auto_step_minutes(0, 24 * h), 1);
        assert_eq!(auto_step_minutes(0, 24 * h + 1), 2);
        assert_eq!(auto_step_minutes(0, 7 * 24 * h), 10);
        assert_eq!(auto_step_minutes(0, 30 * 24 * h), 30);
        assert_eq!(auto_step_minutes(0, 365 * 24 * h), 720);
        assert_eq!(auto_step_minutes(0, 10 * 365 * 24 * h), 1440);
        assert_eq!(auto_step_minutes(5, 5), 1);
    }
}
