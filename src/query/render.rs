//! Printing result sets: a comfy-table for people (numbers right-aligned, rates as
//! percentages, cancellation rates over the threshold highlighted unless NO_COLOR),
//! JSON objects or CSV for scripts.

use clap::ValueEnum;
use comfy_table::{Cell, CellAlignment, Color};
use serde_json::Value;

use super::ResultSet;

/// Output format of `ridectl query`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// A table for people.
    #[default]
    Table,
    /// A JSON array of objects.
    Json,
    /// CSV with a header row.
    Csv,
}

fn is_numeric(ty: &str) -> bool {
    let t = ty
        .trim_start_matches("Nullable(")
        .trim_start_matches("LowCardinality(");
    ["Int", "UInt", "Float", "Decimal"]
        .iter()
        .any(|p| t.starts_with(p))
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => {
                let s = format!("{f:.2}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            }
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Renders a table; `threshold` highlights `cancellation_rate` cells above it.
pub fn table(rs: &ResultSet, threshold: f64, color: bool) -> String {
    let header: Vec<&str> = rs.columns.iter().map(String::as_str).collect();
    let numeric: Vec<usize> = rs
        .types
        .iter()
        .enumerate()
        .filter(|(_, t)| is_numeric(t))
        .map(|(i, _)| i)
        .collect();
    let mut t = crate::output::table(&header, &numeric);
    if color {
        // The caller decided (terminal, NO_COLOR); comfy-table would check again.
        t.enforce_styling();
    }
    for row in &rs.rows {
        let cells: Vec<Cell> = row
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let name = rs.columns[i].as_str();
                let rate = name.ends_with("_rate") && v.is_number();
                let text = if rate {
                    format!("{:.1}%", v.as_f64().unwrap_or(0.0) * 100.0)
                } else {
                    plain(v)
                };
                let mut cell = Cell::new(text);
                if numeric.contains(&i) {
                    cell = cell.set_alignment(CellAlignment::Right);
                }
                let hot = (name == "cancellation_rate"
                    && v.as_f64().is_some_and(|r| r > threshold))
                    || (name == "over_threshold"
                        && (v == &Value::from(1) || v == &Value::from(true)));
                if hot && color {
                    cell = cell.fg(Color::Red);
                }
                cell
            })
            .collect();
        t.add_row(cells);
    }
    format!(
        "{t}\n{} row{} in {:.1} ms",
        rs.rows.len(),
        if rs.rows.len() == 1 { "" } else { "s" },
        rs.elapsed_ms
    )
}

/// Rows as JSON objects keyed by column name.
pub fn json(rs: &ResultSet) -> Value {
    Value::Array(
        rs.rows
            .iter()
            .map(|row| {
                Value::Object(
                    rs.columns
                        .iter()
                        .cloned()
                        .zip(row.iter().cloned())
                        .collect(),
                )
            })
            .collect(),
    )
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV with a header row.
pub fn csv(rs: &ResultSet) -> String {
    let mut out = rs
        .columns
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for row in &rs.rows {
        let line: Vec<String> = row
            .iter()
            .map(|v| match v {
                Value::String(s) => csv_field(s),
                Value::Null => String::new(),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs() -> ResultSet {
        ResultSet {
            columns: vec!["city".into(), "requests".into(), "cancellation_rate".into()],
            types: vec![
                "LowCardinality(String)".into(),
                "UInt64".into(),
                "Float64".into(),
            ],
            rows: vec![
                vec!["berlin".into(), 120.into(), 0.35.into()],
                vec!["x, \"y\"".into(), 3.into(), 0.1.into()],
            ],
            elapsed_ms: 4.2,
        }
    }

    #[test]
    fn table_formats_rates_and_highlights() {
        let plain = table(&rs(), 0.3, false);
        assert!(
            plain.contains("35.0%") && plain.contains("10.0%"),
            "{plain}"
        );
        assert!(plain.contains("2 rows in 4.2 ms"));
        assert!(!plain.contains("\u{1b}["), "no colour when disabled");
        let coloured = table(&rs(), 0.3, true);
        assert!(
            coloured.contains("\u{1b}["),
            "over-threshold rate highlighted"
        );
    }

    #[test]
    fn json_and_csv() {
        assert_eq!(json(&rs())[0]["requests"], 120);
        let c = csv(&rs());
        assert!(c.starts_with("city,requests,cancellation_rate\nberlin,120,0.35\n"));
        assert!(c.contains("\"x, \"\"y\"\"\",3,0.1"));
    }
}
