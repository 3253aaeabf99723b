//! From a browser's request to the SQL of a panel.
//!
//! The browser names a panel by id, a range key of the time picker and the values of
//! the dashboard variables — nothing else is accepted ([`parse_panel_request`]
//! rejects any other parameter, an unknown panel, range or variable). The SQL is the
//! panel's own, expanded exactly as Grafana and the ClickHouse plugin would by
//! [`crate::grafana::macros`]: the variables first (values quoted by the plugin's
//! rules, so `x' OR 1=1` is a city name), then the macros for the range and the
//! interval Grafana would compute ([`grafana_interval_ms`]).

use std::collections::BTreeMap;

use crate::grafana::macros::{QueryContext, expand_macros, interpolate_variables};

use super::model::{LocalDashboard, range_ms};

/// Most values one variable may be given.
pub const MAX_VALUES: usize = 200;
/// Longest value of a variable, in bytes.
pub const MAX_VALUE_LEN: usize = 200;
/// Grafana's value for "All" (`$__all`).
pub const ALL: &str = "$__all";

/// A variable selection: everything (`$__all`) or some values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selection {
    /// Every value of the variable's query for the range.
    All,
    /// These values.
    Values(Vec<String>),
}

/// A valid request for one panel's data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PanelRequest {
    /// Panel id.
    pub panel: i64,
    /// Range key (`1h`).
    pub range: String,
    /// Selection per variable of the dashboard (all of them; absent → All).
    pub vars: BTreeMap<String, Selection>,
}

/// Why a request is refused (HTTP 400), said to the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRequest {}

fn bad<T>(msg: impl Into<String>) -> Result<T, BadRequest> {
    Err(BadRequest(msg.into()))
}

/// Percent-decodes one `application/x-www-form-urlencoded` component.
pub fn url_decode(s: &str) -> Result<String, BadRequest> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => out.push(v),
                    None => return bad("bad percent-encoding"),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| BadRequest("not UTF-8".into()))
}

/// The `(key, value)` pairs of a query string, decoded.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, BadRequest> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((url_decode(k)?, url_decode(v)?))
        })
        .collect()
}

fn range_and_vars(
    d: &LocalDashboard,
    pairs: Vec<(String, String)>,
) -> Result<(String, BTreeMap<String, Selection>), BadRequest> {
    let mut range = None;
    let mut given: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        if k == "range" {
            if range.is_some() {
                return bad("range given twice");
            }
            if range_ms(&v).is_none() {
                return bad(format!(
                    "unknown range {v:?}: one of {}",
                    super::model::RANGES
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            range = Some(v);
        } else if let Some(name) = k.strip_prefix("var-") {
            if d.variable(name).is_none() {
                return bad(format!("unknown variable {name:?}"));
            }
            if v.len() > MAX_VALUE_LEN {
                return bad(format!(
                    "a value of {name} is longer than {MAX_VALUE_LEN} bytes"
                ));
            }
            let values = given.entry(name.to_string()).or_default();
            values.push(v);
            if values.len() > MAX_VALUES {
                return bad(format!("more than {MAX_VALUES} values of {name}"));
            }
        } else {
            // Never SQL, never anything else.
            return bad(format!(
                "unknown parameter {k:?}: a panel request takes range and var-<name> only"
            ));
        }
    }
    let mut vars = BTreeMap::new();
    for v in &d.variables {
        let sel = match given.remove(&v.name) {
            None => Selection::All,
            Some(values) if values.iter().any(|x| x == ALL) => {
                if !v.include_all {
                    return bad(format!("{} has no All option", v.name));
                }
                Selection::All
            }
            Some(values) => {
                if values.len() > 1 && !v.multi {
                    return bad(format!("{} takes one value", v.name));
                }
                Selection::Values(values)
            }
        };
        vars.insert(v.name.clone(), sel);
    }
    Ok((range.unwrap_or_else(|| d.default_range.clone()), vars))
}

/// Parses `/api/panel/<id>?range=1h&var-city=berlin&var-city=prague`: the path's id
/// and the query string.
pub fn parse_panel_request(
    d: &LocalDashboard,
    id: &str,
    query: &str,
) -> Result<PanelRequest, BadRequest> {
    let panel: i64 = id
        .parse()
        .map_err(|_| BadRequest(format!("panel id {id:?} is not a number")))?;
    match d.panel(panel) {
        None => return bad(format!("no panel {panel} in this dashboard")),
        Some(p) if p.raw_sql.is_none() => {
            return bad(format!("panel {panel} is not supported here"));
        }
        Some(_) => {}
    }
    let (range, vars) = range_and_vars(d, query_pairs(query)?)?;
    Ok(PanelRequest { panel, range, vars })
}

/// Parses `/api/variable/<name>?range=1h`.
pub fn parse_variable_request(
    d: &LocalDashboard,
    name: &str,
    query: &str,
) -> Result<(String, String), BadRequest> {
    if d.variable(name).is_none() {
        return bad(format!("unknown variable {name:?}"));
    }
    let pairs = query_pairs(query)?;
    if pairs.iter().any(|(k, _)| k != "range") {
        return bad("a variable request takes range only");
    }
    let (range, _) = range_and_vars(d, pairs)?;
    Ok((name.to_string(), range))
}

/// Grafana's `rangeutil.roundInterval`: the nice interval close to `ms`.
pub fn round_interval(ms: i64) -> i64 {
    const STEPS: &[(i64, i64)] = &[
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (24_300_000, 21_600_000),
        (32_400_000, 28_800_000),
        (86_400_000, 43_200_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
        (3_628_800_000, 2_592_000_000),
    ];
    STEPS
        .iter()
        .find(|(below, _)| ms < *below)
        .map_or(31_536_000_000, |(_, step)| *step)
}

/// Data points Grafana asks for: about one per pixel of a half-screen panel.
pub const MAX_DATA_POINTS: i64 = 1_000;

/// The `$__interval` Grafana computes for a range: range / max data points, rounded,
/// at least the panel's minimum interval.
pub fn grafana_interval_ms(range_ms: i64, min_interval_ms: i64) -> i64 {
    round_interval(range_ms / MAX_DATA_POINTS).max(min_interval_ms)
}

/// The SQL Grafana would send for `raw` with these variable values and context.
pub fn expand(
    raw: &str,
    vars: &BTreeMap<String, Vec<String>>,
    ctx: &QueryContext,
) -> anyhow::Result<String> {
    let sql = interpolate_variables(raw, vars).map_err(anyhow::Error::msg)?;
    expand_macros(&sql, ctx).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dash() -> LocalDashboard {
        super::super::model::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/ride-ops.json"),
        )
        .expect("loads")
    }

    #[test]
    fn only_panel_range_and_variables_are_accepted() {
        let d = dash();
        let r = parse_panel_request(&d, "1", "range=6h&var-city=berlin&var-city=o%27hare")
            .expect("valid");
        assert_eq!(r.range, "6h");
        assert_eq!(
            r.vars["city"],
            Selection::Values(vec!["berlin".into(), "o'hare".into()])
        );
        let r = parse_panel_request(&d, "3", "").expect("defaults");
        assert_eq!((r.range.as_str(), &r.vars["city"]), ("1h", &Selection::All));
        let r = parse_panel_request(&d, "3", "var-city=%24__all").expect("All");
        assert_eq!(r.vars["city"], Selection::All);
        for (id, q) in [
            ("1", "sql=SELECT%201"),
            ("1", "range=1h&query=SELECT+1"),
            ("1", "range=2h"),
            ("1", "range=now-1h"),
            ("1", "var-town=x"),
            ("1", "range=1h&range=6h"),
            ("42", "range=1h"),
            ("x", ""),
            ("1", "var-city=%ZZ"),
        ] {
            assert!(parse_panel_request(&d, id, q).is_err(), "{id} {q}");
        }
        let long = format!("var-city={}", "a".repeat(MAX_VALUE_LEN + 1));
        assert!(parse_panel_request(&d, "1", &long).is_err());
    }

    #[test]
    fn values_are_quoted_as_the_plugin_does() {
        let d = dash();
        let raw = d.panel(1).and_then(|p| p.raw_sql.clone()).expect("sql");
        let vars = BTreeMap::from([("city".to_string(), vec!["x' OR 1=1 --".to_string()])]);
        let ctx = QueryContext {
            from_ms: 0,
            to_ms: 3_600_000,
            interval_ms: 60_000,
        };
        let sql = expand(&raw, &vars, &ctx).expect("expands");
        assert!(sql.contains(r"city IN ('x\' OR 1=1 --')"), "{sql}");
        assert!(!sql.contains('$'));
    }

    #[test]
    fn intervals_follow_grafana() {
        assert_eq!(grafana_interval_ms(3_600_000, 60_000), 60_000);
        assert_eq!(grafana_interval_ms(86_400_000, 60_000), 60_000);
        assert_eq!(grafana_interval_ms(7 * 86_400_000, 60_000), 600_000);
        assert_eq!(grafana_interval_ms(900_000, 0), 1_000);
    }
}
