//! Screenshot of a running `ridectl dashboard` in headless Chromium:
//! `cargo run --release --example dashboard_screenshot -- URL OUT.png [WIDTH HEIGHT]`.
//! It waits for every panel to be drawn, then captures the viewport.

use std::time::Duration;

use ridectl::dashboard::browser::Browser;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(out)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: dashboard_screenshot URL OUT.png [WIDTH HEIGHT]");
    };
    let width = args.get(3).and_then(|w| w.parse().ok()).unwrap_or(1920);
    let height = args.get(4).and_then(|h| h.parse().ok()).unwrap_or(1080);
    let mut b = Browser::launch(width, height)?;
    b.navigate(url)?;
    b.wait_for(
        "document.body.dataset.ready && [...document.querySelectorAll('.panel')].every(p => p.dataset.state !== 'loading')",
        Duration::from_secs(60),
    )?;
    std::thread::sleep(Duration::from_millis(1500));
    b.screenshot(std::path::Path::new(out))?;
    if let Ok(expr) = std::env::var("DASHBOARD_EVAL") {
        println!("{}", b.eval(&expr)?);
    }
    let errors = b.console_errors();
    if !errors.is_empty() {
        eprintln!("console errors: {errors:#?}");
    }
    println!("{out}");
    Ok(())
}
