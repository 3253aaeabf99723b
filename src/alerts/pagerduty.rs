//! A PagerDuty Events API v2 client (`POST /v2/enqueue`) with the retry policy the
//! API asks for: 429 (throttled), 5xx and connection failures are retried with
//! exponential backoff (capped, with jitter, a bounded number of attempts); any
//! other non-2xx answer — 400 "invalid event" above all — is final and never retried.
//!
//! The routing key travels only in request bodies: it is never logged, and it is
//! masked in every error message and in `--dry-run` output.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_tls::HttpsConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::units::Secret;

/// PagerDuty's Events API v2 endpoint (the default of `alerts.pagerduty.url`).
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// What shows instead of the routing key wherever an event is printed.
pub const MASKED_KEY: &str = "****";

/// `event_action` of an Events API v2 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Open (or add to) the incident with this dedup key.
    Trigger,
    /// Close the incident with this dedup key.
    Resolve,
}

impl Action {
    /// The wire spelling (`trigger`, `resolve`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Resolve => "resolve",
        }
    }
}

/// The `payload` of a trigger event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Payload {
    /// One-line description, shown as the incident title (at most 1024 characters).
    pub summary: String,
    /// The affected system (`ridectl/<database>`).
    pub source: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: String,
    /// When ridectl detected the condition (ISO-8601).
    pub timestamp: String,
    /// The part of the system affected (the city).
    pub component: String,
    /// Logical grouping (the rule).
    pub group: String,
    /// Class of the event.
    pub class: String,
    /// Everything a responder needs: city, rates, counts, window.
    pub custom_details: serde_json::Value,
}

/// One Events API v2 message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// The integration key; masked when printed ([`Event::masked_json`]).
    pub routing_key: Secret,
    /// Trigger or resolve.
    pub event_action: Action,
    /// One incident per rule and city.
    pub dedup_key: String,
    /// Required for triggers, absent for resolves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// The sending tool.
    pub client: String,
}

impl Event {
    /// The body sent to PagerDuty, with the real routing key.
    fn body(&self) -> serde_json::Result<Vec<u8>> {
        let mut v = serde_json::to_value(self)?;
        v["routing_key"] = self.routing_key.expose().into();
        serde_json::to_vec(&v)
    }

    /// The event as JSON with the routing key masked (for `--dry-run` and logs).
    pub fn masked_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["routing_key"] = MASKED_KEY.into();
        v
    }
}

/// How sends are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the second attempt; doubles after each failure.
    pub initial_backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Time allowed for one request and its answer.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 6,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based) before the next one:
    /// `initial × 2^(attempt−1)`, capped, the upper half jittered; at least what the
    /// server asked for with `Retry-After`, still capped.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let base = exp.min(self.max_backoff);
        let jittered = base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        jittered
            .max(retry_after.unwrap_or_default())
            .min(self.max_backoff)
    }
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// PagerDuty refused the event (400 invalid event, 401/403 bad key, ...): retrying
    /// the same event cannot help.
    #[error("PagerDuty rejected the {} event {dedup_key} with HTTP {status}: {body}", action.as_str())]
    Rejected {
        /// The event's action.
        action: Action,
        /// The event's dedup key.
        dedup_key: String,
        /// HTTP status.
        status: u16,
        /// The response body (routing key masked).
        body: String,
    },
    /// Every attempt was throttled, failed on the server or did not connect.
    #[error(
        "PagerDuty did not accept the {} event {dedup_key} after {attempts} attempts; last: {last}",
        action.as_str()
    )]
    GaveUp {
        /// The event's action.
        action: Action,
        /// The event's dedup key.
        dedup_key: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The event could not be encoded (a bug).
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The result of one attempt.
enum Attempt {
    Accepted,
    Retry(String, Option<Duration>),
    Final(u16, String),
}

/// An Events API v2 client.
#[derive(Clone, Debug)]
pub struct Client {
    url: Uri,
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    policy: RetryPolicy,
}

impl Client {
    /// A client for `url` (http or https).
    pub fn new(url: &str, policy: RetryPolicy) -> anyhow::Result<Client> {
        let url: Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("{url:?} is not a valid URL: {e}"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            anyhow::bail!("{url} is not an http(s) URL");
        }
        let http = HttpClient::builder(TokioExecutor::new()).build(HttpsConnector::new());
        Ok(Client {
            url,
            http,
            policy: RetryPolicy {
                max_attempts: policy.max_attempts.max(1),
                ..policy
            },
        })
    }

    /// The endpoint.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// Sends one event, retrying as the policy says. Returns the number of attempts.
    pub async fn send(&self, event: &Event) -> Result<u32, SendError> {
        let body = Bytes::from(event.body()?);
        let mask = |s: &str| mask_key(s, event.routing_key.expose());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(body.clone()).await;
            let (why, retry_after) = match outcome {
                Attempt::Accepted => return Ok(attempt),
                Attempt::Final(status, text) => {
                    return Err(SendError::Rejected {
                        action: event.event_action,
                        dedup_key: event.dedup_key.clone(),
                        status,
                        body: mask(&text),
                    });
                }
                Attempt::Retry(why, retry_after) => (mask(&why), retry_after),
            };
            if attempt >= self.policy.max_attempts {
                return Err(SendError::GaveUp {
                    action: event.event_action,
                    dedup_key: event.dedup_key.clone(),
                    attempts: attempt,
                    last: why,
                });
            }
            let delay = self
                .policy
                .delay(attempt, retry_after, rand::random::<f64>());
            tracing::warn!(
                "PagerDuty {} {}: {why}; retrying in {delay:?} (attempt {attempt} of {})",
                event.event_action.as_str(),
                event.dedup_key,
                self.policy.max_attempts
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, body: Bytes) -> Attempt {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("ridectl/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Attempt::Final(0, format!("cannot build the request: {e}")),
        };
        let exchange = async {
            let response = self.http.request(request).await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, bytes))
        };
        match tokio::time::timeout(self.policy.request_timeout, exchange).await {
            Err(_) => Attempt::Retry(
                format!("no answer within {:?}", self.policy.request_timeout),
                None,
            ),
            Ok(Err(e)) => Attempt::Retry(format!("request failed: {}", error_chain(&e)), None),
            Ok(Ok((status, retry_after, bytes))) => {
                let text = String::from_utf8_lossy(&bytes).chars().take(1000).collect();
                classify(status, text, retry_after)
            }
        }
    }
}

fn classify(status: StatusCode, text: String, retry_after: Option<Duration>) -> Attempt {
    if status.is_success() {
        Attempt::Accepted
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Attempt::Retry(format!("HTTP {status}: {text}"), retry_after)
    } else {
        Attempt::Final(status.as_u16(), text)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Replaces every occurrence of `key` in `text` with [`MASKED_KEY`].
pub fn mask_key(text: &str, key: &str) -> String {
    if key.is_empty() {
        text.to_string()
    } else {
        text.replace(key, MASKED_KEY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_attempts: 10,
            request_timeout: Duration::from_secs(1),
        };
        assert_eq!(p.delay(1, None, 1.0), Duration::from_millis(100));
        assert_eq!(p.delay(2, None, 1.0), Duration::from_millis(200));
        assert_eq!(p.delay(3, None, 1.0), Duration::from_millis(400));
        assert_eq!(p.delay(5, None, 1.0), Duration::from_millis(1000));
        assert_eq!(p.delay(40, None, 1.0), Duration::from_millis(1000));
        assert_eq!(p.delay(2, None, 0.0), Duration::from_millis(100));
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(700)), 0.0),
            Duration::from_millis(700)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60)), 0.0),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn statuses_are_classified() {
        let c = |s: u16| match classify(StatusCode::from_u16(s).unwrap(), String::new(), None) {
            Attempt::Accepted => "ok",
            Attempt::Retry(..) => "retry",
            Attempt::Final(..) => "final",
        };
        assert_eq!(c(202), "ok");
        assert_eq!(c(200), "ok");
        assert_eq!(c(429), "retry");
        assert_eq!(c(500), "retry");
        assert_eq!(c(503), "retry");
        assert_eq!(c(400), "final");
        assert_eq!(c(401), "final");
        assert_eq!(c(404), "final");
    }

    #[test]
    fn routing_key_is_masked_when_printed() {
        let e = Event {
            routing_key: Secret::new("R0UT1NGKEY"),
            event_action: Action::Resolve,
            dedup_key: "k".into(),
            payload: None,
            client: "ridectl".into(),
        };
        let printed = e.masked_json().to_string();
        assert!(!printed.contains("R0UT1NGKEY"), "{printed}");
        assert!(!format!("{e:?}").contains("R0UT1NGKEY"));
        let body = String::from_utf8(e.body().unwrap()).unwrap();
        assert!(body.contains("\"routing_key\":\"R0UT1NGKEY\""), "{body}");
        assert!(!body.contains("payload"), "resolve events carry no payload");
        assert_eq!(mask_key("bad key R0UT1NGKEY", "R0UT1NGKEY"), "bad key ****");
    }
}
