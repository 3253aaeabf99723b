//! The HTTP side of `ridectl dashboard` (hyper 1.x, HTTP/1.1).
//!
//! | route | what |
//! |---|---|
//! | `GET /`, `/assets/*` | the embedded page ([`super::assets`]) |
//! | `GET /api/dashboard` | layout, panel options, variables, refresh ([`LocalDashboard::view`]) |
//! | `GET /api/variable/<name>?range=` | the variable's values for the range |
//! | `GET /api/panel/<id>?range=&var-<name>=` | one panel's data and when it was read |
//! | `GET /api/events` | server-sent events: `watermark` when ClickHouse has new data |
//!
//! Anything else in a request (another parameter, SQL, an unknown panel id, range or
//! variable) is answered 400 before anything runs. Safe by default: loopback unless
//! told otherwise, and then only with basic auth ([`Auth`]); on loopback without
//! auth, the `Host` header must name the loopback address (no DNS rebinding).
//!
//! Freshness: [`poll`] asks ClickHouse once per second — for every browser at once —
//! for the watermark; results are cached per request for the current watermark
//! (and at most [`FRESH_FOR`]) with one query in flight per key.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::model::{LocalDashboard, range_ms};
use super::query::{self, BadRequest, PanelRequest, Selection};
use crate::clickhouse::Access;
use crate::config::ClickHouseConfig;
use crate::grafana::macros::QueryContext;
use crate::query::ResultSet;
use crate::shutdown::Shutdown;
use crate::time::now_millis;

/// How long a cached result is served for an unchanged watermark.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Most cached results kept (the cache is cleared beyond).
const CACHE_LIMIT: usize = 2_000;

/// The watermark: row counts of the tables the panels read. `count()` without a
/// condition is answered from part metadata, so this costs next to nothing.
pub const WATERMARK_SQL: &str = "SELECT \
    (SELECT count() FROM ride_events), \
    (SELECT count() FROM driver_locations), \
    (SELECT count() FROM city_window_metrics)";

/// Basic-auth credentials the server requires.
#[derive(Clone)]
pub struct Auth {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth {{ user: {:?}, password: *** }}", self.user)
    }
}

impl Auth {
    /// Parses `user:password`; `${VAR}` in it is read from the environment (so the
    /// secret is not on the command line).
    pub fn parse(spec: &str) -> anyhow::Result<Auth> {
        let expanded = crate::config::expand(spec, &|v| std::env::var(v).ok())
            .map_err(|e| anyhow::anyhow!("--auth: {e}"))?;
        let Some((user, password)) = expanded.split_once(':') else {
            anyhow::bail!("--auth must be user:password (the password may be ${{VAR}})");
        };
        if user.is_empty() || password.is_empty() {
            anyhow::bail!("--auth: empty user or password");
        }
        Ok(Auth {
            user: user.into(),
            password: password.into(),
        })
    }

    fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(given) = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
        else {
            return false;
        };
        let want = format!("{}:{}", self.user, self.password);
        // Compare without an early exit.
        given.len() == want.len()
            && given
                .iter()
                .zip(want.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// What the server needs.
#[derive(Debug)]
pub struct Options {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Basic auth (required by the command for a non-loopback address).
    pub auth: Option<Auth>,
    /// The dashboard.
    pub dashboard: LocalDashboard,
    /// ClickHouse (queries run as [`Access::Read`]).
    pub clickhouse: ClickHouseConfig,
    /// How often the watermark is polled.
    pub poll_every: Duration,
}

/// The watermark as browsers see it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Watermark {
    /// Bumped at each change.
    version: u64,
    /// The counts, or the error reading them.
    value: String,
    /// When it last changed (epoch ms).
    changed_at: i64,
    /// False while ClickHouse does not answer.
    ok: bool,
}

type CacheKey = (String, PanelRequest);

#[derive(Clone)]
struct Cached {
    version: u64,
    at: Instant,
    body: Bytes,
    value: Arc<Value>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

struct State {
    dashboard: LocalDashboard,
    clickhouse: ClickHouseConfig,
    client: clickhouse::Client,
    auth: Option<Auth>,
    hosts: Option<Vec<String>>,
    watermark: watch::Sender<Watermark>,
    cache: Mutex<HashMap<CacheKey, Slot>>,
    shutdown: Shutdown,
    /// Queries run (panels and variables), for the tests and the log.
    queries_run: std::sync::atomic::AtomicU64,
}

/// A bound, not yet running, dashboard server.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
    poll_every: Duration,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

impl Server {
    /// Binds the listener.
    pub async fn bind(opts: Options, shutdown: Shutdown) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("cannot listen on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        let hosts = (opts.auth.is_none() && addr.ip().is_loopback()).then(|| {
            let port = addr.port();
            vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
                addr.to_string(),
            ]
        });
        let client = crate::clickhouse::try_client(&opts.clickhouse, Access::Read)?;
        let (watermark, _) = watch::channel(Watermark::default());
        Ok(Server {
            listener,
            poll_every: opts.poll_every,
            state: Arc::new(State {
                dashboard: opts.dashboard,
                clickhouse: opts.clickhouse,
                client,
                auth: opts.auth,
                hosts,
                watermark,
                cache: Mutex::new(HashMap::new()),
                shutdown,
                queries_run: Default::default(),
            }),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until the shutdown fires, then lets open requests finish (2 s).
    pub async fn run(self) -> anyhow::Result<()> {
        let state = self.state;
        let mut shutdown = state.shutdown.clone();
        let poller = tokio::spawn(poll(state.clone(), self.poll_every));
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (stream, _peer) = tokio::select! {
                _ = shutdown.wait() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("dashboard: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let mut sd = state.shutdown.clone();
            conns.spawn(async move {
                let svc = {
                    let state = state.clone();
                    service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    })
                };
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!("dashboard connection: {e}");
                        }
                    }
                    _ = sd.wait() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                    }
                }
            });
            while conns.try_join_next().is_some() {}
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        conns.abort_all();
        let _ = poller.await;
        Ok(())
    }
}

/// The poller: while any browser listens, reads the watermark every `every` and
/// publishes changes. One task for all browsers.
async fn poll(state: Arc<State>, every: Duration) {
    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        if state.watermark.receiver_count() == 0 {
            continue;
        }
        let read = tokio::time::timeout(every.max(Duration::from_secs(2)), async {
            let mut cursor = state
                .client
                .query(WATERMARK_SQL)
                .fetch_bytes("TabSeparated")?;
            cursor.collect().await
        })
        .await;
        let (value, ok) = match read {
            Ok(Ok(bytes)) => (String::from_utf8_lossy(&bytes).trim().to_string(), true),
            Ok(Err(e)) => (format!("ClickHouse error: {e}"), false),
            Err(_) => ("ClickHouse did not answer".to_string(), false),
        };
        state.watermark.send_if_modified(|w| {
            if w.value == value && w.ok == ok {
                return false;
            }
            if !ok {
                tracing::warn!("dashboard: {value}");
            }
            w.version += 1;
            w.value = value;
            w.ok = ok;
            w.changed_at = now_millis();
            true
        });
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    secure_headers(h);
    r
}

fn secure_headers(h: &mut hyper::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = respond(status, "application/json", v.to_string());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json_response(status, &json!({ "error": msg }))
}

async fn handle(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    if let Some(hosts) = &state.hosts {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !hosts.iter().any(|h| h == host) {
            return error(StatusCode::FORBIDDEN, "unexpected Host header");
        }
    }
    if let Some(auth) = &state.auth
        && !auth.accepts(req.headers().get(header::AUTHORIZATION))
    {
        let mut r = error(StatusCode::UNAUTHORIZED, "authentication required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"ridectl dashboard\", charset=\"UTF-8\""),
        );
        return r;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    let path = req.uri().path().to_string();
    let q = req.uri().query().unwrap_or("").to_string();
    if let Some(a) = super::assets::find(&path) {
        let mut r = respond(StatusCode::OK, a.content_type, Bytes::from_static(a.body));
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return r;
    }
    let d = &state.dashboard;
    match path.as_str() {
        "/api/dashboard" => json_response(StatusCode::OK, &d.view()),
        "/api/events" => events(state),
        _ => {
            if let Some(id) = path.strip_prefix("/api/panel/") {
                match query::parse_panel_request(d, id, &q) {
                    Ok(r) => {
                        let key = ("panel".to_string(), r.clone());
                        answer(with_cache(state, key, || panel_data(state, &r)).await, &r)
                    }
                    Err(BadRequest(m)) => error(StatusCode::BAD_REQUEST, &m),
                }
            } else if let Some(name) = path.strip_prefix("/api/variable/") {
                match query::parse_variable_request(d, name, &q) {
                    Ok((name, range)) => answer(cached_values(state, &name, &range).await, &name),
                    Err(BadRequest(m)) => error(StatusCode::BAD_REQUEST, &m),
                }
            } else {
                error(StatusCode::NOT_FOUND, "not found")
            }
        }
    }
}

/// A result from the cache when it is of the current watermark and fresh, else
/// computed by `compute` (once for every concurrent request of the same key).
async fn with_cache<F, Fut>(state: &State, key: CacheKey, compute: F) -> anyhow::Result<Cached>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    let slot = {
        let mut cache = match state.cache.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if cache.len() > CACHE_LIMIT {
            cache.clear();
        }
        cache.entry(key).or_default().clone()
    };
    let mut guard = slot.lock().await;
    let version = state.watermark.borrow().version;
    if let Some(c) = guard.as_ref()
        && c.version == version
        && c.at.elapsed() < FRESH_FOR
    {
        return Ok(c.clone());
    }
    let value = compute().await?;
    let c = Cached {
        version,
        at: Instant::now(),
        body: Bytes::from(value.to_string()),
        value: Arc::new(value),
    };
    *guard = Some(c.clone());
    Ok(c)
}

fn variable_key(name: &str, range: &str) -> CacheKey {
    (
        "variable".to_string(),
        PanelRequest {
            panel: 0,
            range: range.to_string(),
            vars: BTreeMap::from([(name.to_string(), Selection::All)]),
        },
    )
}

/// The values of a variable for a range, cached.
async fn cached_values(state: &State, name: &str, range: &str) -> anyhow::Result<Cached> {
    with_cache(state, variable_key(name, range), || async {
        let values = variable_values(state, name, range).await?;
        Ok(json!({ "name": name, "values": values, "read_at": now_millis() }))
    })
    .await
}

fn answer(result: anyhow::Result<Cached>, what: &dyn std::fmt::Debug) -> Response<Body> {
    match result {
        Ok(c) => json_body(c.body),
        Err(e) => {
            tracing::warn!("dashboard: {what:?}: {e:#}");
            let msg = format!("{e:#}");
            let first = msg.lines().next().unwrap_or("query failed");
            error(StatusCode::BAD_GATEWAY, first)
        }
    }
}

fn json_body(body: Bytes) -> Response<Body> {
    let mut r = respond(StatusCode::OK, "application/json", body);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Runs SQL as the read-only user; 64-bit integers (quoted by ClickHouse's JSON
/// formats) become numbers.
async fn run(state: &State, sql: &str) -> anyhow::Result<ResultSet> {
    state
        .queries_run
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let mut cursor = state
        .client
        .query(sql)
        .fetch_bytes("JSONCompactEachRowWithNamesAndTypes")?;
    let bytes = cursor.collect().await.map_err(|e| {
        if crate::clickhouse::is_auth_error(&e) {
            anyhow::Error::new(crate::clickhouse::auth_failed(
                &state.clickhouse,
                Access::Read,
            ))
        } else {
            anyhow::Error::new(e).context("query failed")
        }
    })?;
    let mut rs = crate::query::parse_compact(&bytes)?;
    rs.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    for (i, t) in rs.types.iter().enumerate() {
        let inner = t
            .trim_start_matches("Nullable(")
            .trim_start_matches("LowCardinality(");
        if inner.starts_with("Int") || inner.starts_with("UInt") || inner.starts_with("Decimal") {
            for row in &mut rs.rows {
                if let Some(Value::String(s)) = row.get(i)
                    && let Ok(n) = s.parse::<f64>()
                {
                    row[i] = json!(n);
                }
            }
        }
    }
    Ok(rs)
}

fn context_for(range: &str, min_interval_ms: i64) -> QueryContext {
    let span = range_ms(range).unwrap_or(3_600_000);
    let to_ms = now_millis();
    QueryContext {
        from_ms: to_ms - span,
        to_ms,
        interval_ms: query::grafana_interval_ms(span, min_interval_ms),
    }
}

/// The values of a variable for a range (its query; variables do not refer to each
/// other in our dashboards, so they are expanded with none).
async fn variable_values(state: &State, name: &str, range: &str) -> anyhow::Result<Vec<String>> {
    let v = state
        .dashboard
        .variable(name)
        .with_context(|| format!("no variable {name}"))?;
    let ctx = context_for(range, 0);
    let sql = query::expand(&v.query.raw_sql, &BTreeMap::new(), &ctx)?;
    let rs = run(state, &sql).await?;
    Ok(rs
        .rows
        .iter()
        .filter_map(|r| r.first())
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect())
}

async fn panel_data(state: &State, r: &PanelRequest) -> anyhow::Result<Value> {
    let p = state
        .dashboard
        .panel(r.panel)
        .with_context(|| format!("no panel {}", r.panel))?;
    let raw = p.raw_sql.as_deref().context("panel without a query")?;
    let ctx = context_for(&r.range, p.min_interval_ms);
    let mut vars = BTreeMap::new();
    for (name, sel) in &r.vars {
        let values = match sel {
            Selection::All => cached_values(state, name, &r.range).await?.value["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Selection::Values(v) => v.clone(),
        };
        vars.insert(name.clone(), values);
    }
    let base = json!({
        "panel": r.panel,
        "from": ctx.from_ms,
        "to": ctx.to_ms,
        "interval_ms": ctx.interval_ms,
    });
    let mut out = base;
    if let Some((name, _)) = vars.iter().find(|(_, v)| v.is_empty()) {
        // `IN ()` is not SQL: nothing is selected, so nothing is shown.
        out["columns"] = json!([]);
        out["types"] = json!([]);
        out["rows"] = json!([]);
        out["note"] = json!(format!("no {name} selected or none with data"));
        out["read_at"] = json!(now_millis());
        return Ok(out);
    }
    let sql = query::expand(raw, &vars, &ctx)?;
    let rs = run(state, &sql).await?;
    out["columns"] = json!(rs.columns);
    out["types"] = json!(rs.types);
    out["rows"] = json!(rs.rows);
    out["elapsed_ms"] = json!((rs.elapsed_ms * 10.0).round() / 10.0);
    out["read_at"] = json!(now_millis());
    Ok(out)
}

/// The body of an event stream: frames sent by the stream's task.
struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn watermark_event(w: &Watermark) -> Bytes {
    let data = json!({
        "version": w.version,
        "ok": w.ok,
        "watermark": w.value,
        "changed_at": w.changed_at,
        "sent_at": now_millis(),
    });
    Bytes::from(format!("event: watermark\ndata: {data}\n\n"))
}

/// `/api/events`: the current watermark at once, then each change; a comment every
/// 15 s keeps proxies from closing the stream; ends at shutdown.
fn events(state: &Arc<State>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let mut wm = state.watermark.subscribe();
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let first = {
            let w = wm.borrow_and_update();
            watermark_event(&w)
        };
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
            || tx.send(first).await.is_err()
        {
            return;
        }
        loop {
            let msg = tokio::select! {
                _ = shutdown.wait() => return,
                changed = wm.changed() => {
                    if changed.is_err() { return; }
                    let w = wm.borrow_and_update();
                    watermark_event(&w)
                }
                _ = tokio::time::sleep(Duration::from_secs(15)) => Bytes::from_static(b": keep-alive\n\n"),
            };
            if tx.send(msg).await.is_err() {
                return; // the browser went away
            }
        }
    });
    let mut r = Response::new(SseBody { rx }.boxed());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(h);
    r
}

impl Server {
    /// Queries run so far (panels and variables, not the watermark).
    pub fn queries_counter(&self) -> QueriesCounter {
        QueriesCounter(self.state.clone())
    }
}

/// Reads how many queries a running server has sent.
#[derive(Clone)]
pub struct QueriesCounter(Arc<State>);

impl QueriesCounter {
    /// Queries run so far.
    pub fn get(&self) -> u64 {
        self.0
            .queries_run
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_parses_and_checks() {
        // SAFETY: test-local variable name, set before it is read.
        unsafe { std::env::set_var("RIDECTL_TEST_DASH_PW", "s3cret:x") };
        let a = Auth::parse("ops:${RIDECTL_TEST_DASH_PW}").expect("valid");
        assert_eq!(a.user, "ops");
        assert_eq!(a.password, "s3cret:x");
        let ok = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ops:s3cret:x")
        );
        assert!(a.accepts(Some(&HeaderValue::from_str(&ok).expect("header"))));
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ops:s3cret")
        );
        assert!(!a.accepts(Some(&HeaderValue::from_str(&wrong).expect("header"))));
        assert!(!a.accepts(None));
        assert!(Auth::parse("nopassword").is_err());
        assert!(Auth::parse("ops:${RIDECTL_TEST_DASH_UNSET_VAR}").is_err());
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
