//! `pipeline.yaml`: the single source of configuration.
//!
//! Loading goes: read the file → index key positions → pick the profile and
//! deep-merge it over the base document → expand `${VAR}`s → apply `RIDECTL_*`
//! environment overrides → deserialize into [`PipelineConfig`] collecting *every*
//! problem (unknown keys, wrong types) → [`validate`] ranges and cross-references.
//! All problems of a file are reported together, each with `file:line:column`.
//! Loading never touches the network.

mod interpolate;
mod model;
mod source;
mod validate;

use std::fmt;
use std::path::{Path as FsPath, PathBuf};

use serde_yaml::Value;

pub use interpolate::expand;
pub use model::*;
use source::{Path, Pos, PosIndex, Seg};

/// Exit code for configuration errors (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "local";

/// Environment variables that override single settings, for the flags people change
/// most. They win over the file and its profile.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("RIDECTL_KAFKA_BOOTSTRAP_SERVERS", "kafka.bootstrap_servers"),
    ("RIDECTL_CLICKHOUSE_URL", "clickhouse.url"),
    ("RIDECTL_CLICKHOUSE_USER", "clickhouse.user"),
    ("RIDECTL_CLICKHOUSE_PASSWORD", "clickhouse.password"),
    ("RIDECTL_CLICKHOUSE_DATABASE", "clickhouse.database"),
    ("RIDECTL_GENERATOR_RATE", "generator.rate"),
    ("RIDECTL_STATE_DIR", "local.state_dir"),
    ("RIDECTL_KAFKA_PORT", "local.kafka_port"),
    ("RIDECTL_CLICKHOUSE_PORT", "local.clickhouse_port"),
];

/// One problem in the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Dotted path of the setting (`topics.ride_events.partitions`), if known.
    pub path: String,
    /// Where it stands in the file, if it stands in the file.
    pub pos: Option<(usize, usize)>,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

/// Every problem found in a configuration file. Callers exit with [`EXIT_CONFIG`].
#[derive(Debug)]
pub struct ConfigError {
    /// The file that was read.
    pub file: PathBuf,
    /// All problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{} has {n} problem{}:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            let at = match p.pos {
                Some((l, c)) => format!("{}:{l}:{c}", self.file.display()),
                None => self.file.display().to_string(),
            };
            if p.path.is_empty() {
                writeln!(f, "  {at}: {}", p.message)?;
            } else {
                writeln!(f, "  {at}: {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A loaded, validated configuration and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: PipelineConfig,
    /// The profile that was applied.
    pub profile: String,
    /// The file that was read.
    pub file: PathBuf,
}

impl Loaded {
    /// Resolves a path from the configuration against the file's directory.
    pub fn resolve(&self, p: &FsPath) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        let base = self.file.parent().filter(|d| !d.as_os_str().is_empty());
        base.map(|d| d.join(p)).unwrap_or_else(|| p.to_path_buf())
    }

    /// The local stack's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.config.local.state_dir)
    }

    /// The local stack's cache directory (jars, virtualenv).
    pub fn cache_dir(&self) -> PathBuf {
        self.resolve(&self.config.local.cache_dir)
    }

    /// The project directory (where `pipeline.yaml` is).
    pub fn project_dir(&self) -> PathBuf {
        self.resolve(FsPath::new("."))
    }
}

/// Loads `file` with `profile` (or [`DEFAULT_PROFILE`]) using the process environment.
pub fn load(file: &FsPath, profile: Option<&str>) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        problems: vec![Problem {
            path: String::new(),
            pos: None,
            message: format!(
                "cannot read the file: {e} (pass --config FILE or set RIDECTL_CONFIG)"
            ),
        }],
    })?;
    load_str(&text, file, profile, &|name| std::env::var(name).ok())
}

/// Loads configuration text; `env` looks up environment variables (tests pass a map).
pub fn load_str(
    text: &str,
    file: &FsPath,
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let fail = |problems| ConfigError {
        file: file.to_path_buf(),
        problems,
    };
    let mut doc: Value = if text.trim().is_empty() {
        Value::Mapping(Default::default())
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let pos = e.location().map(|l| (l.line(), l.column()));
            fail(vec![Problem {
                path: String::new(),
                pos,
                message: format!("not valid YAML: {e}"),
            }])
        })?
    };
    if !doc.is_mapping() {
        return Err(fail(vec![Problem {
            path: String::new(),
            pos: Some((1, 1)),
            message: "the file must be a mapping of sections (kafka:, topics:, ...)".into(),
        }]));
    }
    let index = PosIndex::build(text);
    let mut report = Report {
        index: &index,
        origin: Vec::new(),
        problems: Vec::new(),
    };

    let profile = profile
        .map(str::to_string)
        .unwrap_or_else(|| DEFAULT_PROFILE.to_string());
    apply_profile(&mut doc, &profile, &mut report);

    for (path, msg) in interpolate::interpolate(&mut doc, env) {
        report.add(&path, false, msg);
    }
    for (var, key) in ENV_OVERRIDES {
        if let Some(val) = env(var).filter(|v| !v.is_empty()) {
            source::set(&mut doc, &Path::parse(key), interpolate::retype(val));
        }
    }

    let config = deserialize_all(doc, &mut report);
    for (path, msg) in validate::validate(&config) {
        report.add(&Path::parse(&path), false, msg);
    }
    if report.problems.is_empty() {
        Ok(Loaded {
            config,
            profile,
            file: file.to_path_buf(),
        })
    } else {
        let mut problems = report.problems;
        problems.sort_by_key(|p| p.pos.unwrap_or((usize::MAX, 0)));
        Err(fail(problems))
    }
}

/// Collects problems and maps merged paths back to positions in the file.
struct Report<'a> {
    index: &'a PosIndex,
    /// (path in the merged document, path in the file) for values taken from a profile.
    origin: Vec<(Path, Path)>,
    problems: Vec<Problem>,
}

impl Report<'_> {
    fn add(&mut self, path: &Path, want_key: bool, message: String) {
        let file_path = self.file_path(path);
        let pos = self
            .index
            .nearest(&file_path, want_key)
            .map(|p: Pos| (p.line, p.col));
        let problem = Problem {
            path: path.to_string(),
            pos,
            message,
        };
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }

    fn file_path(&self, path: &Path) -> Path {
        let best = self
            .origin
            .iter()
            .filter(|(merged, _)| path.0.starts_with(&merged.0))
            .max_by_key(|(merged, _)| merged.0.len());
        match best {
            Some((merged, from)) => {
                let mut p = from.clone();
                p.0.extend_from_slice(&path.0[merged.0.len()..]);
                p
            }
            None => path.clone(),
        }
    }
}

/// Takes the `profiles:` section out of the document and merges the chosen one in.
fn apply_profile(doc: &mut Value, profile: &str, report: &mut Report<'_>) {
    let profiles = doc.as_mapping_mut().and_then(|m| m.remove("profiles"));
    let profiles_path = Path::parse("profiles");
    let chosen = match &profiles {
        None | Some(Value::Null) => None,
        Some(Value::Mapping(m)) => match m.get(profile) {
            Some(p) => Some(p),
            None => {
                let names: Vec<&str> = m.keys().filter_map(Value::as_str).collect();
                report.add(
                    &profiles_path,
                    true,
                    format!(
                        "profile {profile:?} is not defined (defined: {})",
                        names.join(", ")
                    ),
                );
                None
            }
        },
        Some(_) => {
            report.add(
                &profiles_path,
                false,
                "must be a mapping of profile name to settings".into(),
            );
            None
        }
    };
    match chosen {
        Some(overlay @ Value::Mapping(_)) => {
            let from = profiles_path.key(profile);
            source::merge(doc, overlay, &Path::default(), &from, &mut report.origin);
        }
        Some(Value::Null) | None => {}
        Some(_) => report.add(
            &profiles_path.key(profile),
            false,
            "a profile must be a mapping".into(),
        ),
    }
}

/// Deserializes the merged document, collecting every unknown key and wrong type:
/// after each error the offending entry is set aside and deserialization retried,
/// so one run reports them all. Returns the configuration with defaults in place
/// of the rejected entries (only used for further validation when problems exist).
fn deserialize_all(mut doc: Value, report: &mut Report<'_>) -> PipelineConfig {
    let mut seen: Vec<Path> = Vec::new();
    for _ in 0..256 {
        let err = match serde_path_to_error::deserialize::<_, PipelineConfig>(doc.clone()) {
            Ok(config) => return config,
            Err(e) => e,
        };
        let mut path = Path(
            err.path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    _ => None,
                })
                .collect(),
        );
        let message = err.inner().to_string();
        let unknown = quoted_field(&message, "unknown field `");
        if let Some(field) = &unknown
            && path.0.last() != Some(&Seg::Key(field.clone()))
        {
            path.0.push(Seg::Key(field.clone()));
        }
        // A required key is "missing" only because we set its bad value aside: that
        // was reported already; drop the enclosing entry instead.
        let set_aside =
            quoted_field(&message, "missing field `").is_some_and(|f| seen.contains(&path.key(&f)));
        if !set_aside {
            report.add(&path, unknown.is_some(), message);
        }
        if seen.contains(&path) && !set_aside {
            // Removing the entry itself did not help (a required key): drop its parent.
            path.0.pop();
        }
        seen.push(path.clone());
        // Set the offending entry aside; climb towards the root if that changes nothing.
        while !source::remove(&mut doc, &path) {
            if path.0.pop().is_none() {
                return PipelineConfig::default();
            }
        }
    }
    PipelineConfig::default()
}

/// The field name in serde's "unknown field `x`, expected ..." or "missing field `x`"
/// message.
fn quoted_field(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest[..rest.find('`')?].to_string())
}

#[cfg(test)]
mod tests;
