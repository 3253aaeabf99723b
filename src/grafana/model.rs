//! Typed models of what Grafana's provisioning accepts, for the parts ridectl uses:
//! every struct denies unknown keys, so a typo or a key Grafana (or the ClickHouse
//! plugin) does not read fails the test instead of being silently ignored.
//!
//! Sources: Grafana's provisioning readers (`pkg/services/provisioning/datasources`,
//! `.../dashboards`, `.../alerting`: the `V1` file types and their yaml tags), the
//! ClickHouse plugin's settings (`pkg/plugin/settings.go`, `src/types/config.ts`) and
//! query model (`src/types/sql.ts`), Grafana's server-side expression model, and the
//! Alertmanager route (notification policy) fields.
//!
//! Fields exist to accept (or reject) what the files say; not all are read. Their
//! names are Grafana's own keys (in snake_case) and mean what Grafana's provisioning
//! documentation says, so they are not documented one by one here.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A YAML/JSON scalar Grafana reads as a string after `$VAR` expansion (so a port may
/// be written as a number or as `$CLICKHOUSE_HTTP_PORT`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------
// provisioning/datasources

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatasourceFile {
    pub api_version: i64,
    #[serde(default)]
    pub datasources: Vec<Datasource>,
    #[serde(default)]
    pub delete_datasources: Vec<DeleteDatasource>,
    pub prune: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteDatasource {
    pub name: String,
    pub org_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Datasource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub uid: String,
    pub org_id: Option<i64>,
    pub org_name: Option<String>,
    pub access: Option<String>,
    pub url: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub basic_auth: Option<bool>,
    pub basic_auth_user: Option<String>,
    pub with_credentials: Option<bool>,
    pub is_default: Option<bool>,
    pub version: Option<i64>,
    pub editable: Option<bool>,
    pub json_data: ClickHouseJsonData,
    pub secure_json_data: ClickHouseSecureJsonData,
}

/// `jsonData` keys the ClickHouse plugin reads (settings.go / config.ts). `database`
/// is deliberately absent: the backend reads `defaultDatabase`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClickHouseJsonData {
    pub protocol: String,
    pub host: String,
    pub port: Scalar,
    pub secure: Option<Scalar>,
    pub path: Option<String>,
    pub default_database: String,
    pub default_table: Option<String>,
    pub username: String,
    pub tls_skip_verify: Option<bool>,
    pub tls_auth: Option<bool>,
    #[serde(rename = "tlsAuthWithCACert")]
    pub tls_auth_with_ca_cert: Option<bool>,
    pub dial_timeout: Option<Scalar>,
    pub query_timeout: Option<Scalar>,
    pub conn_max_lifetime: Option<Scalar>,
    pub max_idle_conns: Option<Scalar>,
    pub max_open_conns: Option<Scalar>,
    pub validate_sql: Option<bool>,
    pub enable_row_limit: Option<bool>,
    pub forward_grafana_headers: Option<bool>,
    pub custom_settings: Option<Vec<CustomSetting>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomSetting {
    pub setting: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClickHouseSecureJsonData {
    pub password: String,
    #[serde(rename = "tlsCACert")]
    pub tls_ca_cert: Option<String>,
    pub tls_client_cert: Option<String>,
    pub tls_client_key: Option<String>,
}

// ---------------------------------------------------------------------------------
// provisioning/dashboards

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DashboardProviderFile {
    pub api_version: i64,
    pub providers: Vec<DashboardProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DashboardProvider {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub org_id: Option<i64>,
    pub folder: Option<String>,
    pub folder_uid: Option<String>,
    pub editable: Option<bool>,
    pub disable_deletion: Option<bool>,
    pub update_interval_seconds: Option<i64>,
    pub allow_ui_updates: Option<bool>,
    pub options: ProviderOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderOptions {
    pub path: String,
    pub folders_from_files_structure: Option<bool>,
}

// ---------------------------------------------------------------------------------
// provisioning/alerting

/// One alerting provisioning file (Grafana's `AlertingFileV1` and the later
/// templates / mute timings sections).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertingFile {
    pub api_version: i64,
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
    #[serde(default)]
    pub delete_rules: Vec<Value>,
    #[serde(default)]
    pub contact_points: Vec<ContactPoint>,
    #[serde(default)]
    pub delete_contact_points: Vec<Value>,
    #[serde(default)]
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub reset_policies: Vec<i64>,
    #[serde(default)]
    pub templates: Vec<Value>,
    #[serde(default)]
    pub delete_templates: Vec<Value>,
    #[serde(default)]
    pub mute_times: Vec<Value>,
    #[serde(default)]
    pub delete_mute_times: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleGroup {
    pub org_id: Option<i64>,
    pub name: String,
    pub folder: String,
    pub interval: String,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum NoDataState {
    NoData,
    Alerting,
    #[serde(rename = "OK")]
    Ok,
    KeepLast,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum ExecErrState {
    Error,
    Alerting,
    #[serde(rename = "OK")]
    Ok,
    KeepLast,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    pub uid: String,
    pub title: String,
    pub condition: String,
    pub data: Vec<RuleQuery>,
    pub dashboard_uid: Option<String>,
    pub panel_id: Option<i64>,
    pub no_data_state: Option<NoDataState>,
    pub exec_err_state: Option<ExecErrState>,
    #[serde(rename = "for")]
    pub for_duration: String,
    pub keep_firing_for: Option<String>,
    #[serde(rename = "missing_series_evals_to_resolve")]
    pub missing_series_evals_to_resolve: Option<i64>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub is_paused: Option<bool>,
    #[serde(rename = "notification_settings")]
    pub notification_settings: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleQuery {
    pub ref_id: String,
    pub query_type: Option<String>,
    pub relative_time_range: RelativeTimeRange,
    pub datasource_uid: String,
    /// Typed by the data source: [`ClickHouseQuery`] or [`ExpressionQuery`].
    pub model: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelativeTimeRange {
    pub from: i64,
    pub to: i64,
}

/// A server-side expression (`datasourceUid: __expr__`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpressionQuery {
    pub ref_id: String,
    #[serde(rename = "type")]
    pub kind: ExpressionType,
    pub expression: String,
    pub datasource: DatasourceRef,
    #[serde(default)]
    pub conditions: Vec<ThresholdCondition>,
    pub reducer: Option<String>,
    pub interval_ms: Option<i64>,
    pub max_data_points: Option<i64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExpressionType {
    Math,
    Reduce,
    Resample,
    Threshold,
    #[serde(rename = "classic_conditions")]
    ClassicConditions,
    Sql,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ThresholdCondition {
    pub evaluator: Evaluator,
    pub unload_evaluator: Option<Evaluator>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluator {
    #[serde(rename = "type")]
    pub kind: EvaluatorType,
    pub params: Vec<f64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EvaluatorType {
    Gt,
    Lt,
    WithinRange,
    OutsideRange,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContactPoint {
    pub org_id: Option<i64>,
    pub name: String,
    pub receivers: Vec<Receiver>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Receiver {
    pub uid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub disable_resolve_message: Option<bool>,
    /// Typed by `type`: [`PagerDutySettings`].
    pub settings: Value,
}

/// Settings of Grafana's PagerDuty integration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PagerDutySettings {
    pub integration_key: String,
    pub severity: Option<String>,
    pub class: Option<String>,
    pub component: Option<String>,
    pub group: Option<String>,
    pub summary: Option<String>,
    pub source: Option<String>,
    pub client: Option<String>,
    #[serde(rename = "client_url")]
    pub client_url: Option<String>,
    pub details: Option<BTreeMap<String, String>>,
    pub url: Option<String>,
}

/// A notification policy (Alertmanager route); `orgId` only on the root.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(rename = "orgId")]
    pub org_id: Option<i64>,
    pub receiver: Option<String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(rename = "continue")]
    pub continue_matching: Option<bool>,
    #[serde(default)]
    pub object_matchers: Vec<[String; 3]>,
    #[serde(default)]
    pub matchers: Vec<String>,
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
    pub group_wait: Option<String>,
    pub group_interval: Option<String>,
    pub repeat_interval: Option<String>,
    #[serde(default)]
    pub routes: Vec<Policy>,
}

// ---------------------------------------------------------------------------------
// Queries of the ClickHouse plugin (panels, variables, alert rules)

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DatasourceRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub uid: String,
}

/// The plugin's SQL-editor query (`CHSqlQuery`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClickHouseQuery {
    pub ref_id: String,
    pub datasource: DatasourceRef,
    pub editor_type: EditorType,
    pub plugin_version: String,
    /// sqlds format: 0 time series, 1 table, 2 logs, 3 traces.
    pub format: u8,
    pub query_type: ClickHouseQueryType,
    pub raw_sql: String,
    pub meta: Option<Value>,
    pub hide: Option<bool>,
    pub interval_ms: Option<i64>,
    pub max_data_points: Option<i64>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EditorType {
    Sql,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClickHouseQueryType {
    Table,
    Timeseries,
}

/// The plugin's variable query (`CHVariableQuery`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VariableQuery {
    pub ref_id: String,
    pub query_type: String,
    pub raw_sql: String,
}

// ---------------------------------------------------------------------------------
// The dashboard JSON (the parts ridectl's dashboard uses; the whole document is also
// checked against the foundation SDK's published models in tests/python).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dashboard {
    pub uid: String,
    pub title: String,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub timezone: Option<String>,
    pub editable: Option<bool>,
    pub graph_tooltip: Option<u8>,
    pub refresh: String,
    pub schema_version: i64,
    pub version: Option<i64>,
    pub time: TimeRange,
    pub timepicker: Option<TimePicker>,
    pub fiscal_year_start_month: Option<i64>,
    pub live_now: Option<bool>,
    #[serde(default)]
    pub links: Vec<Value>,
    pub annotations: Option<Value>,
    pub templating: Templating,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimePicker {
    #[serde(default)]
    pub refresh_intervals: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Templating {
    pub list: Vec<Variable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Variable {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub label: Option<String>,
    pub description: Option<String>,
    pub datasource: DatasourceRef,
    pub query: VariableQuery,
    pub refresh: u8,
    pub multi: bool,
    pub include_all: bool,
    pub all_value: Option<String>,
    pub sort: Option<u8>,
    pub regex: Option<String>,
    pub hide: Option<u8>,
    pub current: Option<Value>,
    #[serde(default)]
    pub options: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Panel {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: PanelType,
    pub title: String,
    pub description: String,
    pub datasource: DatasourceRef,
    pub grid_pos: GridPos,
    /// Minimum interval (`1m`): the data is per minute.
    pub interval: Option<String>,
    pub targets: Vec<ClickHouseQuery>,
    pub field_config: FieldConfigSource,
    /// Panel-specific; checked against the SDK's panel models in tests/python.
    pub options: Value,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PanelType {
    Timeseries,
    Table,
    Stat,
    Barchart,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridPos {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfigSource {
    pub defaults: FieldDefaults,
    pub overrides: Vec<Override>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDefaults {
    pub unit: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub decimals: Option<u8>,
    pub color: Option<Value>,
    pub thresholds: Option<Thresholds>,
    pub custom: Option<Value>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub mode: String,
    pub steps: Vec<ThresholdStep>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThresholdStep {
    pub color: String,
    pub value: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub matcher: Matcher,
    pub properties: Vec<Property>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub id: String,
    pub options: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Property {
    pub id: String,
    pub value: Value,
}
