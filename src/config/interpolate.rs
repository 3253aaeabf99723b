//! `${VAR}` and `${VAR:-default}` expansion in configuration values.
//!
//! Expansion happens on parsed string values, never on the raw text, so a secret
//! containing `#` or `: ` cannot change the document's structure. `$${` writes a
//! literal `${`. A value that is exactly one reference takes the type of what it
//! expands to (`partitions: ${PARTS:-12}` is the number 12).

use serde_yaml::Value;

use super::source::Path;

/// Expands every reference under `root`. Returns the problems found: unset
/// variables without a default, and malformed references (path, message).
pub fn interpolate(root: &mut Value, env: &dyn Fn(&str) -> Option<String>) -> Vec<(Path, String)> {
    let mut problems = Vec::new();
    walk(root, &Path::default(), env, &mut problems);
    problems
}

fn walk(
    v: &mut Value,
    here: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<(Path, String)>,
) {
    match v {
        Value::String(s) if s.contains('$') => match expand(s, env) {
            Ok(expanded) => {
                let whole_ref =
                    s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
                *v = if whole_ref {
                    retype(expanded)
                } else {
                    Value::String(expanded)
                };
            }
            Err(msg) => {
                out.push((here.clone(), msg));
                *v = Value::String(String::new());
            }
        },
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                let key = k.as_str().unwrap_or_default().to_string();
                walk(val, &here.key(&key), env, out);
            }
        }
        Value::Sequence(s) => {
            for (i, val) in s.iter_mut().enumerate() {
                walk(val, &here.index(i), env, out);
            }
        }
        _ => {}
    }
}

/// Numbers and booleans keep their type; anything else stays a string.
pub(super) fn retype(text: String) -> Value {
    match serde_yaml::from_str::<Value>(&text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(text),
    }
}

/// Expands the references in one string.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body_start) = tail.strip_prefix("${") else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(format!(
                "unterminated variable reference in {s:?} (missing `}}`)"
            ));
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name {name:?} in {s:?}"));
        }
        match (
            env(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(val), _) => out.push_str(&val),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (set it, or write ${{{name}:-default}})"
                ));
            }
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("kafka1".into()),
            "EMPTY" => Some(String::new()),
            "N" => Some("24".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_references() {
        assert_eq!(expand("${HOST}:9092", &env).unwrap(), "kafka1:9092");
        assert_eq!(expand("${NOPE:-x}", &env).unwrap(), "x");
        assert_eq!(expand("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand("a$${b}", &env).unwrap(), "a${b}");
        assert_eq!(expand("cost $5", &env).unwrap(), "cost $5");
        assert!(
            expand("${NOPE}", &env)
                .unwrap_err()
                .contains("NOPE is not set")
        );
        assert!(expand("${HOST", &env).is_err());
    }

    #[test]
    fn whole_references_take_their_type() {
        let mut v: Value = serde_yaml::from_str("p: ${N}\nq: 'x-${N}'\nr: ${MISSING}").unwrap();
        let problems = interpolate(&mut v, &env);
        assert_eq!(v["p"], Value::from(24));
        assert_eq!(v["q"], Value::from("x-24"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, Path::parse("r"));
    }
}
