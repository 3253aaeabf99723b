//! A headless Chromium driven over the DevTools protocol: enough to open the
//! dashboard, read the DOM, collect console errors and take screenshots (the
//! browser test, `ridectl bench e2e --browser`).
//!
//! The protocol is JSON over one WebSocket per page; a handful of methods is all we
//! need (`Runtime.evaluate`, `Page.navigate`, `Page.captureScreenshot`,
//! `Emulation.setDeviceMetricsOverride`), so this is a small synchronous client on
//! `tungstenite` rather than a generated binding of the whole protocol. Chromium is
//! Debian's `chromium` (scripts/setup.sh installs it), or `RIDECTL_CHROMIUM`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// A running headless Chromium with one page.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Protocol events received so far (console messages, exceptions, log entries).
    pub events: Vec<Value>,
}

/// The Chromium binary: `RIDECTL_CHROMIUM`, else the first of `chromium`,
/// `chromium-browser`, `google-chrome` on the PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RIDECTL_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    // Chromium keeps the connection open: read the headers, then Content-Length.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(body.to_string());
            }
        }
    }
    bail!("DevTools closed the connection before answering")
}

impl Browser {
    /// Starts Chromium headless with a `width`×`height` window and a fresh profile.
    pub fn launch(width: u32, height: u32) -> anyhow::Result<Browser> {
        let bin = find_chromium().context(
            "no Chromium found (install Debian's `chromium`: scripts/setup.sh does, or set RIDECTL_CHROMIUM)",
        )?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let profile =
            std::env::temp_dir().join(format!("ridectl-chromium-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile)?;
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--headless=new",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--mute-audio",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if root {
            // Chromium refuses to sandbox as root.
            cmd.arg("--no-sandbox");
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let ws = match connect_page(&profile) {
            Ok(ws) => ws,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&profile);
                return Err(e);
            }
        };
        let mut b = Browser {
            child,
            profile,
            ws,
            next_id: 0,
            events: Vec::new(),
        };
        b.call("Runtime.enable", json!({}))
            .context("Runtime.enable")?;
        b.call("Log.enable", json!({}))?;
        b.call("Page.enable", json!({}))?;
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        Ok(b)
    }

    /// Sends one protocol command and returns its `result`; events that arrive
    /// meanwhile are kept in [`Browser::events`].
    pub fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if Instant::now() > deadline {
                bail!("{method}: no answer from Chromium within 60 s");
            }
            let m = match self.ws.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e).context(method.to_string()),
            };
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(text.as_str())?;
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = v.get("error") {
                    bail!("{method}: {err}");
                }
                return Ok(v.get("result").cloned().unwrap_or(Value::Null));
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// Evaluates a JavaScript expression in the page (promises awaited) and returns
    /// its value.
    pub fn eval(&mut self, expr: &str) -> anyhow::Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            bail!("{expr}: {ex}");
        }
        Ok(r.pointer("/result/value").cloned().unwrap_or(Value::Null))
    }

    /// Polls `expr` every 50 ms until it is truthy (an exception, e.g. while the
    /// page loads, counts as false); its value, or an error after `timeout`.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let guarded =
            format!("(() => {{ try {{ return ({expr}); }} catch (e) {{ return null; }} }})()");
        loop {
            let v = self.eval(&guarded)?;
            let truthy = !matches!(v, Value::Null | Value::Bool(false))
                && v.as_f64() != Some(0.0)
                && v.as_str() != Some("");
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("waited {timeout:?} for {expr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        let r = self.call("Page.navigate", json!({"url": url}))?;
        if let Some(e) = r.get("errorText").and_then(Value::as_str) {
            bail!("cannot open {url}: {e}");
        }
        Ok(())
    }

    /// Resizes the page's viewport.
    pub fn resize(&mut self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        Ok(())
    }

    /// Saves a PNG screenshot of the viewport.
    pub fn screenshot(&mut self, path: &Path) -> anyhow::Result<()> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = r
            .get("data")
            .and_then(Value::as_str)
            .context("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Console errors, uncaught exceptions and error log entries (failed requests)
    /// seen so far.
    pub fn console_errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.consoleAPICalled"
                        if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                    {
                        Some(format!("console.{}: {}", p["type"], p["args"]))
                    }
                    "Runtime.exceptionThrown" => Some(format!(
                        "exception: {}",
                        p["exceptionDetails"]["exception"]["description"]
                            .as_str()
                            .unwrap_or_else(|| p["exceptionDetails"]["text"]
                                .as_str()
                                .unwrap_or("?"))
                    )),
                    "Log.entryAdded" if p["entry"]["level"] == "error" => Some(format!(
                        "log: {} {}",
                        p["entry"]["text"],
                        p["entry"]["url"].as_str().unwrap_or("")
                    )),
                    _ => None,
                }
            })
            .collect()
    }
}

/// Waits for Chromium's DevToolsActivePort file and connects to its page target.
fn connect_page(profile: &Path) -> anyhow::Result<WebSocket<MaybeTlsStream<TcpStream>>> {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port: u16 = loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Some(p) = text.lines().next().and_then(|l| l.trim().parse().ok())
        {
            break p;
        }
        if Instant::now() > deadline {
            bail!("Chromium did not open its DevTools port within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let url = loop {
        // Chromium may close early connections while it starts: retry until the deadline.
        let list: Value = match http_get(port, "/json/list") {
            Ok(body) => serde_json::from_str(&body).unwrap_or(Value::Null),
            Err(e) if Instant::now() > deadline => return Err(e).context("GET /json/list"),
            Err(_) => Value::Null,
        };
        let page = list.as_array().and_then(|a| {
            a.iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_string)
        });
        if let Some(u) = page {
            break u;
        }
        if Instant::now() > deadline {
            bail!("Chromium has no page target");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (ws, _) = tungstenite::connect(url.as_str()).context("DevTools WebSocket")?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        s.set_nodelay(true)?;
    }
    Ok(ws)
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
