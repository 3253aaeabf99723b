//! What happens to a query's text between the dashboard JSON and ClickHouse, mirrored
//! step by step so that the test runs exactly what Grafana would send:
//!
//! 1. the frontend replaces dashboard variables (`templateSrv.replace` with the
//!    ClickHouse plugin's formatter: arrays become `'a','b'`; `${var:singlequote}`);
//! 2. the plugin's backend strips comments and expands its macros
//!    (grafana/clickhouse-datasource `pkg/macros/macros.go`, `Interpolate`, on
//!    grafana/macropro's parser: longest names first, `$__name` or `$__name(args)`,
//!    arguments split on top-level commas, unknown macros left as they are).
//!
//! Also Grafana's provisioning `$VAR` expansion (Go's `os.ExpandEnv` on each part
//! between `$$`), to check which environment variables the provisioning files use.

use std::collections::BTreeMap;

/// The query context of the plugin's macros: the dashboard (or rule) time range and
/// the interval Grafana computed for the panel.
#[derive(Clone, Copy, Debug)]
pub struct QueryContext {
    /// Range start, epoch milliseconds.
    pub from_ms: i64,
    /// Range end, epoch milliseconds.
    pub to_ms: i64,
    /// `$__interval` in milliseconds.
    pub interval_ms: i64,
}

fn to_date_time(ms: i64) -> String {
    format!("toDateTime({})", ms.div_euclid(1000))
}

fn to_date_time64(ms: i64) -> String {
    format!("fromUnixTimestamp64Milli({ms})")
}

fn to_date(ms: i64) -> String {
    format!("toDate('{}')", &crate::time::format_millis(ms)[..10])
}

/// Go's `int(math.Max(d.Seconds(), 1))`.
fn interval_seconds(ctx: &QueryContext) -> i64 {
    (ctx.interval_ms as f64 / 1000.0).max(1.0) as i64
}

/// macropro's `FormatDuration`: the largest whole unit.
fn format_duration(ms: i64) -> String {
    let ms = ms.abs();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, len) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms % len == 0 {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{ms}ms")
}

/// Go's `time.ParseDuration` for the simple forms `$__timeGroup` takes (`5m`, `1h`,
/// `30s`, `1h30m`), in seconds.
fn parse_go_duration(s: &str) -> Result<i64, String> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().unwrap_or('s'));
        }
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(format!("invalid duration {s:?}")),
        };
    }
    if !num.is_empty() || s.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(total.round() as i64)
}

fn want(name: &str, n: usize, args: &[String]) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "${name} expected {n} argument(s), received {}",
            args.len()
        ))
    }
}

/// One macro of the plugin's `ClickHouseMacros` (the SDK defaults merged with the
/// ClickHouse overrides and extensions).
fn expand_macro(name: &str, ctx: &QueryContext, args: &[String]) -> Result<String, String> {
    let (from, to) = (ctx.from_ms, ctx.to_ms);
    Ok(match name {
        "timeFilter" => {
            want("__timeFilter", 1, args)?;
            let c = &args[0];
            format!(
                "{c} >= {} AND {c} <= {}",
                to_date_time(from),
                to_date_time(to)
            )
        }
        "timeFilter_ms" => {
            want("__timeFilter_ms", 1, args)?;
            let c = &args[0];
            format!(
                "{c} >= {} AND {c} <= {}",
                to_date_time64(from),
                to_date_time64(to)
            )
        }
        "fromTime" => to_date_time(from),
        "toTime" => to_date_time(to),
        "fromTime_ms" => to_date_time64(from),
        "toTime_ms" => to_date_time64(to),
        "dateFilter" => {
            want("__dateFilter", 1, args)?;
            let c = &args[0];
            format!("{c} >= {} AND {c} <= {}", to_date(from), to_date(to))
        }
        "dateTimeFilter" | "dt" => {
            want("__dateTimeFilter", 2, args)?;
            let (d, t) = (&args[0], &args[1]);
            format!(
                "({d} >= {} AND {d} <= {}) AND ({t} >= {} AND {t} <= {})",
                to_date(from),
                to_date(to),
                to_date_time(from),
                to_date_time(to)
            )
        }
        "timeInterval" => {
            want("__timeInterval", 1, args)?;
            format!(
                "toStartOfInterval(toDateTime({}), INTERVAL {} second)",
                args[0],
                interval_seconds(ctx)
            )
        }
        "timeInterval_ms" => {
            want("__timeInterval_ms", 1, args)?;
            format!(
                "toStartOfInterval(toDateTime64({}, 3), INTERVAL {} millisecond)",
                args[0],
                ctx.interval_ms.max(1)
            )
        }
        "interval_s" => interval_seconds(ctx).to_string(),
        "timeFrom" => {
            want("__timeFrom", 1, args)?;
            format!("{} >= {}", args[0], to_date_time(from))
        }
        "timeTo" => {
            want("__timeTo", 1, args)?;
            format!("{} <= {}", args[0], to_date_time(to))
        }
        "timeGroup" => {
            want("__timeGroup", 2, args)?;
            let period = args[1].trim().trim_matches(|c| c == '\'' || c == '"');
            let secs = parse_go_duration(period)?;
            if secs <= 0 {
                return Err(format!(
                    "$__timeGroup: interval must be positive, got {period:?}"
                ));
            }
            format!(
                "toStartOfInterval(toDateTime({}), INTERVAL {secs} second)",
                args[0].trim()
            )
        }
        "interval" => format_duration(ctx.interval_ms),
        "interval_ms" => ctx.interval_ms.to_string(),
        "table" => return Err("$__table: no table name in query context".into()),
        "column" => return Err("$__column: no column name in query context".into()),
        _ => unreachable!("not a macro: {name}"),
    })
}

/// The macro names of `ClickHouseMacros`.
const MACROS: &[&str] = &[
    "interval",
    "interval_ms",
    "timeFrom",
    "timeTo",
    "timeFilter",
    "timeGroup",
    "table",
    "column",
    "fromTime",
    "toTime",
    "fromTime_ms",
    "toTime_ms",
    "timeFilter_ms",
    "dateFilter",
    "dateTimeFilter",
    "dt",
    "timeInterval",
    "timeInterval_ms",
    "interval_s",
];

/// The macro names, longest first (then by name), as macropro tries them.
fn macro_names() -> Vec<&'static str> {
    let mut names = MACROS.to_vec();
    names.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    names
}

fn is_name_char(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// Index after a quoted literal starting at `pos` (doubled quotes and, as ClickHouse
/// allows, backslash escapes); the end of `s` when unterminated.
fn scan_quoted(s: &[u8], pos: usize, backslash: bool) -> usize {
    let quote = s[pos];
    let mut j = pos + 1;
    while j < s.len() {
        if backslash && s[j] == b'\\' {
            j += 2;
            continue;
        }
        if s[j] == quote {
            if j + 1 < s.len() && s[j + 1] == quote {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    s.len()
}

/// macropro's `StripComments` with the plugin's styles: `--` and `/* */` comments
/// become spaces; quoted strings, backtick identifiers and `$tag$` strings are kept.
pub fn strip_comments(q: &str) -> String {
    let s = q.as_bytes();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\'' | b'"' | b'`' => {
                let j = scan_quoted(s, i, s[i] != b'`');
                out.extend_from_slice(&s[i..j]);
                i = j;
            }
            b'$' => {
                let mut j = i + 1;
                while j < s.len() && is_name_char(s[j]) {
                    j += 1;
                }
                let tag_end = (j < s.len() && s[j] == b'$').then_some(j + 1);
                let closing = tag_end.and_then(|e| {
                    let tag = &s[i..e];
                    s[e..]
                        .windows(tag.len())
                        .position(|w| w == tag)
                        .map(|p| e + p + tag.len())
                });
                match closing {
                    Some(end) => {
                        out.extend_from_slice(&s[i..end]);
                        i = end;
                    }
                    None => {
                        out.push(b'$');
                        i += 1;
                    }
                }
            }
            b'-' if s.get(i + 1) == Some(&b'-') => {
                while i < s.len() && s[i] != b'\n' && s[i] != b'\r' {
                    out.push(b' ');
                    i += 1;
                }
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                let mut j = i + 2;
                while j < s.len() && !(s[j] == b'*' && s.get(j + 1) == Some(&b'/')) {
                    j += 1;
                }
                let end = (j + 2).min(s.len());
                out.extend(std::iter::repeat_n(b' ', end - i));
                i = end;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The `)` closing the `(` at `open`, skipping quoted strings.
fn closing_paren(s: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = open;
    while i < s.len() {
        match s[i] {
            b'\'' | b'"' => {
                i = scan_quoted(s, i, false);
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// macropro's `parseArgs`: split on commas outside parentheses and quotes, trimmed.
fn parse_args(raw: &str) -> Result<Vec<String>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let s = raw.as_bytes();
    let (mut args, mut depth, mut start, mut i) = (Vec::new(), 0i32, 0, 0);
    while i < s.len() {
        match s[i] {
            b'\'' | b'"' => {
                i = scan_quoted(s, i, false);
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                if depth == 0 {
                    return Err(format!("unexpected ')' at position {i}"));
                }
                depth -= 1;
            }
            b',' if depth == 0 => {
                args.push(raw[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if depth != 0 {
        return Err("unbalanced parentheses in arguments".into());
    }
    args.push(raw[start..].trim().to_string());
    Ok(args)
}

/// The plugin backend's `Interpolate` (without the statement macros `$__columns` &
/// co., which ridectl does not use).
pub fn expand_macros(sql: &str, ctx: &QueryContext) -> Result<String, String> {
    let mut result = strip_comments(sql);
    for name in macro_names() {
        let token = format!("$__{name}");
        let mut out = String::with_capacity(result.len());
        let mut rest = result.as_str();
        while let Some(idx) = rest.find(&token) {
            let after = idx + token.len();
            if rest
                .as_bytes()
                .get(after)
                .copied()
                .is_some_and(is_name_char)
            {
                out.push_str(&rest[..after]);
                rest = &rest[after..];
                continue;
            }
            out.push_str(&rest[..idx]);
            rest = &rest[after..];
            let mut raw = "";
            if rest.starts_with('(')
                && let Some(end) = closing_paren(rest.as_bytes(), 0)
            {
                raw = &rest[1..end];
                rest = &rest[end + 1..];
            }
            let args = parse_args(raw).map_err(|e| format!("macro {token}: {e}"))?;
            let expanded = expand_macro(name, ctx, &args)
                .map_err(|e| format!("macro {token}({}): {e}", args.join(", ")))?;
            out.push_str(&expanded);
        }
        out.push_str(rest);
        result = out;
    }
    Ok(result)
}

/// Grafana's frontend variable interpolation with the ClickHouse plugin's formatter:
/// `$var`, `${var}`, `[[var]]` and `${var:format}` for the dashboard's variables;
/// Grafana's own `$__…` names are left for the backend. A reference to an unknown
/// variable is an error (the dashboard would send it to ClickHouse as is).
pub fn interpolate_variables(
    sql: &str,
    variables: &BTreeMap<String, Vec<String>>,
) -> Result<String, String> {
    let quote_all = |values: &[String]| {
        values
            .iter()
            .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(",")
    };
    let s = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < s.len() {
        let (name, format, end) = if s[i] == b'$' && s.get(i + 1) == Some(&b'{') {
            let Some(close) = sql[i..].find('}') else {
                return Err(format!("unterminated ${{ at {i}"));
            };
            let inner = &sql[i + 2..i + close];
            let (name, format) = match inner.split_once(':') {
                Some((n, f)) => (n.to_string(), Some(f.to_string())),
                None => (inner.to_string(), None),
            };
            (name, format, i + close + 1)
        } else if s[i] == b'$' && s.get(i + 1).copied().is_some_and(is_name_char) {
            let mut j = i + 1;
            while j < s.len() && is_name_char(s[j]) {
                j += 1;
            }
            (sql[i + 1..j].to_string(), None, j)
        } else if s[i] == b'[' && s.get(i + 1) == Some(&b'[') {
            let Some(close) = sql[i..].find("]]") else {
                return Err(format!("unterminated [[ at {i}"));
            };
            (sql[i + 2..i + close].to_string(), None, i + close + 2)
        } else {
            let ch = sql[i..].chars().next().unwrap_or_default();
            out.push(ch);
            i += ch.len_utf8();
            continue;
        };
        if name.starts_with("__") {
            out.push_str(&sql[i..end]);
        } else {
            let values = variables.get(&name).ok_or_else(|| {
                format!("the query uses ${name}, which is not a dashboard variable")
            })?;
            match format.as_deref() {
                // The plugin's formatter, and `singlequote`, agree for lists.
                None | Some("singlequote") => out.push_str(&quote_all(values)),
                Some(other) => return Err(format!("format {other:?} of ${name} is not modelled")),
            }
        }
        i = end;
    }
    Ok(out)
}

/// How Grafana's provisioning expands a value: `$VAR`/`${VAR}` everywhere, or only
/// `${VAR}` (alert rule annotations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvMode {
    /// `$VAR` and `${VAR}`.
    Full,
    /// `${VAR}` only.
    BracedOnly,
}

/// Go's `os.ExpandEnv` on each part between `$$` (a literal `$`), as Grafana's
/// provisioning `values` package does. Returns the expanded text and the names read.
pub fn expand_env(
    value: &str,
    mode: EnvMode,
    env: &dyn Fn(&str) -> Option<String>,
) -> (String, Vec<String>) {
    let mut names = Vec::new();
    let parts: Vec<String> = value
        .split("$$")
        .map(|part| {
            let s = part.as_bytes();
            let mut out = String::new();
            let mut i = 0;
            while i < s.len() {
                if s[i] != b'$' || i + 1 >= s.len() {
                    let ch = part[i..].chars().next().unwrap_or_default();
                    out.push(ch);
                    i += ch.len_utf8();
                    continue;
                }
                let rest = &part[i + 1..];
                let (name, width) = if let Some(inner) = rest.strip_prefix('{') {
                    match inner.find('}') {
                        Some(0) => (String::new(), 2),
                        Some(c) => (inner[..c].to_string(), c + 2),
                        None => (String::new(), 1),
                    }
                } else if mode == EnvMode::BracedOnly {
                    (String::new(), 0)
                } else if rest.as_bytes()[0].is_ascii_digit()
                    || b"*#$@!?-".contains(&rest.as_bytes()[0])
                {
                    (rest[..1].to_string(), 1)
                } else {
                    let n = rest.bytes().take_while(|b| is_name_char(*b)).count();
                    (rest[..n].to_string(), n)
                };
                if name.is_empty() && width == 0 {
                    out.push('$');
                } else if !name.is_empty() {
                    out.push_str(&env(&name).unwrap_or_default());
                    names.push(name);
                }
                i += 1 + width;
            }
            out
        })
        .collect();
    (parts.join("$"), names)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2014-11-12T11:45:26.371Z and 2015-11-12T11:45:26.371Z, the plugin's test vectors.
    const FROM: i64 = 1_415_792_726_371;
    const TO: i64 = 1_447_328_726_371;

    fn ctx(interval_ms: i64) -> QueryContext {
        QueryContext {
            from_ms: FROM,
            to_ms: TO,
            interval_ms,
        }
    }

    fn x(sql: &str, interval_ms: i64) -> String {
        expand_macros(sql, &ctx(interval_ms)).unwrap()
    }

    #[test]
    fn expansions_match_the_plugin() {
        assert_eq!(x("$__fromTime", 0), "toDateTime(1415792726)");
        assert_eq!(x("$__toTime", 0), "toDateTime(1447328726)");
        assert_eq!(
            x("$__fromTime_ms", 0),
            "fromUnixTimestamp64Milli(1415792726371)"
        );
        assert_eq!(
            x("$__toTime_ms", 0),
            "fromUnixTimestamp64Milli(1447328726371)"
        );
        assert_eq!(
            x("$__timeFilter(c)", 0),
            "c >= toDateTime(1415792726) AND c <= toDateTime(1447328726)"
        );
        assert_eq!(
            x("$__dateFilter(dateCol)", 0),
            "dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')"
        );
        assert_eq!(
            x("$__dateTimeFilter(dateCol, timeCol)", 0),
            "(dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')) AND (timeCol >= toDateTime(1415792726) AND timeCol <= toDateTime(1447328726))"
        );
        assert_eq!(
            x("$__timeInterval(col)", 20_000),
            "toStartOfInterval(toDateTime(col), INTERVAL 20 second)"
        );
        assert_eq!(
            x("$__timeInterval_ms(col)", 20_000),
            "toStartOfInterval(toDateTime64(col, 3), INTERVAL 20000 millisecond)"
        );
        assert_eq!(x("$__interval_s", 20_000), "20");
        assert_eq!(x("$__interval_s", 500), "1", "at least one second");
        assert_eq!(x("$__timeFrom(ts)", 0), "ts >= toDateTime(1415792726)");
        assert_eq!(x("$__timeTo(ts)", 0), "ts <= toDateTime(1447328726)");
        assert_eq!(
            x("$__timeGroup(ts, 5m)", 0),
            "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"
        );
        assert_eq!(
            x("$__timeGroup(ts, '1h')", 0),
            "toStartOfInterval(toDateTime(ts), INTERVAL 3600 second)"
        );
        assert_eq!(x("$__interval", 300_000), "5m");
        assert_eq!(x("$__interval_ms", 300_000), "300000");
    }

    #[test]
    fn parsing_follows_macropro() {
        // Longest name first: $__interval_s is not $__interval followed by "_s".
        assert_eq!(x("a * $__interval_s / $__interval", 60_000), "a * 60 / 1m");
        // Nested parentheses and commas inside arguments stay in the argument.
        assert_eq!(
            x("$__timeInterval(toDateTime(a, 'UTC'))", 60_000),
            "toStartOfInterval(toDateTime(toDateTime(a, 'UTC')), INTERVAL 60 second)"
        );
        // Unknown macros are left alone; wrong arity is an error.
        assert_eq!(x("$__unknown(x)", 0), "$__unknown(x)");
        assert!(expand_macros("$__timeFilter(a, b)", &ctx(0)).is_err());
        assert!(expand_macros("$__timeGroup(a, soon)", &ctx(0)).is_err());
        // Macros in comments are never evaluated.
        assert_eq!(x("-- $__timeFilter(a, b)\nSELECT 1", 0).trim(), "SELECT 1");
        assert_eq!(x("/* $__table */ 1", 0).trim(), "1");
        assert_eq!(x("'--' || $__toTime", 0), "'--' || toDateTime(1447328726)");
    }

    #[test]
    fn variables_are_quoted_lists() {
        let vars = BTreeMap::from([(
            "city".to_string(),
            vec!["berlin".to_string(), "o'hare".to_string()],
        )]);
        assert_eq!(
            interpolate_variables("city IN (${city:singlequote}) AND $__timeFilter(t)", &vars)
                .unwrap(),
            r"city IN ('berlin','o\'hare') AND $__timeFilter(t)"
        );
        assert_eq!(
            interpolate_variables("IN ($city) [[city]]", &vars).unwrap(),
            r"IN ('berlin','o\'hare') 'berlin','o\'hare'"
        );
        assert!(interpolate_variables("$town", &vars).is_err());
    }

    #[test]
    fn env_expansion_is_gos() {
        let env = |n: &str| (n == "HOST").then(|| "ch.internal".to_string());
        let (v, names) = expand_env("http://$HOST:${PORT}/x", EnvMode::Full, &env);
        assert_eq!(v, "http://ch.internal:/x");
        assert_eq!(names, vec!["HOST", "PORT"]);
        let (v, names) = expand_env("$$HOST costs $$5", EnvMode::Full, &env);
        assert_eq!(v, "$HOST costs $5");
        assert!(names.is_empty());
        let (v, names) = expand_env("{{ $labels.city }} ${HOST}", EnvMode::BracedOnly, &env);
        assert_eq!(v, "{{ $labels.city }} ch.internal");
        assert_eq!(names, vec!["HOST"]);
        // The hazard: a Grafana template in an expanded field loses its variable.
        let (v, names) = expand_env("{{ $labels.city }}", EnvMode::Full, &env);
        assert_eq!(v, "{{ .city }}");
        assert_eq!(names, vec!["labels"]);
    }
}
