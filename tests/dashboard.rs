//! `ridectl dashboard` against the real ClickHouse endpoint of the test stack, and in
//! a real browser (headless Debian `chromium`, driven over the DevTools protocol):
//!
//! * a request carrying SQL, any other unknown parameter, or an unknown panel id is
//!   answered 400 and runs nothing; a wrong Host header is refused;
//! * a panel request returns the panel's rows from ClickHouse; a city value written
//!   as SQL is a city name;
//! * the page renders every panel of ride-ops.json with data (series drawn, table
//!   rows, stat values, bars) and no console errors, and a screenshot is saved under
//!   target/test-output/; selecting one city narrows every panel; a new event shows
//!   within seconds, pushed by the server (well before the 10-second refresh).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ridectl::config::Loaded;
use ridectl::dashboard::browser::Browser;
use ridectl::dashboard::{Options, Server, model};
use ridectl::shutdown::{Shutdown, Trigger};
use ridectl::time::{format_clickhouse, now_millis};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CITIES: [&str; 3] = ["berlin", "prague", "vienna"];

fn output_dir() -> PathBuf {
    common::project_dir().join("target/test-output")
}

/// Rides of the last 15 minutes in three cities, driver positions and windows.
async fn fill(l: &Loaded) {
    let ch = ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write);
    let now = now_millis();
    let t0 = now - 15 * 60_000;
    let mut rows = Vec::new();
    let mut n = 0u64;
    for m in 0..15i64 {
        for (c, city) in CITIES.iter().enumerate() {
            for i in 0..(10 + 5 * c as i64) {
                let at = t0 + m * 60_000 + i * 3_000;
                let ride = format!("{city}-{m}-{i}");
                let fare = 8.0 + c as f64 * 3.0 + (i % 4) as f64;
                let user = format!("u{}", (i + m) % 17);
                let mut ev = |ty: &str, at: i64| {
                    n += 1;
                    rows.push(format!(
                        "('e{n}',1,'{ty}','{ride}',fromUnixTimestamp64Milli({at}),'{city}',{fare},'{user}','',0,0,0,0,NULL,'',0,{n})"
                    ));
                };
                ev("requested", at);
                if i % 5 == 0 {
                    ev("cancelled", at + 800);
                } else if m < 14 {
                    ev("accepted", at + 500);
                    ev("completed", at + 900);
                }
            }
        }
    }
    insert_rides(l, &rows).await;
    let drivers: Vec<String> = CITIES
        .iter()
        .flat_map(|city| {
            (0..6).map(move |d| {
                let status = if d % 3 == 0 { "on_trip" } else { "available" };
                format!(
                    "('{city}-d{d}','{city}',0,0,'{status}',fromUnixTimestamp64Milli({}),0,{d})",
                    now - 5_000 - d * 1000
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
    .expect("insert driver_locations");
    let windows: Vec<String> = (0..11i64)
        .flat_map(|w| {
            CITIES.iter().map(move |city| {
                let start = t0 + w * 60_000;
                format!(
                    "('{}','{}','{city}',200,100,80,20,11.5,{},0.2,0.8,1,'{}')",
                    format_clickhouse(start),
                    format_clickhouse(start + 300_000),
                    20 + w,
                    format_clickhouse(now - 2_000)
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
    .expect("insert city_window_metrics");
}

async fn insert_rides(l: &Loaded, rows: &[String]) {
    let ch = ridectl::clickhouse::client(&l.config.clickhouse, ridectl::clickhouse::Access::Write);
    ch.query_raw(&format!(
        "INSERT INTO ride_events (event_id,schema_version,event_type,ride_id,timestamp,city,estimated_fare,user_id,driver_id,pickup_lat,pickup_lng,dropoff_lat,dropoff_lng,final_fare,cancelled_by,kafka_partition,kafka_offset) VALUES {}",
        rows.join(",")
    ))
    .execute()
    .await
    .expect("insert ride_events");
}

struct Running {
    addr: std::net::SocketAddr,
    trigger: Trigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    queries: ridectl::dashboard::server::QueriesCounter,
}

async fn start(l: &Loaded) -> Running {
    start_with(l, None).await
}

async fn start_with(l: &Loaded, auth: Option<ridectl::dashboard::Auth>) -> Running {
    let d = model::load(&common::project_dir().join("grafana/dashboards/ride-ops.json"))
        .expect("dashboard");
    let (trigger, shutdown) = Shutdown::manual();
    let server = Server::bind(
        Options {
            listen: "127.0.0.1:0".parse().expect("addr"),
            auth,
            dashboard: d,
            clickhouse: l.config.clickhouse.clone(),
            poll_every: Duration::from_secs(1),
        },
        shutdown,
    )
    .await
    .expect("bind");
    let addr = server.local_addr().expect("addr");
    let queries = server.queries_counter();
    let task = tokio::spawn(server.run());
    Running {
        addr,
        trigger,
        task,
        queries,
    }
}

impl Running {
    async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops within 10 s")
            .expect("join")
            .expect("server ran");
    }
}

/// GET with an explicit Host header; (status, body).
async fn get(addr: std::net::SocketAddr, path: &str, host: &str) -> (u16, String) {
    get_as(addr, path, host, "").await
}

/// GET with extra header lines.
async fn get_as(addr: std::net::SocketAddr, path: &str, host: &str, extra: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("answer within 30 s")
        .expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_name_a_panel_never_sql_and_panels_return_clickhouse_data() {
    let l = common::isolated("dashboard");
    common::provision(&l).await;
    fill(&l).await;
    let s = start(&l).await;
    let host = s.addr.to_string();

    for bad in [
        "/api/panel/1?range=1h&sql=SELECT%20*%20FROM%20system.users",
        "/api/panel/1?query=SELECT+1",
        "/api/panel/1?range=1h&rawSql=DROP+TABLE+ride_events",
        "/api/panel/99?range=1h",
        "/api/panel/DROP?range=1h",
        "/api/panel/1?range=1y",
        "/api/panel/1?var-town=berlin",
        "/api/variable/town?range=1h",
        "/api/variable/city?range=1h&sql=SELECT+1",
    ] {
        let before = s.queries.get();
        let (status, body) = get(s.addr, bad, &host).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("\"error\""), "{bad}: {body}");
        assert_eq!(s.queries.get(), before, "{bad} ran a query");
    }
    let (status, _) = get(s.addr, "/api/dashboard", "evil.example:80").await;
    assert_eq!(status, 403, "DNS rebinding: foreign Host refused");

    // The layout never carries SQL.
    let (status, body) = get(s.addr, "/api/dashboard", &host).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("SELECT") && !body.contains("rawSql"),
        "{body}"
    );

    // Real data from the ClickHouse endpoint.
    let before = s.queries.get();
    let (status, body) = get(s.addr, "/api/panel/3?range=1h", &host).await;
    assert_eq!(status, 200, "{body}");
    assert!(s.queries.get() > before, "the panel ran");
    let v: Value = serde_json::from_str(&body).expect("json");
    let city = v["columns"]
        .as_array()
        .and_then(|c| c.iter().position(|x| x == "city"))
        .expect("city column");
    let requests = v["columns"]
        .as_array()
        .and_then(|c| c.iter().position(|x| x == "requests"))
        .expect("requests column");
    let mut got: Vec<(String, f64)> = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r[city].as_str().unwrap_or_default().to_string(),
                r[requests].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // 15 minutes × (10, 15, 20) rides per minute, counted from the range's first minute.
    assert_eq!(
        got,
        vec![
            ("berlin".to_string(), 150.0),
            ("prague".to_string(), 225.0),
            ("vienna".to_string(), 300.0)
        ]
    );
    assert!(v["read_at"].as_i64().unwrap_or(0) > now_millis() - 60_000);

    // One city; and SQL in a city value is a city name (no rows, no error).
    let (status, body) = get(s.addr, "/api/panel/1?range=1h&var-city=prague", &host).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert!(!v["rows"].as_array().expect("rows").is_empty());
    assert!(
        v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|r| r[1] == "prague")
    );
    let (status, body) = get(
        s.addr,
        "/api/panel/1?range=1h&var-city=x%27%20OR%201%3D1%20--",
        &host,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(0), "{body}");

    // Every panel of the dashboard answers with rows.
    for id in 1..=8 {
        let (status, body) = get(s.addr, &format!("/api/panel/{id}?range=1h"), &host).await;
        assert_eq!(status, 200, "panel {id}: {body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert!(
            !v["rows"].as_array().expect("rows").is_empty(),
            "panel {id}: {body}"
        );
    }
    s.stop().await;
}

fn screenshot(b: &mut Browser, name: &str) -> PathBuf {
    let path = output_dir().join(name);
    b.screenshot(&path).expect("screenshot");
    assert!(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 10_000);
    path
}

/// The state of every panel, read from the DOM.
const PANELS_JS: &str = "JSON.stringify([...document.querySelectorAll('.panel')].map(p => ({
    id: +p.dataset.panelId, type: p.dataset.type, state: p.dataset.state,
    series: +(p.dataset.series || 0), points: +(p.dataset.points || 0), rows: +(p.dataset.rows || 0),
    bars: +(p.dataset.bars || 0), values: p.dataset.values ? JSON.parse(p.dataset.values) : [],
    query: p.dataset.query || '', readAt: +(p.dataset.readAt || 0),
    canvas: p.querySelectorAll('canvas').length,
    cells: [...p.querySelectorAll('tbody tr')].map(tr => tr.children[0].textContent),
    labels: [...p.querySelectorAll('.u-legend .u-series:not(:first-child) .u-label')].map(x => x.textContent),
    read: (p.querySelector('.panel-read') || {}).textContent || ''})))";

fn panels(b: &mut Browser) -> Vec<Value> {
    let v = b.eval(PANELS_JS).expect("panels");
    serde_json::from_str(v.as_str().unwrap_or("[]")).expect("json")
}

fn all_ok(b: &mut Browser, since: i64) -> bool {
    let ps = panels(b);
    ps.len() == 8
        && ps
            .iter()
            .all(|p| p["state"] == "ok" && p["readAt"].as_i64().unwrap_or(0) >= since)
}

fn wait_all(b: &mut Browser, since: i64, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    while !all_ok(b, since) {
        assert!(
            Instant::now() < deadline,
            "panels not rendered: {:#?}\nconsole: {:?}",
            panels(b),
            b.console_errors()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    panels(b)
}

fn check_rendered(ps: &[Value], what: &str) {
    for p in ps {
        let id = p["id"].as_i64().unwrap_or(0);
        match p["type"].as_str().unwrap_or("") {
            "timeseries" => {
                assert!(p["series"].as_u64() >= Some(1), "{what}: panel {id}: {p}");
                assert!(p["points"].as_u64() >= Some(2), "{what}: panel {id}: {p}");
                assert_eq!(p["canvas"].as_u64(), Some(1), "{what}: panel {id}: {p}");
            }
            "table" => assert!(p["rows"].as_u64() >= Some(1), "{what}: panel {id}: {p}"),
            "stat" => {
                let values = p["values"].as_array().expect("values");
                assert_eq!(values.len(), 3, "{what}: panel {id}: {p}");
                assert!(
                    values.iter().all(Value::is_number),
                    "{what}: panel {id}: {p}"
                );
            }
            "barchart" => assert!(p["bars"].as_u64() >= Some(1), "{what}: panel {id}: {p}"),
            other => panic!("{what}: panel {id}: unexpected type {other}"),
        }
        assert!(p["read"].as_str().unwrap_or("").starts_with("read "), "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_every_panel_in_chromium_and_follows_new_data() {
    let l = common::isolated("dashboard-browser");
    common::provision(&l).await;
    fill(&l).await;
    let s = start(&l).await;
    let url = format!("http://{}/", s.addr);
    let l2 = l.clone();
    let handle = tokio::runtime::Handle::current();
    let report = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch(1920, 1080).expect("chromium (scripts/setup.sh installs it)");
        let t0 = Instant::now();
        b.navigate(&url).expect("navigate");
        let ps = wait_all(&mut b, 0, Duration::from_secs(30));
        let load = t0.elapsed();
        check_rendered(&ps, "all cities");
        for p in &ps {
            if p["type"] == "table" {
                let mut cells: Vec<String> = p["cells"]
                    .as_array()
                    .expect("cells")
                    .iter()
                    .map(|c| c.as_str().unwrap_or("").to_string())
                    .collect();
                cells.sort();
                assert_eq!(cells, CITIES, "table rows: one per city");
            }
        }
        let shot = screenshot(&mut b, "dashboard-1920x1080.png");

        // Laptop size: still every panel, no errors.
        b.resize(1366, 768).expect("resize");
        std::thread::sleep(Duration::from_millis(400));
        screenshot(&mut b, "dashboard-1366x768.png");
        b.resize(1920, 1080).expect("resize");

        // One city: every panel is re-read for prague and shows only prague.
        let since = now_millis();
        b.eval("document.querySelector('.var[data-var=city] .var-button').click()")
            .expect("open menu");
        b.eval("document.querySelector('.var[data-var=city] input[value=prague]').click()")
            .expect("select prague");
        let deadline = Instant::now() + Duration::from_secs(30);
        let ps = loop {
            let ps = wait_all(&mut b, since, Duration::from_secs(30));
            if ps
                .iter()
                .all(|p| p["query"].as_str().unwrap_or("").contains("var-city=prague"))
            {
                break ps;
            }
            assert!(Instant::now() < deadline, "not narrowed: {ps:#?}");
            std::thread::sleep(Duration::from_millis(100));
        };
        check_rendered(&ps, "prague");
        for p in &ps {
            let id = p["id"].as_i64().unwrap_or(0);
            assert!(
                !p["query"].as_str().unwrap_or("").contains("__all"),
                "panel {id}"
            );
            match id {
                1 | 2 | 4 | 5 => {
                    assert_eq!(p["series"].as_u64(), Some(1), "panel {id}: {p}");
                    assert_eq!(p["labels"], serde_json::json!(["prague"]), "panel {id}: {p}");
                }
                3 => assert_eq!(p["cells"], serde_json::json!(["prague"]), "{p}"),
                6 => assert_eq!(p["rows"].as_u64(), Some(1), "{p}"),
                _ => {}
            }
        }
        screenshot(&mut b, "dashboard-prague.png");

        // A new event: pushed by the server within seconds (the refresh is 10 s).
        let before = b
            .eval("document.querySelector('.panel[data-panel-id=\"3\"] tbody tr td:nth-child(2)').textContent")
            .expect("requests cell");
        let events_before = b.eval("+document.body.dataset.events").expect("events");
        let inserted = Instant::now();
        let now = now_millis();
        let rows: Vec<String> = (0..7)
            .map(|i| {
                format!(
                    "('late{i}',1,'requested','fresh{i}',fromUnixTimestamp64Milli({}),'prague',9.5,'u1','',0,0,0,0,NULL,'',0,{})",
                    now - 1_000,
                    900_000 + i
                )
            })
            .collect();
        handle.block_on(insert_rides(&l2, &rows));
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let cur = b
                .eval("document.querySelector('.panel[data-panel-id=\"3\"] tbody tr td:nth-child(2)').textContent")
                .expect("requests cell");
            if cur != before {
                break;
            }
            assert!(Instant::now() < deadline, "new data not shown within 8 s (still {cur})");
            std::thread::sleep(Duration::from_millis(20));
        }
        let shown = inserted.elapsed();
        let events_after = b.eval("+document.body.dataset.events").expect("events");
        assert!(
            events_after.as_f64() > events_before.as_f64(),
            "the change came as a server-sent event"
        );
        let errors = b.console_errors();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        (load, shown, shot)
    })
    .await
    .expect("browser task");
    let (load, shown, shot) = report;
    eprintln!(
        "dashboard: page load to every panel drawn {load:?}; new event visible after {shown:?}; screenshot {}",
        shot.display()
    );
    assert!(
        shown < Duration::from_secs(5),
        "pushed, not refreshed: {shown:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_required_when_configured_and_for_non_loopback_addresses() {
    use base64::Engine;
    let l = common::isolated("dashboard-auth");
    common::provision(&l).await;
    let auth = ridectl::dashboard::Auth {
        user: "ops".into(),
        password: "pw-123".into(),
    };
    let s = start_with(&l, Some(auth)).await;
    let host = s.addr.to_string();
    let (status, _) = get(s.addr, "/api/dashboard", &host).await;
    assert_eq!(status, 401);
    let (status, _) = get(s.addr, "/", &host).await;
    assert_eq!(status, 401, "the page too");
    let wrong = base64::engine::general_purpose::STANDARD.encode("ops:pw-124");
    let (status, _) = get_as(
        s.addr,
        "/api/dashboard",
        &host,
        &format!("Authorization: Basic {wrong}\r\n"),
    )
    .await;
    assert_eq!(status, 401);
    let right = base64::engine::general_purpose::STANDARD.encode("ops:pw-123");
    let (status, body) = get_as(
        s.addr,
        "/api/dashboard",
        &host,
        &format!("Authorization: Basic {right}\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;

    // The command refuses a non-loopback address without --auth (usage error, 2).
    let mut child = common::ridectl_cmd()
        .args(["dashboard", "--listen", "0.0.0.0:0"])
        .env_remove("RIDECTL_DASHBOARD_AUTH")
        .current_dir(common::project_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ridectl");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ridectl dashboard --listen 0.0.0.0:0 without --auth kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--auth"), "{stderr}");
}
