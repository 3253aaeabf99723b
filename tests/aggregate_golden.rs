//! Golden tests of the aggregation engine: pure and deterministic (no Kafka, no
//! ClickHouse). Each `tests/golden/aggregate/<case>.jsonl` is a script of messages,
//! wall-clock changes and triggers; running it through [`Engine`] and an in-memory
//! model of the merge step (the semantics of `sql/aggregate/merge.sql`) must print
//! exactly `<case>.expected.jsonl`: dead letters, late events, and per trigger the
//! watermark, horizons, commits and the emitted rows (updates and finals).
//!
//! Script lines (`#` starts a comment):
//!   {"config":{"window":"5m","slide":"1m","watermark":"30s","max_clock_skew":"5m","idle":"10s"}}
//!   {"assign":[0,1]}                 partitions owned (no recorded progress)
//!   {"now":"2026-01-01T01:00:00Z"}   the wall clock
//!   {"p":0,"e":[type, city, user, timestamp, fare]}   a valid event (next offset)
//!   {"p":0,"raw":"..."}              any bytes
//!   {"eof":1}                        the consumer reached the end of partition 1
//!   {"trigger":true}                 run a trigger and the merge
//!   {"close":true}                   end of a bounded run: close every partition
//!
//! `UPDATE_GOLDEN=1 cargo test --test aggregate_golden` rewrites the expected files
//! (review the diff: they are the specification).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ridectl::aggregate::engine::{Engine, EngineConfig, Ingest, PartialRow, Resume};
use ridectl::aggregate::window::WindowSpec;
use ridectl::time::{EpochMillis, format_millis, parse_iso8601};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/aggregate")
}

fn ms(v: &Value, default: &str) -> i64 {
    let s = v.as_str().unwrap_or(default);
    s.parse::<ridectl::units::HumanDuration>()
        .unwrap_or_else(|e| panic!("bad duration {s}: {e}"))
        .as_millis_i64()
}

fn time(v: &Value) -> EpochMillis {
    parse_iso8601(v.as_str().expect("a time string")).expect("an ISO-8601 time")
}

/// The merge step as `merge.sql` computes it, in memory.
#[derive(Default)]
struct Model {
    /// (city, start, end, partition) → latest partial (highest version).
    partials: BTreeMap<(String, i64, i64, i32), PartialRow>,
    /// (city, start, end) → riders.
    riders: HashMap<(String, i64, i64), BTreeSet<String>>,
    /// partition → finalized_until.
    progress: BTreeMap<i32, i64>,
    emitted: i64,
}

impl Model {
    fn row(&self, city: &str, start: i64, end: i64, horizon: i64) -> Value {
        let mut c = [0u64; 4];
        let (mut fare_sum, mut fare_count) = (0.0, 0u64);
        for ((pc, ps, pe, _), p) in &self.partials {
            if pc == city && *ps == start && *pe == end {
                c[0] += p.counts.total;
                c[1] += p.counts.requests;
                c[2] += p.counts.completions;
                c[3] += p.counts.cancellations;
                fare_sum += p.fare_sum;
                fare_count += p.fare_count;
            }
        }
        let riders = self
            .riders
            .get(&(city.to_string(), start, end))
            .map_or(0, BTreeSet::len);
        let rate = |n: u64| {
            if c[1] == 0 {
                0.0
            } else {
                n as f64 / c[1] as f64
            }
        };
        json!({
            "window": {"start": format_millis(start), "end": format_millis(end)},
            "city": city,
            "total_events": c[0],
            "requests": c[1],
            "completions": c[2],
            "cancellations": c[3],
            "avg_fare": if fare_count == 0 { 0.0 } else { fare_sum / fare_count as f64 },
            "unique_riders": riders,
            "cancellation_rate": rate(c[3]),
            "completion_rate": rate(c[2]),
            "final": end <= horizon,
        })
    }
}

fn run_script(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut cfg = EngineConfig {
        windows: WindowSpec::new(300_000, 60_000),
        watermark_delay: 30_000,
        max_clock_skew: 300_000,
        idle_timeout: 10_000,
    };
    let mut engine = Engine::new(cfg);
    let mut model = Model {
        emitted: i64::MIN,
        ..Model::default()
    };
    let mut now: EpochMillis = 0;
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut triggers = 0;
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), lineno + 1));
        if let Some(c) = v.get("config") {
            cfg = EngineConfig {
                windows: WindowSpec::new(ms(&c["window"], "5m"), ms(&c["slide"], "1m")),
                watermark_delay: ms(&c["watermark"], "30s"),
                max_clock_skew: ms(&c["max_clock_skew"], "5m"),
                idle_timeout: ms(&c["idle"], "10s"),
            };
            engine = Engine::new(cfg);
        } else if let Some(parts) = v.get("assign") {
            for p in parts.as_array().unwrap() {
                let p = p.as_i64().unwrap() as i32;
                engine.assign(p, Resume::default(), Some(0), now);
                offsets.insert(p, 0);
                model.progress.insert(p, i64::MIN);
            }
        } else if let Some(t) = v.get("now") {
            now = time(t);
        } else if let Some(p) = v.get("eof") {
            let p = p.as_i64().unwrap() as i32;
            engine.partition_eof(p, offsets[&p]);
        } else if v.get("close").is_some() {
            engine.close_all();
        } else if let Some(p) = v.get("p") {
            let p = p.as_i64().unwrap() as i32;
            let o = offsets[&p];
            offsets.insert(p, o + 1);
            let bytes = if let Some(raw) = v.get("raw") {
                raw.as_str().unwrap().as_bytes().to_vec()
            } else {
                let e = &v["e"];
                json!({
                    "event_id": format!("g{p}-{o}"),
                    "event_type": e[0], "ride_id": format!("ride-{}", e[2].as_str().unwrap()),
                    "timestamp": e[3], "city": e[1], "estimated_fare": e[4], "user_id": e[2],
                    "pickup": {"lat": 1.0, "lng": 1.0}, "dropoff": {"lat": 1.0, "lng": 1.0}
                })
                .to_string()
                .into_bytes()
            };
            match engine.ingest(p, o, &bytes, now) {
                Ingest::Accepted => {}
                Ingest::Rejected(r) => out.push(
                    json!({"dlq": {"p": p, "o": o, "reason": r.reason.as_str()}}).to_string(),
                ),
                Ingest::Late {
                    event_time,
                    horizon,
                } => out.push(
                    json!({"late": {"p": p, "o": o, "event_time": format_millis(event_time),
                                    "horizon": format_millis(horizon)}})
                    .to_string(),
                ),
                other => panic!("{}:{}: unexpected {other:?}", path.display(), lineno + 1),
            }
        } else if v.get("trigger").is_some() {
            triggers += 1;
            let t = engine.trigger(now);
            // Sink steps 1-3: riders, partials (highest version wins), progress.
            for r in t.riders.iter() {
                model
                    .riders
                    .entry((r.city.to_string(), r.window_start, r.window_end))
                    .or_default()
                    .insert(r.user_id.to_string());
            }
            for p in &t.partials {
                let key = (
                    p.city.to_string(),
                    p.window_start,
                    p.window_end,
                    p.partition,
                );
                if model
                    .partials
                    .get(&key)
                    .is_none_or(|old| old.version <= p.version)
                {
                    model.partials.insert(key, p.clone());
                }
            }
            for pr in &t.progress {
                model.progress.insert(pr.partition, pr.finalized_until);
            }
            // Step 4: the changed windows, plus those that became final topic-wide.
            let horizon = model.progress.values().copied().min().unwrap_or(i64::MIN);
            let mut windows: BTreeSet<(i64, String, i64)> = t
                .changed_windows()
                .into_iter()
                .map(|(c, s, e)| (s, c.to_string(), e))
                .collect();
            if horizon > model.emitted {
                for (c, s, e, _) in model.partials.keys() {
                    if *e > model.emitted && *e <= horizon {
                        windows.insert((*s, c.clone(), *e));
                    }
                }
                model.emitted = horizon;
            }
            let fmt = |x: i64| match x {
                i64::MIN => "-inf".to_string(),
                i64::MAX => "closed".to_string(),
                x => format_millis(x),
            };
            out.push(
                json!({
                    "trigger": triggers,
                    "watermark": t.watermark.map(fmt),
                    "finalized_until": t.progress.iter()
                        .map(|p| (p.partition.to_string(), fmt(p.finalized_until)))
                        .collect::<BTreeMap<_, _>>(),
                    "commits": t.commits.iter()
                        .map(|(p, o)| (p.to_string(), *o))
                        .collect::<BTreeMap<_, _>>(),
                })
                .to_string(),
            );
            for (s, c, e) in windows {
                out.push(model.row(&c, s, e, horizon).to_string());
            }
        } else {
            panic!("{}:{}: unknown line {line}", path.display(), lineno + 1);
        }
    }
    out
}

#[test]
fn golden_scripts_produce_the_expected_output() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".jsonl") && !name.ends_with(".expected.jsonl")
        })
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "golden cases missing in {}",
        dir().display()
    );
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let got = run_script(case);
        let expected_path = case.with_extension("expected.jsonl");
        let mut text = got.join("\n");
        text.push('\n');
        if update {
            std::fs::write(&expected_path, &text).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} is missing", expected_path.display()));
        if expected != text {
            let first = expected
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(expected.lines().count().min(got.len()));
            failures.push(format!(
                "{}: line {}\n  expected: {}\n  actual:   {}",
                case.display(),
                first + 1,
                expected.lines().nth(first).unwrap_or("<end>"),
                text.lines().nth(first).unwrap_or("<end>")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}
