//! Which parts of a Grafana dashboard `ridectl dashboard` understands.
//!
//! The dashboard JSON is read with the typed model of [`crate::grafana::model`] (unknown
//! keys rejected), except that a panel whose `type` ridectl does not render is kept
//! as a [`PanelKind::Unsupported`] placeholder instead of failing the whole file:
//! Grafana may show more panel types than ridectl does.
//!
//! Every option a supported panel uses is checked against [`rules`]: the list of
//! field-config and option paths the browser renderer (`dashboard/app.js`) honours,
//! with the values it knows. Anything else is a [`Problem`]: logged when the server
//! starts (the panel is still drawn, without that option), and a failing unit test
//! for the dashboards of this repository, so a new option in the JSON cannot be
//! silently ignored by the local view.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::grafana::model::{Dashboard, Panel, PanelType, Variable};

/// The time ranges of the time picker (`now-<key>` to `now`), in milliseconds.
pub const RANGES: [(&str, i64); 5] = [
    ("15m", 15 * 60_000),
    ("1h", 3_600_000),
    ("6h", 6 * 3_600_000),
    ("24h", 24 * 3_600_000),
    ("7d", 7 * 24 * 3_600_000),
];

/// A range of the time picker by its key (`1h`).
pub fn range_ms(key: &str) -> Option<i64> {
    RANGES.iter().find(|(k, _)| *k == key).map(|(_, ms)| *ms)
}

/// A panel as the local dashboard shows it.
#[derive(Debug)]
pub struct LocalPanel {
    /// The panel id of the JSON (what the browser asks for).
    pub id: i64,
    /// Its title.
    pub title: String,
    /// What is rendered.
    pub kind: PanelKind,
    /// Grid position (24 columns; rows of 30 px in Grafana).
    pub grid: [u32; 4],
    /// Minimum interval of the panel (`interval`), milliseconds; 0 when unset.
    pub min_interval_ms: i64,
    /// The SQL of the panel's first query (with variables and macros), if any.
    pub raw_sql: Option<String>,
    /// What the browser receives: title, description, type, grid position, field
    /// config and options — never the SQL.
    pub view: Value,
    /// Options the renderer does not understand (empty for our dashboards).
    pub problems: Vec<Problem>,
}

/// What a panel is rendered as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PanelKind {
    /// A supported Grafana panel type.
    Supported(PanelType),
    /// Any other type: a placeholder saying it is not supported here.
    Unsupported(String),
}

/// An option of a panel the local renderer does not understand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Panel id.
    pub panel: i64,
    /// Dotted path of the option (`options.legend.placement`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "panel {}: {}: {}", self.panel, self.path, self.message)
    }
}

/// A dashboard as `ridectl dashboard` serves it.
#[derive(Debug)]
pub struct LocalDashboard {
    /// The file it was read from.
    pub source: PathBuf,
    /// Dashboard uid.
    pub uid: String,
    /// Dashboard title.
    pub title: String,
    /// Auto-refresh interval (`refresh`), milliseconds.
    pub refresh_ms: u64,
    /// The default range key of [`RANGES`] (from the dashboard's `time`).
    pub default_range: String,
    /// The dashboard variables (query variables of the ClickHouse plugin).
    pub variables: Vec<Variable>,
    /// Panels, in the file's order.
    pub panels: Vec<LocalPanel>,
}

impl LocalDashboard {
    /// A panel by id.
    pub fn panel(&self, id: i64) -> Option<&LocalPanel> {
        self.panels.iter().find(|p| p.id == id)
    }

    /// A variable by name.
    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.variables.iter().find(|v| v.name == name)
    }

    /// Every problem of every panel.
    pub fn problems(&self) -> Vec<&Problem> {
        self.panels.iter().flat_map(|p| &p.problems).collect()
    }

    /// What the browser receives to lay out the page (`/api/dashboard`).
    pub fn view(&self) -> Value {
        json!({
            "uid": self.uid,
            "title": self.title,
            "refresh_ms": self.refresh_ms,
            "default_range": self.default_range,
            "ranges": RANGES.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            "variables": self.variables.iter().map(|v| json!({
                "name": v.name,
                "label": v.label.clone().unwrap_or_else(|| v.name.clone()),
                "description": v.description,
                "multi": v.multi,
                "include_all": v.include_all,
            })).collect::<Vec<_>>(),
            "panels": self.panels.iter().map(|p| p.view.clone()).collect::<Vec<_>>(),
        })
    }
}

/// The first `*.json` dashboard of `dir` in name order (`grafana/dashboards/`), or
/// `path` itself when it is a file.
pub fn dashboard_file(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read the dashboards directory {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .next()
        .with_context(|| format!("no *.json dashboard in {}", path.display()))
}

/// Reads a dashboard file.
pub fn load(path: &Path) -> anyhow::Result<LocalDashboard> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the dashboard {}", path.display()))?;
    parse(&text, path).with_context(|| format!("dashboard {}", path.display()))
}

/// Parses a dashboard's JSON text (`source` names it in messages).
pub fn parse(text: &str, source: &Path) -> anyhow::Result<LocalDashboard> {
    let mut doc: Value = serde_json::from_str(text).context("not JSON")?;
    // Panels of types ridectl does not render become placeholders; the others (and
    // the rest of the document) go through the strict typed model.
    let raw_panels = doc
        .get_mut("panels")
        .and_then(Value::as_array_mut)
        .map(std::mem::take)
        .context("no `panels` list")?;
    let mut order = Vec::new();
    let mut supported = Vec::new();
    for (i, p) in raw_panels.into_iter().enumerate() {
        let ty = p
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if serde_json::from_value::<PanelType>(Value::String(ty.clone())).is_ok() {
            order.push(Err(supported.len()));
            supported.push(p);
        } else {
            order.push(Ok(placeholder(&p, &ty, i)));
        }
    }
    doc["panels"] = Value::Array(supported.clone());
    let d: Dashboard = serde_path_to_error::deserialize(doc)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.path(), e.inner()))?;
    let mut typed = d
        .panels
        .into_iter()
        .zip(supported)
        .map(|(p, raw)| local_panel(p, raw));
    let mut panels = Vec::new();
    for slot in order {
        match slot {
            Ok(p) => panels.push(p),
            Err(_) => panels.push(typed.next().context("panel count")??),
        }
    }
    let refresh_ms = crate::units::parse_duration(&d.refresh)
        .map_err(|e| anyhow::anyhow!("refresh: {e}"))?
        .as_millis() as u64;
    let default_range = d
        .time
        .from
        .strip_prefix("now-")
        .filter(|k| d.time.to == "now" && range_ms(k).is_some())
        .unwrap_or("1h")
        .to_string();
    Ok(LocalDashboard {
        source: source.to_path_buf(),
        uid: d.uid,
        title: d.title,
        refresh_ms: refresh_ms.max(1000),
        default_range,
        variables: d.templating.list,
        panels,
    })
}

fn grid_of(raw: &Value) -> [u32; 4] {
    let g = |k: &str, default: u32| {
        raw.get("gridPos")
            .and_then(|g| g.get(k))
            .and_then(Value::as_u64)
            .map_or(default, |v| v as u32)
    };
    [g("x", 0), g("y", 0), g("w", 12), g("h", 8)]
}

fn placeholder(raw: &Value, ty: &str, index: usize) -> LocalPanel {
    let id = raw
        .get("id")
        .and_then(Value::as_i64)
        .unwrap_or(-(index as i64) - 1);
    let title = raw
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let grid = grid_of(raw);
    LocalPanel {
        id,
        title: title.clone(),
        kind: PanelKind::Unsupported(ty.to_string()),
        grid,
        min_interval_ms: 0,
        raw_sql: None,
        view: json!({
            "id": id,
            "type": ty,
            "supported": false,
            "title": title,
            "description": raw.get("description").cloned().unwrap_or(Value::Null),
            "gridPos": {"x": grid[0], "y": grid[1], "w": grid[2], "h": grid[3]},
        }),
        problems: Vec::new(),
    }
}

fn type_name(t: PanelType) -> &'static str {
    match t {
        PanelType::Timeseries => "timeseries",
        PanelType::Table => "table",
        PanelType::Stat => "stat",
        PanelType::Barchart => "barchart",
    }
}

fn local_panel(p: Panel, raw: Value) -> anyhow::Result<LocalPanel> {
    let min_interval_ms = match &p.interval {
        Some(i) => crate::units::parse_duration(i)
            .map_err(|e| anyhow::anyhow!("panel {}: interval: {e}", p.id))?
            .as_millis() as i64,
        None => 0,
    };
    let mut problems = check_options(p.id, p.kind, &raw);
    if p.targets.len() > 1 {
        problems.push(Problem {
            panel: p.id,
            path: "targets".into(),
            message: format!("{} queries; only the first is run", p.targets.len()),
        });
    }
    let grid = [p.grid_pos.x, p.grid_pos.y, p.grid_pos.w, p.grid_pos.h];
    let view = json!({
        "id": p.id,
        "type": type_name(p.kind),
        "supported": true,
        "title": p.title,
        "description": p.description,
        "gridPos": {"x": grid[0], "y": grid[1], "w": grid[2], "h": grid[3]},
        "fieldConfig": raw.get("fieldConfig").cloned().unwrap_or(Value::Null),
        "options": raw.get("options").cloned().unwrap_or(Value::Null),
    });
    Ok(LocalPanel {
        id: p.id,
        title: p.title,
        kind: PanelKind::Supported(p.kind),
        grid,
        min_interval_ms,
        raw_sql: p.targets.first().map(|t| t.raw_sql.clone()),
        view,
        problems,
    })
}

/// What a leaf option may be.
#[derive(Clone, Copy, Debug)]
pub enum Allowed {
    /// Any value (structure checked by the typed model).
    Any,
    /// true or false.
    Bool,
    /// A number.
    Number,
    /// One of these values, written as JSON (`"\"bottom\""`, `"[]"`).
    OneOf(&'static [&'static str]),
}

/// Units the renderer formats (`dashboard/app.js`, `fmtUnit`).
pub const UNITS: &[&str] = &[
    "\"short\"",
    "\"none\"",
    "\"percent\"",
    "\"percentunit\"",
    "\"currencyEUR\"",
    "\"currencyUSD\"",
    "\"s\"",
    "\"ms\"",
];

const COMMON_FIELD: &[(&str, Allowed)] = &[
    ("fieldConfig.defaults.unit", Allowed::OneOf(UNITS)),
    ("fieldConfig.defaults.min", Allowed::Number),
    ("fieldConfig.defaults.max", Allowed::Number),
    ("fieldConfig.defaults.decimals", Allowed::Number),
    (
        "fieldConfig.defaults.color.mode",
        Allowed::OneOf(&["\"palette-classic\"", "\"thresholds\""]),
    ),
    (
        "fieldConfig.defaults.thresholds.mode",
        Allowed::OneOf(&["\"absolute\""]),
    ),
    ("fieldConfig.defaults.thresholds.steps", Allowed::Any),
];

const LEGEND_TOOLTIP: &[(&str, Allowed)] = &[
    ("options.legend.showLegend", Allowed::Bool),
    (
        "options.legend.displayMode",
        Allowed::OneOf(&["\"list\"", "\"hidden\""]),
    ),
    ("options.legend.placement", Allowed::OneOf(&["\"bottom\""])),
    ("options.legend.calcs", Allowed::OneOf(&["[]"])),
    (
        "options.tooltip.mode",
        Allowed::OneOf(&["\"single\"", "\"multi\"", "\"none\""]),
    ),
    (
        "options.tooltip.sort",
        Allowed::OneOf(&["\"none\"", "\"asc\"", "\"desc\""]),
    ),
];

/// The options the renderer understands for a panel type: dotted paths of leaves
/// under `fieldConfig.defaults` and `options`, and their values.
pub fn rules(t: PanelType) -> Vec<(&'static str, Allowed)> {
    let mut r = COMMON_FIELD.to_vec();
    match t {
        PanelType::Timeseries => {
            r.extend(LEGEND_TOOLTIP);
            r.extend([
                (
                    "fieldConfig.defaults.custom.drawStyle",
                    Allowed::OneOf(&["\"line\"", "\"points\""]),
                ),
                ("fieldConfig.defaults.custom.lineWidth", Allowed::Number),
                ("fieldConfig.defaults.custom.fillOpacity", Allowed::Number),
                (
                    "fieldConfig.defaults.custom.showPoints",
                    Allowed::OneOf(&["\"never\"", "\"auto\"", "\"always\""]),
                ),
                ("fieldConfig.defaults.custom.spanNulls", Allowed::Bool),
                (
                    "fieldConfig.defaults.custom.axisPlacement",
                    Allowed::OneOf(&["\"auto\"", "\"left\""]),
                ),
                (
                    "fieldConfig.defaults.custom.thresholdsStyle.mode",
                    Allowed::OneOf(&["\"off\"", "\"line\"", "\"area\"", "\"line+area\""]),
                ),
            ]);
        }
        PanelType::Table => r.extend([
            (
                "fieldConfig.defaults.custom.align",
                Allowed::OneOf(&["\"auto\"", "\"left\"", "\"right\""]),
            ),
            (
                "fieldConfig.defaults.custom.cellOptions.type",
                Allowed::OneOf(&["\"auto\"", "\"color-text\"", "\"color-background\""]),
            ),
            (
                "fieldConfig.defaults.custom.filterable",
                Allowed::OneOf(&["false"]),
            ),
            ("options.showHeader", Allowed::Bool),
            (
                "options.cellHeight",
                Allowed::OneOf(&["\"sm\"", "\"md\"", "\"lg\""]),
            ),
            ("options.footer.show", Allowed::OneOf(&["false"])),
            ("options.footer.reducer", Allowed::Any),
            ("options.footer.countRows", Allowed::Bool),
        ]),
        PanelType::Stat => r.extend([
            ("options.reduceOptions.values", Allowed::OneOf(&["false"])),
            (
                "options.reduceOptions.calcs",
                Allowed::OneOf(&["[\"lastNotNull\"]", "[\"last\"]"]),
            ),
            ("options.reduceOptions.fields", Allowed::OneOf(&["\"\""])),
            (
                "options.orientation",
                Allowed::OneOf(&["\"auto\"", "\"horizontal\"", "\"vertical\""]),
            ),
            (
                "options.textMode",
                Allowed::OneOf(&["\"auto\"", "\"value_and_name\"", "\"value\""]),
            ),
            (
                "options.colorMode",
                Allowed::OneOf(&["\"background\"", "\"value\"", "\"none\""]),
            ),
            ("options.graphMode", Allowed::OneOf(&["\"none\""])),
            ("options.justifyMode", Allowed::OneOf(&["\"auto\""])),
            ("options.wideLayout", Allowed::Bool),
            ("options.showPercentChange", Allowed::OneOf(&["false"])),
        ]),
        PanelType::Barchart => {
            r.extend(LEGEND_TOOLTIP);
            r.extend([
                ("fieldConfig.defaults.custom.fillOpacity", Allowed::Number),
                ("fieldConfig.defaults.custom.lineWidth", Allowed::Number),
                (
                    "fieldConfig.defaults.custom.gradientMode",
                    Allowed::OneOf(&["\"none\""]),
                ),
                (
                    "fieldConfig.defaults.custom.axisPlacement",
                    Allowed::OneOf(&["\"auto\"", "\"left\""]),
                ),
                ("options.xField", Allowed::Any),
                (
                    "options.orientation",
                    Allowed::OneOf(&["\"auto\"", "\"vertical\""]),
                ),
                ("options.stacking", Allowed::OneOf(&["\"none\""])),
                (
                    "options.showValue",
                    Allowed::OneOf(&["\"auto\"", "\"always\"", "\"never\""]),
                ),
                ("options.groupWidth", Allowed::Number),
                ("options.barWidth", Allowed::Number),
                ("options.xTickLabelRotation", Allowed::OneOf(&["0"])),
            ]);
        }
    }
    r
}

/// Override properties the renderer applies (matched `byName`).
pub const OVERRIDE_PROPERTIES: &[&str] = &["unit", "thresholds", "decimals", "custom.cellOptions"];

fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                leaves(&format!("{prefix}.{k}"), v, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

fn allowed(rule: Allowed, v: &Value) -> bool {
    match rule {
        Allowed::Any => true,
        Allowed::Bool => v.is_boolean(),
        Allowed::Number => v.is_number(),
        Allowed::OneOf(values) => {
            let text = v.to_string();
            values.contains(&text.as_str())
        }
    }
}

/// Every option of a panel's JSON that [`rules`] does not cover (unknown paths,
/// unknown values, unsupported overrides).
pub fn check_options(id: i64, t: PanelType, raw: &Value) -> Vec<Problem> {
    let rules = rules(t);
    let mut found = Vec::new();
    let empty = Value::Object(Map::new());
    leaves(
        "fieldConfig.defaults",
        raw.pointer("/fieldConfig/defaults").unwrap_or(&empty),
        &mut found,
    );
    leaves("options", raw.get("options").unwrap_or(&empty), &mut found);
    let mut problems = Vec::new();
    for (path, value) in found {
        if value.as_object().is_some_and(Map::is_empty) {
            continue;
        }
        // A rule on a parent path (an `Any` object such as thresholds.steps) covers it.
        let rule = rules.iter().find(|(p, r)| {
            path == *p || (matches!(r, Allowed::Any) && path.starts_with(&format!("{p}.")))
        });
        match rule {
            None => problems.push(Problem {
                panel: id,
                path,
                message: format!("not understood by the local renderer ({value})"),
            }),
            Some((_, rule)) if !allowed(*rule, &value) => problems.push(Problem {
                panel: id,
                path,
                message: format!("value {value} is not supported here ({rule:?})"),
            }),
            Some(_) => {}
        }
    }
    if let Some(overrides) = raw
        .pointer("/fieldConfig/overrides")
        .and_then(Value::as_array)
    {
        for (i, o) in overrides.iter().enumerate() {
            if o.pointer("/matcher/id").and_then(Value::as_str) != Some("byName") {
                problems.push(Problem {
                    panel: id,
                    path: format!("fieldConfig.overrides[{i}].matcher.id"),
                    message: "only byName matchers are applied".into(),
                });
            }
            for p in o
                .get("properties")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let pid = p.get("id").and_then(Value::as_str).unwrap_or("");
                if !OVERRIDE_PROPERTIES.contains(&pid) {
                    problems.push(Problem {
                        panel: id,
                        path: format!("fieldConfig.overrides[{i}].properties.{pid}"),
                        message: "override property not applied here".into(),
                    });
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ride_ops() -> LocalDashboard {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/ride-ops.json");
        load(&path).expect("ride-ops.json loads")
    }

    #[test]
    fn every_panel_type_and_option_of_our_dashboards_is_understood() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
        let mut files = 0;
        for e in std::fs::read_dir(&dir).expect("grafana/dashboards") {
            let path = e.expect("entry").path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            files += 1;
            let d = load(&path).expect("loads");
            for p in &d.panels {
                assert!(
                    matches!(p.kind, PanelKind::Supported(_)),
                    "{}: panel {} ({:?}) is not rendered locally",
                    path.display(),
                    p.id,
                    p.kind
                );
                assert!(p.raw_sql.is_some(), "panel {} has a query", p.id);
            }
            let problems: Vec<String> = d.problems().iter().map(|p| p.to_string()).collect();
            assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
        }
        assert!(files >= 1);
    }

    #[test]
    fn ride_ops_is_read_with_its_layout_refresh_and_variable() {
        let d = ride_ops();
        assert_eq!(d.uid, "ridectl-ride-ops");
        assert_eq!(d.refresh_ms, 10_000);
        assert_eq!(d.default_range, "1h");
        assert_eq!(d.panels.len(), 8);
        let kinds: Vec<_> = d.panels.iter().map(|p| p.kind.clone()).collect();
        for t in [
            PanelType::Timeseries,
            PanelType::Table,
            PanelType::Stat,
            PanelType::Barchart,
        ] {
            assert!(kinds.contains(&PanelKind::Supported(t)), "{t:?}");
        }
        let p = d.panel(2).expect("panel 2");
        assert_eq!(p.grid, [12, 0, 12, 8]);
        assert_eq!(p.min_interval_ms, 60_000);
        assert_eq!(p.view["fieldConfig"]["defaults"]["unit"], "percentunit");
        assert!(p.view.get("targets").is_none(), "no SQL to the browser");
        assert!(!d.view().to_string().contains("SELECT"));
        let v = d.variable("city").expect("city");
        assert!(v.multi && v.include_all);
    }

    #[test]
    fn unknown_panel_types_become_placeholders() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/ride-ops.json");
        let mut doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let panels = doc["panels"].as_array_mut().expect("panels");
        panels.insert(
            1,
            json!({"id": 99, "type": "geomap", "title": "Drivers on a map",
                   "gridPos": {"x": 0, "y": 30, "w": 24, "h": 8}, "whatever": {"a": 1}}),
        );
        let d = parse(&doc.to_string(), &path).expect("still loads");
        assert_eq!(d.panels.len(), 9);
        let p = &d.panels[1];
        assert_eq!(p.id, 99);
        assert_eq!(p.kind, PanelKind::Unsupported("geomap".into()));
        assert_eq!(p.view["supported"], false);
        assert_eq!(p.grid, [0, 30, 24, 8]);
        assert!(p.raw_sql.is_none());
        assert_eq!(d.panels[2].id, 2, "order kept");
    }

    #[test]
    fn options_the_renderer_does_not_know_are_problems() {
        let raw = json!({
            "fieldConfig": {"defaults": {"unit": "bytes", "custom": {"drawStyle": "bars"},
                                         "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": null}]}},
                            "overrides": [{"matcher": {"id": "byRegexp", "options": "x"},
                                           "properties": [{"id": "links", "value": []}]}]},
            "options": {"legend": {"placement": "right", "showLegend": true}, "newThing": 1}
        });
        let problems = check_options(7, PanelType::Timeseries, &raw);
        let mut paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "fieldConfig.defaults.custom.drawStyle",
                "fieldConfig.defaults.unit",
                "fieldConfig.overrides[0].matcher.id",
                "fieldConfig.overrides[0].properties.links",
                "options.legend.placement",
                "options.newThing",
            ]
        );
    }
}
