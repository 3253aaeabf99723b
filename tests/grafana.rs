//! The Grafana files under grafana/, checked by every means short of running Grafana
//! (which cannot be installed on the build machines):
//!
//! * every provisioning file parses into a typed model of what Grafana accepts, with
//!   unknown keys rejected ([`model`]), and the files agree with each other (data
//!   source uid and type, refIds, `condition`, receiver names, dashboard and panel of
//!   the alert rule) and with pipeline.yaml (threshold, duration, severity);
//! * the environment variables the files read are the documented ones;
//! * every panel, variable and alert query is expanded as Grafana and the ClickHouse
//!   plugin would ([`macros`]), run against ClickHouse on a test database filled with
//!   data, and returns rows with the columns its panel needs;
//! * the Grafana alert rule is the SQL of `ridectl alerts` (textually, after the
//!   parameters are written as macros) and fires for the same cities on the same data.
//!
//! The dashboard JSON as a whole is validated against the Grafana foundation SDK's
//! published models in tests/python/test_grafana_dashboard.py.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ridectl::alerts::{self, Window};
use ridectl::config::{AlertRule, Loaded};
use ridectl::grafana::macros::{
    EnvMode, QueryContext, expand_env, expand_macros, interpolate_variables,
};
use ridectl::grafana::model::*;
use ridectl::query::{self, Params, ResultSet};
use ridectl::time::{EpochMillis, format_clickhouse, now_millis};

/// The environment variables the provisioning files may read (docs/grafana.md).
const DOCUMENTED_ENV: [&str; 6] = [
    "CLICKHOUSE_HOST",
    "CLICKHOUSE_HTTP_PORT",
    "CLICKHOUSE_DATABASE",
    "CLICKHOUSE_READONLY_USER",
    "CLICKHOUSE_READONLY_PASSWORD",
    "PAGERDUTY_ROUTING_KEY",
];

const CLICKHOUSE_PLUGIN: &str = "grafana-clickhouse-datasource";
const EXPRESSIONS: &str = "__expr__";

fn grafana_dir() -> PathBuf {
    common::project_dir().join("grafana")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parses a file into a model; the error names the file and the exact key path.
fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = read(path);
    let de = serde_yaml::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de)
        .unwrap_or_else(|e| panic!("{}: {}: {}", path.display(), e.path(), e.inner()))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

struct Files {
    datasources: DatasourceFile,
    providers: DashboardProviderFile,
    alerting: Vec<AlertingFile>,
    dashboards: Vec<(PathBuf, Dashboard)>,
}

fn load_files() -> Files {
    let p = grafana_dir().join("provisioning");
    let dashboards = std::fs::read_dir(grafana_dir().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let text = read(&path);
            let mut de = serde_json::Deserializer::from_str(&text);
            let d: Dashboard = serde_path_to_error::deserialize(&mut de)
                .unwrap_or_else(|e| panic!("{}: {}: {}", path.display(), e.path(), e.inner()));
            (path, d)
        })
        .collect();
    Files {
        datasources: parse_yaml(&p.join("datasources/clickhouse.yaml")),
        providers: parse_yaml(&p.join("dashboards/ridectl.yaml")),
        alerting: yaml_files(&p.join("alerting"))
            .iter()
            .map(|f| parse_yaml(f))
            .collect(),
        dashboards,
    }
}

fn the_rule(l: &Loaded) -> AlertRule {
    l.config
        .alerts
        .rules
        .iter()
        .find(|r| r.name == "city-cancellation-rate")
        .cloned()
        .expect("pipeline.yaml defines city-cancellation-rate")
}

fn clickhouse_model(q: &RuleQuery) -> ClickHouseQuery {
    serde_json::from_value(q.model.clone())
        .unwrap_or_else(|e| panic!("rule query {}: {e}", q.ref_id))
}

fn expression_model(q: &RuleQuery) -> ExpressionQuery {
    serde_json::from_value(q.model.clone())
        .unwrap_or_else(|e| panic!("rule expression {}: {e}", q.ref_id))
}

fn rules(files: &Files) -> Vec<(&RuleGroup, &Rule)> {
    files
        .alerting
        .iter()
        .flat_map(|f| &f.groups)
        .flat_map(|g| g.rules.iter().map(move |r| (g, r)))
        .collect()
}

fn all_policies<'a>(p: &'a Policy, out: &mut Vec<&'a Policy>) {
    out.push(p);
    for r in &p.routes {
        all_policies(r, out);
    }
}

/// A Prometheus-style duration as Grafana parses `interval`, `for`, `group_wait`.
fn duration_secs(s: &str) -> u64 {
    ridectl::units::parse_duration(s)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .as_secs()
}

// ---------------------------------------------------------------------------------

#[test]
fn provisioning_files_parse_and_reference_each_other() {
    let f = load_files();
    let l = common::loaded();
    let rule = the_rule(&l);

    // Data source: the ClickHouse plugin over HTTP, credentials from the environment.
    assert_eq!(f.datasources.api_version, 1);
    assert_eq!(f.datasources.datasources.len(), 1);
    let ds = &f.datasources.datasources[0];
    assert_eq!(ds.kind, CLICKHOUSE_PLUGIN);
    assert_eq!(ds.json_data.protocol, "http");
    assert!(
        ds.database.is_none(),
        "the plugin reads jsonData.defaultDatabase"
    );
    for (what, v) in [
        ("host", ds.json_data.host.clone()),
        ("port", ds.json_data.port.text()),
        ("defaultDatabase", ds.json_data.default_database.clone()),
        ("username", ds.json_data.username.clone()),
        ("password", ds.secure_json_data.password.clone()),
    ] {
        assert!(v.starts_with('$'), "{what} comes from the environment: {v}");
    }

    // Dashboards: a file provider; every dashboard has a unique uid.
    assert_eq!(f.providers.api_version, 1);
    assert!(
        f.providers
            .providers
            .iter()
            .all(|p| p.kind == "file" && p.options.path == "/var/lib/grafana/dashboards"),
        "docs/grafana.md mounts grafana/dashboards at /var/lib/grafana/dashboards"
    );
    assert!(!f.dashboards.is_empty());
    let uids: BTreeSet<&str> = f.dashboards.iter().map(|(_, d)| d.uid.as_str()).collect();
    assert_eq!(uids.len(), f.dashboards.len());

    for (path, d) in &f.dashboards {
        let at = path.display();
        assert_eq!(d.refresh, "10s", "{at}");
        let ids: BTreeSet<i64> = d.panels.iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), d.panels.len(), "{at}: panel ids are unique");
        let mut cells = BTreeSet::new();
        for p in &d.panels {
            assert_eq!(p.datasource.uid, ds.uid, "{at} panel {}", p.title);
            assert_eq!(p.datasource.kind, ds.kind, "{at} panel {}", p.title);
            assert!(p.grid_pos.x + p.grid_pos.w <= 24, "{at} panel {}", p.title);
            for x in p.grid_pos.x..p.grid_pos.x + p.grid_pos.w {
                for y in p.grid_pos.y..p.grid_pos.y + p.grid_pos.h {
                    assert!(cells.insert((x, y)), "{at}: panel {} overlaps", p.title);
                }
            }
            let refs: BTreeSet<&str> = p.targets.iter().map(|t| t.ref_id.as_str()).collect();
            assert_eq!(
                refs.len(),
                p.targets.len(),
                "{at} panel {}: refIds",
                p.title
            );
            for t in &p.targets {
                assert_eq!(t.datasource, p.datasource);
                assert!(t.plugin_version.starts_with("4."), "no v3 migration");
                let (format, query_type) = if p.kind == PanelType::Timeseries {
                    (0, ClickHouseQueryType::Timeseries)
                } else {
                    (1, ClickHouseQueryType::Table)
                };
                assert_eq!(
                    (t.format, t.query_type),
                    (format, query_type),
                    "{at} panel {}",
                    p.title
                );
            }
        }
        for v in &d.templating.list {
            assert_eq!(v.datasource.uid, ds.uid);
            assert_eq!(v.kind, "query");
            assert_eq!(v.query.query_type, "sql");
        }
    }
    let (_, ops) = f
        .dashboards
        .iter()
        .find(|(p, _)| p.ends_with("ride-ops.json"))
        .expect("ride-ops.json");
    let city = &ops.templating.list[0];
    assert!(city.name == "city" && city.multi && city.include_all);

    // The threshold drawn on the cancellation panel is the rule's.
    let cancel = ops
        .panels
        .iter()
        .find(|p| p.title == "Cancellation rate per city")
        .unwrap();
    let steps = &cancel
        .field_config
        .defaults
        .thresholds
        .as_ref()
        .unwrap()
        .steps;
    assert_eq!(steps.last().unwrap().value, Some(rule.threshold));
    assert_eq!(
        cancel.field_config.defaults.custom.as_ref().unwrap()["thresholdsStyle"]["mode"],
        "line+area"
    );

    // Alerting: rules, contact point, policies.
    assert!(f.alerting.iter().all(|a| a.api_version == 1));
    let contact_points: BTreeMap<&str, &ContactPoint> = f
        .alerting
        .iter()
        .flat_map(|a| &a.contact_points)
        .map(|c| (c.name.as_str(), c))
        .collect();
    let rules = rules(&f);
    assert_eq!(rules.len(), 1);
    for (group, r) in &rules {
        duration_secs(&group.interval);
        duration_secs(&r.for_duration);
        let refs: BTreeSet<&str> = r.data.iter().map(|q| q.ref_id.as_str()).collect();
        assert_eq!(refs.len(), r.data.len(), "rule {}: refIds unique", r.title);
        assert!(
            refs.contains(r.condition.as_str()),
            "condition {}",
            r.condition
        );
        for q in &r.data {
            if q.datasource_uid == EXPRESSIONS {
                let e = expression_model(q);
                assert_eq!(e.ref_id, q.ref_id);
                assert_eq!(e.datasource.uid, EXPRESSIONS);
                assert!(refs.contains(e.expression.as_str()), "{}", e.expression);
                assert_ne!(e.expression, q.ref_id);
            } else {
                assert_eq!(
                    q.datasource_uid, ds.uid,
                    "rule {} query {}",
                    r.title, q.ref_id
                );
                let m = clickhouse_model(q);
                assert_eq!(m.ref_id, q.ref_id);
                assert_eq!(m.datasource.uid, ds.uid);
                assert_eq!(m.datasource.kind, ds.kind);
                assert_eq!(
                    (m.format, m.query_type),
                    (1, ClickHouseQueryType::Table),
                    "alerting on a table: one row per city"
                );
            }
        }
        let dashboard = f
            .dashboards
            .iter()
            .find(|(_, d)| Some(&d.uid) == r.dashboard_uid.as_ref())
            .map(|(_, d)| d)
            .expect("the rule's dashboard exists");
        assert!(
            dashboard.panels.iter().any(|p| Some(p.id) == r.panel_id),
            "the rule's panel exists"
        );
    }
    for cp in contact_points.values() {
        for receiver in &cp.receivers {
            assert_eq!(receiver.kind, "pagerduty");
            let s: PagerDutySettings = serde_json::from_value(receiver.settings.clone())
                .unwrap_or_else(|e| panic!("contact point {}: {e}", cp.name));
            assert_eq!(s.integration_key, "$PAGERDUTY_ROUTING_KEY");
            assert_eq!(s.severity.as_deref(), Some(rule.severity.as_str()));
        }
    }
    let policies: Vec<&Policy> = f.alerting.iter().flat_map(|a| &a.policies).collect();
    assert_eq!(policies.len(), 1, "one policy tree per organization");
    let mut tree = Vec::new();
    all_policies(policies[0], &mut tree);
    assert!(policies[0].receiver.is_some(), "the root has a receiver");
    for p in &tree {
        if let Some(r) = &p.receiver {
            assert!(
                contact_points.contains_key(r.as_str()),
                "receiver {r} exists"
            );
        }
        for d in [&p.group_wait, &p.group_interval, &p.repeat_interval]
            .into_iter()
            .flatten()
        {
            duration_secs(d);
        }
        for m in &p.object_matchers {
            assert!(["=", "!=", "=~", "!~"].contains(&m[1].as_str()), "{m:?}");
        }
    }
    // Grouped by city all the way down, and the rule's labels reach the route.
    assert!(tree.iter().all(|p| p.group_by.iter().any(|g| g == "city")));
    let (_, r) = rules[0];
    let route = &policies[0].routes[0];
    assert!(
        route
            .object_matchers
            .iter()
            .all(|m| m[1] == "=" && r.labels.get(&m[0]) == Some(&m[2])),
        "the ridectl route matches the rule's labels"
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let parse = |yaml: &str| serde_yaml::from_str::<DatasourceFile>(yaml).map(|_| ());
    let ok = "apiVersion: 1\ndatasources:\n  - {name: a, uid: a, type: t, jsonData: {protocol: http, host: h, port: 1, defaultDatabase: d, username: u}, secureJsonData: {password: p}}\n";
    parse(ok).unwrap();
    let err = parse(&ok.replace("defaultDatabase", "database")).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `database`"),
        "{err}"
    );
    assert!(parse(&ok.replace("uid: a", "uid: a, colour: red")).is_err());
    let rule = serde_yaml::from_str::<AlertingFile>(
        "apiVersion: 1\ngroups: [{name: g, folder: f, interval: 1m, rules: [{uid: u, title: t, condition: A, data: [], for: 0s, noDataSate: OK}]}]",
    );
    assert!(rule.is_err(), "a misspelt key fails");
}

/// Grafana's provisioning `$VAR` expansion, walked over a file: every value of
/// `groups[].rules[].data[].model` is passed verbatim (that is how `$__macros`
/// survive), rule annotations expand only `${VAR}`, the rest `$VAR` too.
fn env_references(value: &serde_yaml::Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_yaml::Value::String(s) => {
            let mode = if path.contains(".annotations.") {
                EnvMode::BracedOnly
            } else {
                EnvMode::Full
            };
            let (_, names) = expand_env(s, mode, &|_| None);
            out.extend(names.into_iter().map(|n| (path.to_string(), n)));
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                env_references(v, &format!("{path}[{i}]"), out);
            }
        }
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default();
                if k == "model" && path.contains(".data[") {
                    continue;
                }
                env_references(v, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn provisioning_reads_only_the_documented_environment() {
    let p = grafana_dir().join("provisioning");
    let mut files = yaml_files(&p.join("alerting"));
    files.push(p.join("datasources/clickhouse.yaml"));
    files.push(p.join("dashboards/ridectl.yaml"));
    let docs = read(&common::project_dir().join("docs/grafana.md"));
    let mut used = BTreeSet::new();
    for file in files {
        let doc: serde_yaml::Value = serde_yaml::from_str(&read(&file)).unwrap();
        let mut refs = Vec::new();
        env_references(&doc, "", &mut refs);
        for (path, name) in refs {
            assert!(
                DOCUMENTED_ENV.contains(&name.as_str()),
                "{}{path}: Grafana would replace ${name} from its environment",
                file.display()
            );
            used.insert(name);
        }
    }
    for name in DOCUMENTED_ENV {
        assert!(used.contains(name), "{name} is documented but unused");
        assert!(docs.contains(name), "docs/grafana.md documents {name}");
    }

    // With the documented values set, the data source is what the plugin needs.
    let env = |n: &str| {
        Some(
            match n {
                "CLICKHOUSE_HOST" => "127.0.0.1",
                "CLICKHOUSE_HTTP_PORT" => "8123",
                "CLICKHOUSE_DATABASE" => "ridectl",
                "CLICKHOUSE_READONLY_USER" => "grafana",
                _ => "secret",
            }
            .to_string(),
        )
    };
    let f = load_files();
    let ds = &f.datasources.datasources[0].json_data;
    let x = |s: &str| expand_env(s, EnvMode::Full, &env).0;
    assert_eq!(x(&ds.host), "127.0.0.1");
    assert!(
        x(&ds.port.text()).parse::<u16>().is_ok(),
        "the plugin parses the port"
    );
    assert_eq!(x(&ds.default_database), "ridectl");
}

/// The Grafana rule's SQL from the shared file: comments dropped, parameters written
/// as the plugin's macros and the rule's numbers, narrowed to (city, breach_rate).
fn grafana_form(shared: &str, rule: &AlertRule) -> String {
    let minutes = alerts::window_minutes(rule);
    let body: String = shared
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let body = body
        .replace(
            "{from:DateTime64(3, 'UTC')}",
            &format!("(toStartOfMinute($__toTime) - INTERVAL {minutes} MINUTE)"),
        )
        .replace("{to:DateTime64(3, 'UTC')}", "toStartOfMinute($__toTime)")
        .replace("{threshold:Float64}", &rule.threshold.to_string())
        .replace("{min_requests:UInt64}", &rule.min_requests.to_string())
        .replace("{window_minutes:UInt32}", &minutes.to_string());
    assert!(!body.contains('{'), "every parameter is replaced: {body}");
    format!("SELECT city, breach_rate FROM ( {body} )")
}

fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn grafana_alert_rule_is_the_rule_of_pipeline_yaml() {
    let f = load_files();
    let rule = the_rule(&common::loaded());
    let (group, r) = rules(&f)[0];
    assert_eq!(r.title, rule.name);
    assert_eq!(r.labels.get("severity"), Some(&rule.severity));
    assert_eq!(r.labels.get("rule"), Some(&rule.name));
    assert_eq!(
        duration_secs(&r.for_duration),
        0,
        "the duration is in the query"
    );
    assert_eq!(duration_secs(&group.interval), 60, "evaluated every minute");
    assert_eq!(r.no_data_state, Some(NoDataState::Ok));

    let query = r
        .data
        .iter()
        .find(|q| q.datasource_uid != EXPRESSIONS)
        .unwrap();
    assert!(
        query.relative_time_range.from >= i64::from(alerts::window_minutes(&rule)) * 60 + 60,
        "the range covers the window"
    );
    assert_eq!(
        normalize(&clickhouse_model(query).raw_sql),
        normalize(&grafana_form(alerts::RULE_SQL, &rule)),
        "grafana/provisioning/alerting/rules.yaml runs sql/alerts/cancellation_rate.sql"
    );
    let condition = r.data.iter().find(|q| q.ref_id == r.condition).unwrap();
    let threshold = expression_model(condition);
    assert_eq!(threshold.kind, ExpressionType::Threshold);
    assert_eq!(threshold.expression, query.ref_id);
    assert_eq!(threshold.conditions.len(), 1);
    assert_eq!(threshold.conditions[0].evaluator.kind, EvaluatorType::Gt);
    assert_eq!(
        threshold.conditions[0].evaluator.params,
        vec![rule.threshold]
    );
}

// ---------------------------------------------------------------------------------
// Queries against ClickHouse.

const CITIES: [&str; 3] = ["berlin", "prague", "vienna"];

/// The aggregation worker's output table (sql/schema/002_city_windows.sql on its
/// branch), created only where the schema does not have it yet.
const CITY_WINDOW_METRICS: &str = "CREATE TABLE IF NOT EXISTS city_window_metrics
(
    window_start DateTime64(3, 'UTC'), window_end DateTime64(3, 'UTC'),
    city LowCardinality(String), total_events UInt64, requests UInt64, completions UInt64,
    cancellations UInt64, avg_fare Float64, unique_riders UInt64, cancellation_rate Float64,
    completion_rate Float64, is_final UInt8, updated_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (city, window_start, window_end)";

/// 15 minutes of rides from `t0` in three cities (berlin at 50% cancellations in
/// minutes 0–6, 10% after; the others 10%), rides still open near the end, driver
/// positions, and sliding-window rows. Returns the end of the data.
async fn dataset(l: &Loaded, t0: EpochMillis) -> EpochMillis {
    let ch = ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write);
    let mut rows = Vec::new();
    let mut n = 0u64;
    let mut event = |rows: &mut Vec<String>,
                     ty: &str,
                     ride: &str,
                     at: i64,
                     city: &str,
                     fare: f64,
                     user: &str| {
        n += 1;
        rows.push(format!(
            "('e{n}',1,'{ty}','{ride}',fromUnixTimestamp64Milli({at}),'{city}',{fare},'{user}','',0,0,0,0,NULL,'',0,{n})"
        ));
    };
    for m in 0..15i64 {
        for (c, city) in CITIES.iter().enumerate() {
            let cancelled = if *city == "berlin" && m < 7 { 10 } else { 2 };
            for i in 0..20i64 {
                let at = t0 + m * 60_000 + i * 2_000;
                let ride = format!("{city}-{m}-{i}");
                let user = format!("u{}", (i + m) % 23);
                let fare = 8.0 + (c as f64) * 2.0 + (i % 5) as f64;
                event(&mut rows, "requested", &ride, at, city, fare, &user);
                if i < cancelled {
                    event(&mut rows, "cancelled", &ride, at + 1000, city, fare, &user);
                } else if m < 13 || i % 2 == 0 {
                    // Rides of the last two minutes stay partly open.
                    event(&mut rows, "accepted", &ride, at + 1000, city, fare, &user);
                    event(&mut rows, "completed", &ride, at + 1500, city, fare, &user);
                }
            }
        }
    }
    ch.query_raw(&format!(
        "INSERT INTO ride_events (event_id,schema_version,event_type,ride_id,timestamp,city,estimated_fare,user_id,driver_id,pickup_lat,pickup_lng,dropoff_lat,dropoff_lng,final_fare,cancelled_by,kafka_partition,kafka_offset) VALUES {}",
        rows.join(",")
    ))
    .execute()
    .await
    .unwrap();

    let end = t0 + 15 * 60_000;
    let drivers: Vec<String> = CITIES
        .iter()
        .flat_map(|city| {
            (0..6).map(move |d| {
                let status = if d % 3 == 0 { "on_trip" } else { "available" };
                format!(
                    "('{city}-d{d}','{city}',0,0,'{status}',fromUnixTimestamp64Milli({}),0,{d})",
                    end - 20_000 - d * 1000
                )
            })
        })
        .collect();
    ch.query_raw(&format!(
        "INSERT INTO driver_locations (driver_id,city,lat,lng,status,timestamp,kafka_partition,kafka_offset) VALUES {}",
        drivers.join(",")
    ))
    .execute()
    .await
    .unwrap();

    ch.query_raw(CITY_WINDOW_METRICS).execute().await.unwrap();
    let windows: Vec<String> = (0..11i64)
        .flat_map(|w| {
            CITIES.iter().map(move |city| {
                let start = t0 + w * 60_000;
                format!(
                    "('{}','{}','{city}',200,100,80,20,11.5,{},0.2,0.8,1,'{}')",
                    format_clickhouse(start),
                    format_clickhouse(start + 300_000),
                    20 + w,
                    format_clickhouse(start + 330_000)
                )
            })
        })
        .collect();
    ch.query_raw(&format!(
        "INSERT INTO city_window_metrics (window_start,window_end,city,total_events,requests,completions,cancellations,avg_fare,unique_riders,cancellation_rate,completion_rate,is_final,updated_at) VALUES {}",
        windows.join(",")
    ))
    .execute()
    .await
    .unwrap();
    end
}

fn is_numeric(ty: &str) -> bool {
    let t = ty
        .trim_start_matches("Nullable(")
        .trim_start_matches("LowCardinality(");
    ["Int", "UInt", "Float", "Decimal"]
        .iter()
        .any(|p| t.starts_with(p))
}

fn is_text(ty: &str) -> bool {
    matches!(
        ty,
        "String"
            | "LowCardinality(String)"
            | "Nullable(String)"
            | "LowCardinality(Nullable(String))"
    )
}

async fn run(l: &Loaded, sql: &str, what: &str) -> ResultSet {
    let params = Params::new(0, 0, Vec::new(), 0.0);
    query::run_sql(&l.config.clickhouse, sql, &params)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}\n{sql}"))
}

/// Expands a query as Grafana would for `ctx` and `variables`; no `$` survives.
fn expand(
    raw: &str,
    ctx: &QueryContext,
    variables: &BTreeMap<String, Vec<String>>,
    what: &str,
) -> String {
    let sql = interpolate_variables(raw, variables).unwrap_or_else(|e| panic!("{what}: {e}"));
    let sql = expand_macros(&sql, ctx).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(!sql.contains('$'), "{what}: unexpanded: {sql}");
    sql
}

/// Checks that a panel's result has the shape its visualization needs.
fn check_shape(panel: &Panel, rs: &ResultSet, what: &str) {
    let cols: Vec<(&str, &str)> = rs
        .columns
        .iter()
        .map(String::as_str)
        .zip(rs.types.iter().map(String::as_str))
        .collect();
    assert!(!rs.rows.is_empty(), "{what}: no rows");
    match panel.kind {
        PanelType::Timeseries => {
            // sqlds turns long frames (time, labels..., values...) into series: the
            // time first, sorted; strings become labels; at least one number.
            assert!(
                cols[0].1.starts_with("DateTime"),
                "{what}: time column first, got {cols:?}"
            );
            assert!(
                cols[1..].iter().any(|(_, t)| is_numeric(t)),
                "{what}: {cols:?}"
            );
            assert!(
                cols[1..].iter().all(|(_, t)| is_numeric(t) || is_text(t)),
                "{what}: {cols:?}"
            );
            let times: Vec<String> = rs.rows.iter().map(|r| r[0].to_string()).collect();
            assert!(
                times.windows(2).all(|w| w[0] <= w[1]),
                "{what}: sorted by time"
            );
        }
        PanelType::Table => {
            for o in &panel.field_config.overrides {
                assert!(
                    rs.column(&o.matcher.options).is_some(),
                    "{what}: override for missing column {}",
                    o.matcher.options
                );
            }
        }
        PanelType::Barchart => {
            let x = panel.options["xField"].as_str().unwrap();
            let i = rs
                .column(x)
                .unwrap_or_else(|| panic!("{what}: no {x} column"));
            assert!(is_text(cols[i].1), "{what}: {cols:?}");
            assert!(cols.iter().any(|(_, t)| is_numeric(t)), "{what}: {cols:?}");
        }
        PanelType::Stat => {
            assert!(cols.iter().all(|(_, t)| is_numeric(t)), "{what}: {cols:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_and_returns_what_its_panel_needs() {
    let l = common::isolated("grafana");
    common::provision(&l).await;
    let t = now_millis() - 2 * 3_600_000;
    let t0 = t - t.rem_euclid(60_000);
    let end = dataset(&l, t0).await;
    let f = load_files();

    for (path, d) in &f.dashboards {
        // Grafana's interval for the panels: their minimum (1m) or wider ranges.
        for interval_ms in [60_000, 300_000] {
            let ctx = QueryContext {
                from_ms: t0,
                to_ms: end,
                interval_ms,
            };
            // Variables first, as Grafana resolves them; then "All" and one city.
            let mut all = BTreeMap::new();
            for v in &d.templating.list {
                let what = format!("{} variable {}", path.display(), v.name);
                let rs = run(&l, &expand(&v.query.raw_sql, &ctx, &all, &what), &what).await;
                assert!(is_text(&rs.types[0]), "{what}: {:?}", rs.types);
                let values: Vec<String> = rs
                    .rows
                    .iter()
                    .map(|r| r[0].as_str().unwrap_or_default().to_string())
                    .collect();
                assert_eq!(values, CITIES, "{what}");
                all.insert(v.name.clone(), values);
            }
            let one: BTreeMap<String, Vec<String>> = all
                .keys()
                .map(|k| (k.clone(), vec!["prague".to_string()]))
                .collect();
            for p in &d.panels {
                for t in &p.targets {
                    for (selection, vars) in [("all cities", &all), ("prague", &one)] {
                        let what = format!(
                            "{} panel {:?} {} ({selection}, interval {interval_ms} ms)",
                            path.display(),
                            p.title,
                            t.ref_id
                        );
                        let rs = run(&l, &expand(&t.raw_sql, &ctx, vars, &what), &what).await;
                        check_shape(p, &rs, &what);
                        if p.title == "City performance" {
                            // The seed design's table: the numbers of `ridectl query city-stats`.
                            let q = query::find(
                                &common::project_dir().join("sql/queries"),
                                "city-stats",
                            )
                            .unwrap();
                            let params = Params::new(t0, end, vars["city"].clone(), 0.3);
                            let named = query::run_sql(&l.config.clickhouse, &q.sql, &params)
                                .await
                                .unwrap();
                            assert_eq!(
                                (&rs.columns, &rs.rows),
                                (&named.columns, &named.rows),
                                "{what}"
                            );
                        }
                        if let Some(c) = rs.column("city") {
                            let seen: BTreeSet<&str> =
                                rs.rows.iter().filter_map(|r| r[c].as_str()).collect();
                            let expected: BTreeSet<&str> = if selection == "prague" {
                                ["prague"].into()
                            } else {
                                CITIES.into()
                            };
                            assert_eq!(seen, expected, "{what}");
                        }
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_alert_fires_for_the_same_cities_as_ridectl_alerts() {
    let l = common::isolated("grafana-alert");
    common::provision(&l).await;
    let t = now_millis() - 2 * 3_600_000;
    let t0 = t - t.rem_euclid(60_000);
    dataset(&l, t0).await;
    let f = load_files();
    let rule = the_rule(&l);
    let (_, r) = rules(&f)[0];
    let query = r
        .data
        .iter()
        .find(|q| q.datasource_uid != EXPRESSIONS)
        .unwrap();
    let raw = clickhouse_model(query).raw_sql;
    let threshold = expression_model(r.data.iter().find(|q| q.ref_id == r.condition).unwrap())
        .conditions[0]
        .evaluator
        .params[0];

    let (mut fired, mut quiet) = (0, 0);
    for m in 1..=16i64 {
        for offset in [0, 17_000] {
            let at = t0 + m * 60_000 + offset;
            let ctx = QueryContext {
                from_ms: at - query.relative_time_range.from * 1000,
                to_ms: at - query.relative_time_range.to * 1000,
                interval_ms: 60_000,
            };
            let what = format!("alert rule at minute {m} + {offset} ms");
            let rs = run(&l, &expand(&raw, &ctx, &BTreeMap::new(), &what), &what).await;
            // Grafana's tabular alerting: string labels and exactly one number.
            assert_eq!(rs.columns, ["city", "breach_rate"], "{what}");
            assert!(
                is_text(&rs.types[0]) && is_numeric(&rs.types[1]),
                "{what}: {:?}",
                rs.types
            );
            let labels: BTreeSet<&str> = rs.rows.iter().filter_map(|r| r[0].as_str()).collect();
            assert_eq!(labels.len(), rs.rows.len(), "{what}: one instance per city");
            let grafana: BTreeSet<String> = rs
                .rows
                .iter()
                .filter(|r| r[1].as_f64().unwrap_or(0.0) > threshold)
                .filter_map(|r| r[0].as_str().map(str::to_string))
                .collect();

            let window = Window::of(&rule, at);
            let ridectl: BTreeSet<String> = alerts::observe(&l.config, &rule, window)
                .await
                .unwrap()
                .into_iter()
                .filter(|o| o.fires(window.minutes()))
                .map(|o| o.city)
                .collect();
            assert_eq!(grafana, ridectl, "{what}");
            if grafana.is_empty() {
                quiet += 1;
            } else {
                assert_eq!(grafana, BTreeSet::from(["berlin".to_string()]), "{what}");
                fired += 1;
            }
        }
    }
    // berlin is over 30% in minutes 0–6: windows ending at minutes 5, 6 and 7 fire.
    assert_eq!(fired, 6);
    assert_eq!(quiet, 26);
}

// ---------------------------------------------------------------------------------
// The driver matrix (tests/drivers/go) runs every query through clickhouse-go, the
// plugin's driver. The expansion stays here, in the one implementation
// (src/grafana/macros.rs); this test writes what Grafana would send.

/// Where the expanded queries go: `RIDECTL_DRIVER_QUERIES`, else
/// `target/driver-matrix/grafana-queries.json`.
fn driver_queries_path() -> PathBuf {
    std::env::var_os("RIDECTL_DRIVER_QUERIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::project_dir().join("target/driver-matrix/grafana-queries.json"))
}

/// The columns a panel's visualization reads by name.
fn named_columns(panel: &Panel) -> Vec<String> {
    match panel.kind {
        PanelType::Table => panel
            .field_config
            .overrides
            .iter()
            .map(|o| o.matcher.options.clone())
            .collect(),
        PanelType::Barchart => panel.options["xField"]
            .as_str()
            .map(|x| vec![x.to_string()])
            .unwrap_or_default(),
        PanelType::Timeseries | PanelType::Stat => Vec::new(),
    }
}

fn panel_kind(kind: PanelType) -> &'static str {
    match kind {
        PanelType::Timeseries => "timeseries",
        PanelType::Table => "table",
        PanelType::Barchart => "barchart",
        PanelType::Stat => "stat",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expanded_queries_for_the_driver_matrix() {
    let l = common::isolated("grafana-drivers");
    common::provision(&l).await;
    // Data up to the minute before now: the dashboard's range (`now-1h` to `now`) holds
    // it all, and the supply panel's last minute has driver positions.
    let now = now_millis();
    let t0 = now - now.rem_euclid(60_000) - 15 * 60_000;
    let end = dataset(&l, t0).await;
    let f = load_files();
    let mut queries = Vec::new();
    for (path, d) in &f.dashboards {
        assert_eq!(
            (d.time.from.as_str(), d.time.to.as_str()),
            ("now-1h", "now"),
            "{}: the range the driver matrix uses",
            path.display()
        );
        for interval_ms in [60_000, 300_000] {
            let ctx = QueryContext {
                from_ms: end - 3_600_000,
                to_ms: end,
                interval_ms,
            };
            let mut all = BTreeMap::new();
            for v in &d.templating.list {
                let what = format!("{} variable {}", path.display(), v.name);
                let sql = expand(&v.query.raw_sql, &ctx, &all, &what);
                let rs = run(&l, &sql, &what).await;
                let values: Vec<String> = rs
                    .rows
                    .iter()
                    .filter_map(|r| r[0].as_str().map(str::to_string))
                    .collect();
                assert_eq!(values, CITIES, "{what}");
                queries.push(serde_json::json!({
                    "what": what, "kind": "variable", "columns": [], "sql": sql,
                    "cities": values,
                }));
                all.insert(v.name.clone(), values);
            }
            let one: BTreeMap<String, Vec<String>> = all
                .keys()
                .map(|k| (k.clone(), vec!["prague".to_string()]))
                .collect();
            for p in &d.panels {
                for t in &p.targets {
                    for (selection, vars) in [("all", &all), ("prague", &one)] {
                        let what = format!(
                            "{} panel {} {:?} {} (city {selection}, interval {interval_ms} ms)",
                            path.display(),
                            p.id,
                            p.title,
                            t.ref_id
                        );
                        let cities: Vec<&str> = if selection == "all" {
                            CITIES.to_vec()
                        } else {
                            vec!["prague"]
                        };
                        queries.push(serde_json::json!({
                            "what": what, "panel_id": p.id, "kind": panel_kind(p.kind),
                            "columns": named_columns(p),
                            "sql": expand(&t.raw_sql, &ctx, vars, &what),
                            "cities": cities,
                        }));
                    }
                }
            }
        }
    }
    for (_, r) in rules(&f) {
        for q in r.data.iter().filter(|q| q.datasource_uid != EXPRESSIONS) {
            let ctx = QueryContext {
                from_ms: end - q.relative_time_range.from * 1000,
                to_ms: end - q.relative_time_range.to * 1000,
                interval_ms: 60_000,
            };
            let what = format!("alert rule {} query {}", r.title, q.ref_id);
            let sql = expand(&clickhouse_model(q).raw_sql, &ctx, &BTreeMap::new(), &what);
            queries.push(serde_json::json!({
                "what": what, "kind": "alert", "columns": ["city", "breach_rate"],
                "sql": sql, "cities": [],
            }));
        }
    }
    assert!(queries.len() > 20, "{} queries", queries.len());
    let out = driver_queries_path();
    std::fs::create_dir_all(out.parent().expect("a file path"))
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let doc = serde_json::json!({
        "database": l.config.clickhouse.database,
        "range": {"from_ms": end - 3_600_000, "to_ms": end},
        "queries": queries,
    });
    std::fs::write(&out, serde_json::to_vec_pretty(&doc).expect("JSON"))
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
