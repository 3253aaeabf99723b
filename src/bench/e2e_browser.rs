//! `ridectl bench e2e --browser`: the last hop of freshness, measured where people
//! look. Beside the benchmark's pipeline, a `ridectl dashboard` server (in process,
//! on a loopback port of the kernel's choosing) serves the Grafana dashboard to a
//! headless Chromium driven over the DevTools protocol
//! ([`crate::dashboard::browser`]). Each time the page draws the freshness panel, it
//! records the wall-clock time and the newest ride event the page now shows (the
//! panel's read time minus its "ride_events" seconds). A sampled event is visible
//! from the first page update whose newest event is at least as new: its delay is
//! that update's time minus the event's timestamp.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::config::Loaded;
use crate::dashboard::browser::Browser;
use crate::dashboard::{Options, Server, model};
use crate::shutdown::{Shutdown, Trigger};
use crate::time::EpochMillis;

/// A dashboard server and a headless Chromium watching it.
pub struct PageWatch {
    trigger: Trigger,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: Arc<AtomicBool>,
    browser: tokio::task::JoinHandle<anyhow::Result<PageRecord>>,
}

/// What the page showed: `(shown_at, newest event timestamp)` per update, in order,
/// and the console errors seen.
#[derive(Debug, Default)]
pub struct PageRecord {
    /// `(shown_at, newest event timestamp)`, epoch ms.
    pub shown: Vec<(EpochMillis, EpochMillis)>,
    /// Console errors of the page.
    pub console_errors: Vec<String>,
}

impl PageRecord {
    /// When an event of timestamp `ts` first showed on the page, if it did.
    pub fn visible_at(&self, ts: EpochMillis) -> Option<EpochMillis> {
        self.shown
            .iter()
            .find(|(_, newest)| *newest >= ts)
            .map(|(at, _)| *at)
    }
}

/// Starts the dashboard on `l`'s database and opens it in headless Chromium.
pub async fn start(l: &Loaded) -> anyhow::Result<PageWatch> {
    let file = model::dashboard_file(&l.resolve(std::path::Path::new("grafana/dashboards")))?;
    let (trigger, shutdown) = Shutdown::manual();
    let server = Server::bind(
        Options {
            listen: "127.0.0.1:0".parse()?,
            auth: None,
            dashboard: model::load(&file)?,
            clickhouse: l.config.clickhouse.clone(),
            poll_every: Duration::from_secs(1),
        },
        shutdown,
    )
    .await?;
    let url = format!("http://{}/?range=15m", server.local_addr()?);
    let server = tokio::spawn(server.run());
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let browser = tokio::task::spawn_blocking(move || {
        let mut b = match Browser::launch(1920, 1080) {
            Ok(b) => b,
            Err(e) => {
                let _ = ready_tx.send(Err(format!("{e:#}")));
                return Err(e);
            }
        };
        b.navigate(&url)?;
        b.wait_for("document.body.dataset.ready", Duration::from_secs(60))?;
        let _ = ready_tx.send(Ok(()));
        let mut shown = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            let v = b.eval("JSON.stringify(window.__ridectl.metrics.shown.splice(0))")?;
            let batch: Vec<(EpochMillis, EpochMillis)> =
                serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap_or_default();
            shown.extend(batch);
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(PageRecord {
            shown,
            console_errors: b.console_errors(),
        })
    });
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => anyhow::bail!("--browser: {e}"),
        Err(_) => {
            let e = browser.await.context("browser task")?.err();
            anyhow::bail!("--browser: the page did not load: {e:?}");
        }
    }
    Ok(PageWatch {
        trigger,
        server,
        stop,
        browser,
    })
}

impl PageWatch {
    /// Stops the browser and the server; what the page showed.
    pub async fn finish(self) -> anyhow::Result<PageRecord> {
        self.stop.store(true, Ordering::Relaxed);
        let record = self.browser.await.context("browser task");
        self.trigger.fire();
        self.server.await.context("dashboard task")??;
        record?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_visible_from_the_first_update_showing_something_as_new() {
        let r = PageRecord {
            shown: vec![(1_000, 500), (2_000, 1_400), (3_000, 2_600)],
            console_errors: Vec::new(),
        };
        assert_eq!(r.visible_at(400), Some(1_000));
        assert_eq!(r.visible_at(501), Some(2_000));
        assert_eq!(r.visible_at(2_600), Some(3_000));
        assert_eq!(r.visible_at(2_601), None);
    }
}
