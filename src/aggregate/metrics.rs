//! Worker metrics: a snapshot the consumer thread refreshes at every trigger, counters
//! and the output-latency histogram the sink updates, a periodic log line, and an
//! opt-in Prometheus text endpoint (a few lines of HTTP on a tokio listener).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::engine::EngineStats;
use crate::time::{EpochMillis, format_millis, now_millis};

/// What the consumer thread publishes at every trigger.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Engine counters.
    pub stats: EngineStats,
    /// Worker watermark.
    pub watermark: Option<EpochMillis>,
    /// (partition, city, window) states held.
    pub open_windows: usize,
    /// Consumer lag per owned partition (high watermark − position).
    pub lag: BTreeMap<i32, i64>,
}

/// Output latency in 10 ms buckets up to 10 minutes: the time from an event's
/// timestamp to the moment the metrics row reflecting it is durable.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    overflow: u64,
    count: u64,
    sum_ms: f64,
}

const BUCKET_MS: i64 = 10;
const BUCKETS: usize = 60_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            overflow: 0,
            count: 0,
            sum_ms: 0.0,
        }
    }
}

impl Histogram {
    /// Records `n` observations of `latency_ms` (negative values count as 0).
    pub fn record(&mut self, latency_ms: i64, n: u64) {
        let ms = latency_ms.max(0);
        match self.buckets.get_mut((ms / BUCKET_MS) as usize) {
            Some(b) => *b += n,
            None => self.overflow += n,
        }
        self.count += n;
        self.sum_ms += ms as f64 * n as f64;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile in milliseconds (upper bucket bound), `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some((i as i64 + 1) * BUCKET_MS);
            }
        }
        Some(BUCKETS as i64 * BUCKET_MS)
    }

    fn cumulative_le(&self, le_ms: i64) -> u64 {
        let upto = ((le_ms / BUCKET_MS) as usize).min(BUCKETS);
        self.buckets[..upto].iter().sum()
    }
}

/// Shared worker metrics.
#[derive(Default)]
pub struct Metrics {
    snapshot: Mutex<Snapshot>,
    latency: Mutex<Histogram>,
    /// Metrics rows written (updates and finals).
    pub output_rows: AtomicU64,
    /// Final metrics rows written.
    pub final_rows: AtomicU64,
    /// Triggers made durable.
    pub triggers: AtomicU64,
    /// Failed sink attempts that were retried.
    pub sink_retries: AtomicU64,
}

impl Metrics {
    /// Replaces the consumer-side snapshot.
    pub fn publish(&self, s: Snapshot) {
        if let Ok(mut g) = self.snapshot.lock() {
            *g = s;
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Records output latencies: `event_times` as (event time, count), made durable
    /// at `done`.
    pub fn record_latency(&self, event_times: &[(EpochMillis, u64)], done: EpochMillis) {
        if let Ok(mut h) = self.latency.lock() {
            for &(t, n) in event_times {
                h.record(done - t, n);
            }
        }
    }

    /// A copy of the latency histogram.
    pub fn latency(&self) -> Histogram {
        self.latency.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let s = self.snapshot();
        let now = now_millis();
        let mut out = String::with_capacity(4096);
        let metric =
            |out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
                let _ = writeln!(out, "# HELP ridectl_aggregate_{name} {help}");
                let _ = writeln!(out, "# TYPE ridectl_aggregate_{name} {kind}");
                for (labels, v) in samples {
                    let _ = writeln!(out, "ridectl_aggregate_{name}{labels} {v}");
                }
            };
        let one = |v: f64| vec![(String::new(), v)];
        metric(
            &mut out,
            "events_consumed_total",
            "counter",
            "Messages consumed from the input topic.",
            &one(s.stats.consumed as f64),
        );
        metric(
            &mut out,
            "events_accepted_total",
            "counter",
            "Events counted in at least one window.",
            &one(s.stats.accepted as f64),
        );
        metric(
            &mut out,
            "events_replayed_total",
            "counter",
            "Messages replayed after a restart or rebalance that were already fully processed.",
            &one(s.stats.replayed as f64),
        );
        let late: Vec<_> = s
            .stats
            .late
            .iter()
            .map(|(c, n)| (format!("{{city=\"{}\"}}", escape(c)), *n as f64))
            .collect();
        metric(
            &mut out,
            "late_events_total",
            "counter",
            "Events whose windows were all final, per city (sent to the late topic).",
            &late,
        );
        let dlq: Vec<_> = crate::events::RejectReason::ALL
            .iter()
            .map(|r| {
                let n = s.stats.rejected.get(r.as_str()).copied().unwrap_or(0);
                (format!("{{reason=\"{}\"}}", r.as_str()), n as f64)
            })
            .collect();
        metric(
            &mut out,
            "rejected_total",
            "counter",
            "Messages that broke the wire contract, per reason (the ingest group dead-letters them).",
            &dlq,
        );
        let lag: Vec<_> = s
            .lag
            .iter()
            .map(|(p, l)| (format!("{{partition=\"{p}\"}}"), *l as f64))
            .collect();
        metric(
            &mut out,
            "consumer_lag",
            "gauge",
            "Messages behind the high watermark, per owned partition.",
            &lag,
        );
        if let Some(wm) = s.watermark {
            metric(
                &mut out,
                "watermark_seconds",
                "gauge",
                "The worker's event-time watermark (Unix seconds).",
                &one(wm as f64 / 1000.0),
            );
            metric(
                &mut out,
                "watermark_delay_seconds",
                "gauge",
                "How far the watermark is behind the wall clock.",
                &one((now - wm) as f64 / 1000.0),
            );
        }
        metric(
            &mut out,
            "open_windows",
            "gauge",
            "(partition, city, window) states held in memory.",
            &one(s.open_windows as f64),
        );
        metric(
            &mut out,
            "output_rows_total",
            "counter",
            "Metrics rows written (updates and finals).",
            &one(self.output_rows.load(Ordering::Relaxed) as f64),
        );
        metric(
            &mut out,
            "final_rows_total",
            "counter",
            "Final metrics rows written.",
            &one(self.final_rows.load(Ordering::Relaxed) as f64),
        );
        metric(
            &mut out,
            "sink_retries_total",
            "counter",
            "Failed ClickHouse/Kafka output attempts that were retried.",
            &one(self.sink_retries.load(Ordering::Relaxed) as f64),
        );
        let h = self.latency();
        let _ = writeln!(
            out,
            "# HELP ridectl_aggregate_output_latency_seconds From an event's timestamp to its window row being durable.\n# TYPE ridectl_aggregate_output_latency_seconds histogram"
        );
        for le in [
            100, 250, 500, 1000, 1500, 2000, 3000, 5000, 10_000, 30_000, 60_000, 300_000,
        ] {
            let _ = writeln!(
                out,
                "ridectl_aggregate_output_latency_seconds_bucket{{le=\"{}\"}} {}",
                le as f64 / 1000.0,
                h.cumulative_le(le)
            );
        }
        let _ = writeln!(
            out,
            "ridectl_aggregate_output_latency_seconds_bucket{{le=\"+Inf\"}} {}\nridectl_aggregate_output_latency_seconds_sum {}\nridectl_aggregate_output_latency_seconds_count {}",
            h.count,
            h.sum_ms / 1000.0,
            h.count
        );
        let quantiles: Vec<_> = [0.5, 0.99]
            .iter()
            .filter_map(|q| {
                let v = h.quantile_ms(*q)?;
                Some((format!("{{quantile=\"{q}\"}}"), v as f64 / 1000.0))
            })
            .collect();
        metric(
            &mut out,
            "output_latency_quantile_seconds",
            "gauge",
            "Output latency quantiles since start (10 ms resolution).",
            &quantiles,
        );
        out
    }

    /// One human log line; `prev` is the (time, consumed) of the previous line.
    pub fn log_line(&self, prev: &mut (Instant, u64)) -> String {
        let s = self.snapshot();
        let now = Instant::now();
        let secs = now.duration_since(prev.0).as_secs_f64().max(1e-3);
        let rate = s.stats.consumed.saturating_sub(prev.1) as f64 / secs;
        *prev = (now, s.stats.consumed);
        let lag: i64 = s.lag.values().sum();
        let wm = match s.watermark {
            Some(wm) => format!(
                "{} ({:.1}s behind)",
                format_millis(wm),
                (now_millis() - wm) as f64 / 1000.0
            ),
            None => "none yet".into(),
        };
        let h = self.latency();
        let p99 = h
            .quantile_ms(0.99)
            .map_or("-".into(), |v| format!("{:.2}s", v as f64 / 1000.0));
        format!(
            "{rate:.0} events/s, lag {lag} over {} partitions, watermark {wm}, {} open windows, {} late, {} dead letters, {} rows ({} final), output latency p99 {p99}",
            s.lag.len(),
            s.open_windows,
            s.stats.late.values().sum::<u64>(),
            s.stats.rejected.values().sum::<u64>(),
            self.output_rows.load(Ordering::Relaxed),
            self.final_rows.load(Ordering::Relaxed),
        )
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: std::sync::Arc<Metrics>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for --metrics-addr"))?;
    tracing::info!("metrics on http://{addr}/metrics");
    loop {
        let (mut sock, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "see /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ms(0.99), None);
        h.record(5, 98);
        h.record(1234, 1);
        h.record(2_000_000, 1);
        assert_eq!(h.quantile_ms(0.5), Some(10));
        assert_eq!(h.quantile_ms(0.99), Some(1240));
        assert_eq!(h.quantile_ms(1.0), Some(600_000));
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        let mut s = Snapshot::default();
        s.stats.late.insert("ber\"lin".into(), 2);
        s.lag.insert(3, 17);
        s.watermark = Some(1_000_000);
        m.publish(s);
        m.record_latency(&[(0, 3)], 700);
        let text = m.render();
        assert!(text.contains("ridectl_aggregate_late_events_total{city=\"ber\\\"lin\"} 2"));
        assert!(text.contains("ridectl_aggregate_consumer_lag{partition=\"3\"} 17"));
        assert!(text.contains("ridectl_aggregate_rejected_total{reason=\"invalid_json\"} 0"));
        assert!(text.contains("ridectl_aggregate_output_latency_seconds_bucket{le=\"1\"} 3"));
        assert!(text.contains("ridectl_aggregate_output_latency_seconds_bucket{le=\"0.5\"} 0"));
        assert!(text.contains("ridectl_aggregate_watermark_seconds 1000"));
    }
}
