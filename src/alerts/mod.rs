//! `ridectl alerts`: the alert rules of pipeline.yaml (`alerts.rules`) evaluated
//! against ClickHouse, and PagerDuty Events API v2 messages for their transitions.
//!
//! **Rule semantics** (one rule, defined once; docs/alerts.md). For each city, the
//! rule looks at the last `for` of *complete* minutes of `city_minute_rollup`: the
//! minutes `[to − for, to)` where `to` is the start of the minute holding the
//! evaluation time (`--at`, default now), i.e. minutes that ended at or before it.
//! A minute is *evaluated* when it has at least `min_requests` requests.
//!
//! * The city **fires** when every minute of the window is evaluated and its
//!   cancellation rate (cancellations / requests) is above `threshold`.
//! * An open incident **resolves** when the latest complete minute is evaluated and
//!   its rate is at or below `threshold`.
//! * Anything else changes nothing: minutes with too few requests, or no data, neither
//!   open nor close an incident.
//!
//! The SQL is `sql/alerts/cancellation_rate.sql` (compiled in); the Grafana alert rule
//! runs the same query. [`evaluate`] is the pure state machine; [`Alerter`] wires it
//! to ClickHouse, the state file ([`state`]) and PagerDuty ([`pagerduty`]).

pub mod pagerduty;
pub mod state;

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::clickhouse::Access;
use crate::config::{AlertRule, ConfigError, Loaded, PipelineConfig, Problem};
use crate::exit::Unavailable;
use crate::time::{EpochMillis, format_clickhouse, format_millis};
use crate::units::Secret;
use pagerduty::{Action, RetryPolicy};
use state::{AlertState, Incident, StateLock};

/// The rule's SQL, with bound parameters `{from}`, `{to}`, `{threshold}`,
/// `{min_requests}` and `{window_minutes}`.
pub const RULE_SQL: &str = include_str!("../../sql/alerts/cancellation_rate.sql");

/// The environment variable the routing key comes from (pipeline.yaml).
pub const ROUTING_KEY_ENV: &str = "PAGERDUTY_ROUTING_KEY";

/// The minutes a rule looks at: `[from, to)`, whole minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First minute (inclusive).
    pub from: EpochMillis,
    /// End (exclusive): the start of the minute holding the evaluation time.
    pub to: EpochMillis,
}

impl Window {
    /// The window of `rule` evaluated at `at`.
    pub fn of(rule: &AlertRule, at: EpochMillis) -> Window {
        let to = at - at.rem_euclid(60_000);
        Window {
            from: to - i64::from(window_minutes(rule)) * 60_000,
            to,
        }
    }

    /// Its length in minutes.
    pub fn minutes(&self) -> u32 {
        u32::try_from((self.to - self.from) / 60_000).unwrap_or(u32::MAX)
    }
}

/// The rule's duration in whole minutes (at least 1; pipeline.yaml validation keeps
/// `for` a whole number of minutes).
pub fn window_minutes(rule: &AlertRule) -> u32 {
    let minutes = rule.for_duration.get().as_secs().div_ceil(60).max(1);
    u32::try_from(minutes).unwrap_or(u32::MAX)
}

/// What the rule's query returns for one city.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Observation {
    /// The city.
    pub city: String,
    /// Minutes of the window with at least `min_requests` requests.
    pub evaluated_minutes: u32,
    /// Evaluated minutes whose rate is above the threshold.
    pub breaching_minutes: u32,
    /// The lowest rate of the evaluated minutes when all minutes are evaluated, else 0
    /// (the value Grafana's alert rule compares with the threshold).
    pub breach_rate: f64,
    /// Requests in the window.
    pub window_requests: u64,
    /// Cancellations in the window.
    pub window_cancellations: u64,
    /// Cancellations / requests over the window.
    pub window_rate: f64,
    /// Requests in the latest complete minute.
    pub latest_requests: u64,
    /// Cancellations in the latest complete minute.
    pub latest_cancellations: u64,
    /// Rate of the latest complete minute.
    pub latest_rate: f64,
}

impl Observation {
    /// True when every minute of a `window_minutes` window is above the threshold.
    pub fn fires(&self, window_minutes: u32) -> bool {
        self.evaluated_minutes == window_minutes && self.breaching_minutes == window_minutes
    }

    /// True when the latest minute is evaluated and at or below the threshold.
    pub fn recovered(&self, rule: &AlertRule) -> bool {
        self.latest_requests >= rule.min_requests && self.latest_rate <= rule.threshold
    }
}

/// A transition to report to PagerDuty.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertEvent {
    /// Trigger or resolve.
    pub action: Action,
    /// The dedup key ([`dedup_key`]).
    pub key: String,
    /// The rule.
    pub rule: AlertRule,
    /// The evaluation window.
    pub window: Window,
    /// The evaluation time.
    pub at: EpochMillis,
    /// What the query saw for the city.
    pub observation: Observation,
}

/// The PagerDuty dedup key of a rule and city: one incident each.
pub fn dedup_key(rule: &str, city: &str) -> String {
    format!("ridectl/{rule}/{city}")
}

impl AlertState {
    /// Applies a transition that was delivered.
    pub fn apply(&mut self, e: &AlertEvent) {
        match e.action {
            Action::Trigger => {
                self.incidents.insert(
                    e.key.clone(),
                    Incident {
                        rule: e.rule.name.clone(),
                        city: e.observation.city.clone(),
                        triggered_at: format_millis(e.at),
                        rate: e.observation.window_rate,
                    },
                );
            }
            Action::Resolve => {
                self.incidents.remove(&e.key);
            }
        }
    }
}

/// The rule's state machine: from the open incidents and this evaluation's
/// observations, the transitions to send and the state once they are delivered.
/// A city fires once (no second trigger while its incident is open) and resolves once.
pub fn evaluate(
    prev: &AlertState,
    rule: &AlertRule,
    window: Window,
    at: EpochMillis,
    observations: &[Observation],
) -> (Vec<AlertEvent>, AlertState) {
    let mut next = prev.clone();
    let mut events = Vec::new();
    for obs in observations {
        let key = dedup_key(&rule.name, &obs.city);
        let action = if prev.is_open(&key) {
            obs.recovered(rule).then_some(Action::Resolve)
        } else {
            obs.fires(window.minutes()).then_some(Action::Trigger)
        };
        if let Some(action) = action {
            let event = AlertEvent {
                action,
                key,
                rule: rule.clone(),
                window,
                at,
                observation: obs.clone(),
            };
            next.apply(&event);
            events.push(event);
        }
    }
    (events, next)
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// The Events API v2 message of a transition.
pub fn to_pagerduty(e: &AlertEvent, routing_key: &Secret, source: &str) -> pagerduty::Event {
    let o = &e.observation;
    let payload = (e.action == Action::Trigger).then(|| pagerduty::Payload {
        summary: format!(
            "{}: cancellation rate above {} for {} ({} of {} requests) [{}]",
            o.city,
            percent(e.rule.threshold),
            e.rule.for_duration,
            percent(o.window_rate),
            o.window_requests,
            e.rule.name
        ),
        source: source.to_string(),
        severity: e.rule.severity.clone(),
        timestamp: format_millis(e.at),
        component: o.city.clone(),
        group: e.rule.name.clone(),
        class: "cancellation_rate".into(),
        custom_details: serde_json::json!({
            "rule": e.rule.name,
            "city": o.city,
            "rate": o.window_rate,
            "lowest_minute_rate": o.breach_rate,
            "threshold": e.rule.threshold,
            "requests": o.window_requests,
            "cancellations": o.window_cancellations,
            "min_requests_per_minute": e.rule.min_requests,
            "window": {
                "from": format_millis(e.window.from),
                "to": format_millis(e.window.to),
                "minutes": e.window.minutes(),
            },
            "latest_minute": {
                "rate": o.latest_rate,
                "requests": o.latest_requests,
                "cancellations": o.latest_cancellations,
            },
        }),
    });
    pagerduty::Event {
        routing_key: routing_key.clone(),
        event_action: e.action,
        dedup_key: e.key.clone(),
        payload,
        client: "ridectl".into(),
    }
}

/// Runs the rule's query for `window` on the read-only ClickHouse user, within
/// `clickhouse.request_timeout`. ClickHouse not answering is [`Unavailable`] (exit 69).
pub async fn observe(
    cfg: &PipelineConfig,
    rule: &AlertRule,
    window: Window,
) -> anyhow::Result<Vec<Observation>> {
    let client = crate::clickhouse::try_client(&cfg.clickhouse, Access::Read)?;
    let mut cursor = client
        .query_raw(RULE_SQL)
        .param("from", format_clickhouse(window.from))
        .param("to", format_clickhouse(window.to))
        .param("threshold", rule.threshold)
        .param("min_requests", rule.min_requests)
        .param("window_minutes", window.minutes())
        .with_setting("output_format_json_quote_64bit_integers", "0")
        .fetch_bytes("JSONEachRow")?;
    let timeout = cfg.clickhouse.request_timeout.get();
    let unavailable = |why: String| {
        anyhow::Error::new(Unavailable(format!(
            "ClickHouse at {} {why}",
            crate::clickhouse::display_url(&cfg.clickhouse.url)
        )))
    };
    let bytes = match tokio::time::timeout(timeout, cursor.collect()).await {
        Err(_) => return Err(unavailable(format!("did not answer within {timeout:?}"))),
        Ok(Err(
            e @ (clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut),
        )) => {
            return Err(unavailable(format!("cannot be reached: {e}")));
        }
        Ok(Err(e)) if crate::clickhouse::is_auth_error(&e) => {
            return Err(crate::clickhouse::auth_failed(&cfg.clickhouse, Access::Read).into());
        }
        Ok(result) => result,
    }
    .with_context(|| format!("alert rule {} query failed", rule.name))?;
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).context("unexpected row from the alert query"))
        .collect()
}

/// How a city stands after an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CityStatus {
    /// No minute above the threshold.
    Ok,
    /// Some minutes above the threshold, not (yet) the whole window.
    Pending,
    /// An incident is open.
    Firing,
    /// An incident is open but the city had no data in the window.
    FiringNoData,
    /// The incident was resolved by this evaluation.
    Resolved,
}

/// One city in a [`RuleReport`].
#[derive(Clone, Debug, Serialize)]
pub struct CityReport {
    /// The city.
    pub city: String,
    /// Its status after this evaluation.
    pub status: CityStatus,
    /// The query's numbers (absent for [`CityStatus::FiringNoData`]).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
}

/// One rule's evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct RuleReport {
    /// Rule name.
    pub rule: String,
    /// Threshold on the rate.
    pub threshold: f64,
    /// Window length in minutes.
    pub window_minutes: u32,
    /// Minutes with fewer requests are not evaluated.
    pub min_requests: u64,
    /// First minute of the window (ISO-8601).
    pub window_from: String,
    /// End of the window (exclusive, ISO-8601).
    pub window_to: String,
    /// Every city with data, and every open incident.
    pub cities: Vec<CityReport>,
}

/// What happened to one transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// PagerDuty accepted it.
    Sent,
    /// Printed, not sent (`--dry-run`).
    DryRun,
    /// Not delivered; it is sent again at the next evaluation.
    Failed,
}

/// One transition in a [`Report`].
#[derive(Clone, Debug, Serialize)]
pub struct EventReport {
    /// Rule name.
    pub rule: String,
    /// City.
    pub city: String,
    /// Trigger or resolve.
    pub action: Action,
    /// PagerDuty dedup key.
    pub dedup_key: String,
    /// Delivery outcome.
    pub delivery: Delivery,
    /// Attempts made (0 for a dry run).
    pub attempts: u32,
    /// Why delivery failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The message, routing key masked (dry runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
}

/// The result of one evaluation of every rule.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Evaluation time (ISO-8601).
    pub at: String,
    /// Nothing was sent or recorded.
    pub dry_run: bool,
    /// One entry per rule.
    pub rules: Vec<RuleReport>,
    /// The transitions, in order.
    pub events: Vec<EventReport>,
    /// Was any transition not delivered (because PagerDuty rejected it: 400 and the
    /// like, as opposed to being unreachable)?
    #[serde(skip)]
    pub rejected: bool,
}

impl Report {
    /// Transitions that were not delivered.
    pub fn failures(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.delivery == Delivery::Failed)
            .count()
    }
}

/// Options of an evaluation.
#[derive(Clone, Debug)]
pub struct AlerterOptions {
    /// Print the messages instead of sending them; record nothing.
    pub dry_run: bool,
    /// Events API endpoint (`--pagerduty-url`, else `alerts.pagerduty.url`).
    pub url: Option<String>,
    /// Retry policy of sends.
    pub retry: RetryPolicy,
}

/// Evaluates the rules of a configuration and delivers their transitions.
#[derive(Debug)]
pub struct Alerter {
    cfg: PipelineConfig,
    state_file: PathBuf,
    client: Option<pagerduty::Client>,
    routing_key: Secret,
    source: String,
    dry_run: bool,
}

impl Alerter {
    /// Checks the configuration (routing key unless dry run: a [`ConfigError`],
    /// exit 78, naming `PAGERDUTY_ROUTING_KEY`) and prepares the client.
    pub fn new(loaded: &Loaded, opts: AlerterOptions) -> anyhow::Result<Alerter> {
        let cfg = loaded.config.clone();
        let pd = &cfg.alerts.pagerduty;
        let config_error = |path: &str, message: String| ConfigError {
            file: loaded.file.clone(),
            problems: vec![Problem {
                path: path.into(),
                pos: None,
                message,
            }],
        };
        if cfg.alerts.rules.is_empty() {
            return Err(config_error("alerts.rules", "no alert rules to evaluate".into()).into());
        }
        let client = if opts.dry_run {
            None
        } else {
            if pd.routing_key.is_empty() {
                return Err(config_error(
                    "alerts.pagerduty.routing_key",
                    format!(
                        "is empty: set {ROUTING_KEY_ENV} to the Events API v2 integration key \
                         of the PagerDuty service (or use --dry-run to print the events)"
                    ),
                )
                .into());
            }
            let url = opts.url.as_deref().unwrap_or(&pd.url);
            Some(pagerduty::Client::new(url, opts.retry)?)
        };
        Ok(Alerter {
            state_file: loaded.resolve(&cfg.alerts.state_file),
            source: format!("ridectl/{}", cfg.clickhouse.database),
            routing_key: pd.routing_key.clone(),
            client,
            dry_run: opts.dry_run,
            cfg,
        })
    }

    /// The state file in use.
    pub fn state_file(&self) -> &std::path::Path {
        &self.state_file
    }

    /// One evaluation of every rule at `at`: query, compare with the open incidents,
    /// send the transitions (each recorded in the state file as soon as PagerDuty
    /// accepted it; a failed one is retried at the next evaluation).
    pub async fn check(&self, at: EpochMillis) -> anyhow::Result<Report> {
        // A dry run only reads the state (renamed into place whole, so never torn).
        let _lock = if self.dry_run {
            None
        } else {
            Some(StateLock::acquire(&self.state_file)?)
        };
        let mut state = state::load(&self.state_file)?;
        let mut report = Report {
            at: format_millis(at),
            dry_run: self.dry_run,
            rules: Vec::new(),
            events: Vec::new(),
            rejected: false,
        };
        for rule in &self.cfg.alerts.rules {
            let window = Window::of(rule, at);
            let observations = observe(&self.cfg, rule, window).await?;
            let (events, projected) = evaluate(&state, rule, window, at, &observations);
            let mut resolved = Vec::new();
            for e in &events {
                let message = to_pagerduty(e, &self.routing_key, &self.source);
                let mut er = EventReport {
                    rule: rule.name.clone(),
                    city: e.observation.city.clone(),
                    action: e.action,
                    dedup_key: e.key.clone(),
                    delivery: Delivery::DryRun,
                    attempts: 0,
                    error: None,
                    event: None,
                };
                match &self.client {
                    None => er.event = Some(message.masked_json()),
                    Some(client) => match client.send(&message).await {
                        Ok(attempts) => {
                            er.delivery = Delivery::Sent;
                            er.attempts = attempts;
                            state.apply(e);
                            state::save(&self.state_file, &state)?;
                            tracing::info!("PagerDuty {} {} delivered", e.action.as_str(), e.key);
                        }
                        Err(err) => {
                            tracing::error!("{err}");
                            er.delivery = Delivery::Failed;
                            er.attempts = match &err {
                                pagerduty::SendError::GaveUp { attempts, .. } => *attempts,
                                _ => 1,
                            };
                            report.rejected |= matches!(err, pagerduty::SendError::Rejected { .. });
                            er.error = Some(err.to_string());
                        }
                    },
                }
                if e.action == Action::Resolve && er.delivery != Delivery::Failed {
                    resolved.push(e.key.clone());
                }
                report.events.push(er);
            }
            let after = if self.dry_run { &projected } else { &state };
            report
                .rules
                .push(rule_report(rule, window, &observations, after, &resolved));
        }
        Ok(report)
    }
}

fn rule_report(
    rule: &AlertRule,
    window: Window,
    observations: &[Observation],
    after: &AlertState,
    resolved: &[String],
) -> RuleReport {
    let mut cities: Vec<CityReport> = observations
        .iter()
        .map(|o| {
            let key = dedup_key(&rule.name, &o.city);
            let status = if after.is_open(&key) {
                CityStatus::Firing
            } else if resolved.contains(&key) {
                CityStatus::Resolved
            } else if o.breaching_minutes > 0 {
                CityStatus::Pending
            } else {
                CityStatus::Ok
            };
            CityReport {
                city: o.city.clone(),
                status,
                observation: Some(o.clone()),
            }
        })
        .collect();
    for incident in after.incidents.values() {
        if incident.rule == rule.name && !observations.iter().any(|o| o.city == incident.city) {
            cities.push(CityReport {
                city: incident.city.clone(),
                status: CityStatus::FiringNoData,
                observation: None,
            });
        }
    }
    cities.sort_by(|a, b| a.city.cmp(&b.city));
    RuleReport {
        rule: rule.name.clone(),
        threshold: rule.threshold,
        window_minutes: window.minutes(),
        min_requests: rule.min_requests,
        window_from: format_millis(window.from),
        window_to: format_millis(window.to),
        cities,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::HumanDuration;

    const T: EpochMillis = 1_794_999_980_000; // 20 s into a minute

    fn rule() -> AlertRule {
        AlertRule {
            name: "cancel".into(),
            threshold: 0.3,
            for_duration: HumanDuration::from_secs(300),
            min_requests: 5,
            severity: "critical".into(),
        }
    }

    /// A city whose `window` minutes had `over` minutes above the threshold and whose
    /// latest minute had `latest` cancellations of 20 requests.
    fn obs(city: &str, evaluated: u32, over: u32, latest: u64) -> Observation {
        Observation {
            city: city.into(),
            evaluated_minutes: evaluated,
            breaching_minutes: over,
            breach_rate: if evaluated == 5 && over == 5 {
                0.5
            } else {
                0.0
            },
            window_requests: 100,
            window_cancellations: 30,
            window_rate: 0.3,
            latest_requests: 20,
            latest_cancellations: latest,
            latest_rate: latest as f64 / 20.0,
        }
    }

    fn actions(events: &[AlertEvent]) -> Vec<(Action, &str)> {
        events
            .iter()
            .map(|e| (e.action, e.observation.city.as_str()))
            .collect()
    }

    #[test]
    fn window_is_the_complete_minutes_before_the_evaluation_time() {
        let w = Window::of(&rule(), T);
        assert_eq!(w.to, T - 20_000);
        assert_eq!(w.to - w.from, 300_000);
        assert_eq!(w.minutes(), 5);
        // On a minute boundary, the minute that just ended is complete.
        let on = Window::of(&rule(), w.to);
        assert_eq!(on.to, w.to);
    }

    #[test]
    fn fires_only_when_every_minute_of_the_window_is_over() {
        let s = AlertState::new();
        let w = Window::of(&rule(), T);
        let (events, next) = evaluate(
            &s,
            &rule(),
            w,
            T,
            &[
                obs("berlin", 5, 5, 10),
                obs("prague", 5, 4, 10), // one minute at or below
                obs("vienna", 4, 4, 10), // one minute with too few requests
                obs("warsaw", 5, 0, 2),  // healthy
            ],
        );
        assert_eq!(actions(&events), vec![(Action::Trigger, "berlin")]);
        assert!(next.is_open(&dedup_key("cancel", "berlin")));
        assert_eq!(next.incidents.len(), 1);
    }

    #[test]
    fn no_second_trigger_while_open_and_one_resolve_on_recovery() {
        let w = Window::of(&rule(), T);
        let (_, open) = evaluate(
            &AlertState::new(),
            &rule(),
            w,
            T,
            &[obs("berlin", 5, 5, 10)],
        );
        // Still over: nothing new.
        let (events, same) = evaluate(&open, &rule(), w, T, &[obs("berlin", 5, 5, 10)]);
        assert!(events.is_empty());
        assert_eq!(same, open);
        // Latest minute at the threshold exactly (6/20 = 30%): resolves.
        let (events, closed) = evaluate(&open, &rule(), w, T, &[obs("berlin", 5, 4, 6)]);
        assert_eq!(actions(&events), vec![(Action::Resolve, "berlin")]);
        assert!(closed.incidents.is_empty());
        // Recovered: nothing more.
        let (events, _) = evaluate(&closed, &rule(), w, T, &[obs("berlin", 5, 3, 2)]);
        assert!(events.is_empty());
    }

    #[test]
    fn too_few_requests_or_no_data_neither_opens_nor_closes() {
        let w = Window::of(&rule(), T);
        let (_, open) = evaluate(
            &AlertState::new(),
            &rule(),
            w,
            T,
            &[obs("berlin", 5, 5, 10)],
        );
        let mut quiet = obs("berlin", 4, 4, 0);
        quiet.latest_requests = 3; // below min_requests: not evaluated
        quiet.latest_rate = 0.0;
        let (events, same) = evaluate(&open, &rule(), w, T, &[quiet]);
        assert!(events.is_empty());
        assert_eq!(same, open);
        let (events, same) = evaluate(&open, &rule(), w, T, &[]);
        assert!(events.is_empty());
        assert_eq!(same, open);
    }

    #[test]
    fn incidents_are_per_rule_and_city() {
        let w = Window::of(&rule(), T);
        let other = AlertRule {
            name: "cancel-warning".into(),
            ..rule()
        };
        let (_, s) = evaluate(
            &AlertState::new(),
            &rule(),
            w,
            T,
            &[obs("berlin", 5, 5, 10)],
        );
        let (events, s) = evaluate(&s, &other, w, T, &[obs("berlin", 5, 5, 10)]);
        assert_eq!(actions(&events), vec![(Action::Trigger, "berlin")]);
        assert_eq!(s.incidents.len(), 2);
        assert_ne!(dedup_key("cancel", "berlin"), dedup_key("cancel", "prague"));
    }

    #[test]
    fn trigger_message_has_the_required_payload() {
        let w = Window::of(&rule(), T);
        let (events, _) = evaluate(
            &AlertState::new(),
            &rule(),
            w,
            T,
            &[obs("berlin", 5, 5, 10)],
        );
        let m = to_pagerduty(&events[0], &Secret::new("KEY"), "ridectl/db").masked_json();
        assert_eq!(m["event_action"], "trigger");
        assert_eq!(m["dedup_key"], "ridectl/cancel/berlin");
        assert_eq!(m["routing_key"], pagerduty::MASKED_KEY);
        let p = &m["payload"];
        assert_eq!(p["severity"], "critical");
        assert_eq!(p["source"], "ridectl/db");
        assert_eq!(p["timestamp"], format_millis(T));
        assert!(
            p["summary"]
                .as_str()
                .unwrap()
                .starts_with("berlin: cancellation rate above 30.0% for 5m")
        );
        let d = &p["custom_details"];
        assert_eq!(d["city"], "berlin");
        assert_eq!(d["rate"], 0.3);
        assert_eq!(d["requests"], 100);
        assert_eq!(d["cancellations"], 30);
        assert_eq!(d["window"]["minutes"], 5);
        assert_eq!(d["window"]["to"], format_millis(w.to));
    }
}
