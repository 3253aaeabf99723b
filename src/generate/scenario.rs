//! Traffic scenarios from the command line, parsed into typed values.
//!
//! Every parser returns an error message meant to follow the flag name (clap prints
//! `invalid value '…' for '--surge <…>': <message>` and exits 2). City names are
//! checked against `pipeline.yaml` later, by [`Scenarios::resolve`], whose errors
//! name the flag themselves.
//!
//! | flag | syntax | example |
//! |---|---|---|
//! | `--surge` | `CITY:xFACTOR@START+DURATION` | `berlin:x2@5m+10m` |
//! | `--cancel-spike` | `CITY:RATE@START+DURATION` | `prague:0.5@0+7m` |
//! | `--late` | `PCT:DELAY` | `2:90s` |
//! | `--malformed` | `PCT` | `1` |
//!
//! `START` is an offset from the run's simulated start (`0`, `5m`, `1h30m`) or an
//! absolute ISO-8601 time (`2026-11-26T18:00:00Z`).

use std::time::Duration;

use crate::config::CityConfig;
use crate::time::{EpochMillis, parse_iso8601};
use crate::units::parse_duration;

/// When a scenario window starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// This long after the run's simulated start time.
    Offset(Duration),
    /// At this simulated time.
    Absolute(EpochMillis),
}

/// A window of simulated time: `START+DURATION`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Start of the window.
    pub start: At,
    /// Length of the window.
    pub duration: Duration,
}

impl Window {
    /// The window as `[from, to)` epoch milliseconds for a run starting at `start_ms`.
    pub fn resolve(&self, start_ms: EpochMillis) -> (EpochMillis, EpochMillis) {
        let from = match self.start {
            At::Offset(d) => start_ms.saturating_add(duration_ms(d)),
            At::Absolute(t) => t,
        };
        (from, from.saturating_add(duration_ms(self.duration)))
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `--surge CITY:xFACTOR@START+DURATION`: the city's request weight and fares are
/// multiplied by FACTOR during the window.
#[derive(Clone, Debug, PartialEq)]
pub struct Surge {
    /// City name.
    pub city: String,
    /// Demand and fare multiplier (> 0).
    pub factor: f64,
    /// When it applies.
    pub window: Window,
}

/// `--cancel-spike CITY:RATE@START+DURATION`: rides requested in the city during the
/// window are cancelled with total probability RATE (rider and driver cancellations
/// in the configured proportions).
#[derive(Clone, Debug, PartialEq)]
pub struct CancelSpike {
    /// City name.
    pub city: String,
    /// Total cancellation probability, 0..=1.
    pub rate: f64,
    /// When it applies.
    pub window: Window,
}

/// `--late PCT:DELAY`: this share of ride events carries a timestamp DELAY older
/// than its emission slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Late {
    /// Share of ride events, 0..=1.
    pub fraction: f64,
    /// How much older the timestamp is.
    pub delay: Duration,
}

fn parse_pct(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%');
    let v: f64 = t
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage (e.g. 2 or 2.5)"))?;
    if !(v > 0.0 && v <= 100.0) {
        return Err(format!(
            "{s:?} must be more than 0 and at most 100 (percent)"
        ));
    }
    Ok(v / 100.0)
}

fn parse_at(s: &str) -> Result<At, String> {
    let s = s.trim();
    if s.contains('T') || s.contains('-') && s.len() >= 10 {
        return parse_iso8601(s)
            .map(At::Absolute)
            .ok_or_else(|| format!("start {s:?} is neither an offset (5m) nor an ISO-8601 time"));
    }
    parse_duration(s)
        .map(At::Offset)
        .map_err(|e| format!("start: {e}"))
}

/// Splits `CITY:VALUE@START+DURATION`.
fn split_windowed<'a>(s: &'a str, syntax: &str) -> Result<(&'a str, &'a str, Window), String> {
    let bad = || format!("expected {syntax}");
    let (city, rest) = s.split_once(':').ok_or_else(bad)?;
    let (value, when) = rest.split_once('@').ok_or_else(bad)?;
    let (start, dur) = when.rsplit_once('+').ok_or_else(bad)?;
    let city = city.trim();
    if city.is_empty() {
        return Err(format!("missing city; {}", bad()));
    }
    let duration = parse_duration(dur).map_err(|e| format!("duration: {e}"))?;
    if duration.is_zero() {
        return Err("the duration must be greater than zero".into());
    }
    let window = Window {
        start: parse_at(start)?,
        duration,
    };
    Ok((city, value.trim(), window))
}

/// Parses a `--surge` value, `CITY:xFACTOR@START+DURATION` (the `x` is optional).
pub fn parse_surge(s: &str) -> Result<Surge, String> {
    const SYNTAX: &str = "CITY:xFACTOR@START+DURATION, e.g. berlin:x2@5m+10m";
    let (city, value, window) = split_windowed(s, SYNTAX)?;
    let f = value.strip_prefix(['x', 'X']).unwrap_or(value);
    let factor: f64 = f
        .parse()
        .map_err(|_| format!("factor {value:?} is not a number; expected {SYNTAX}"))?;
    if !(factor.is_finite() && factor > 0.0 && factor <= 1000.0) {
        return Err(format!(
            "factor {value:?} must be greater than 0 (and at most 1000)"
        ));
    }
    Ok(Surge {
        city: city.to_lowercase(),
        factor,
        window,
    })
}

/// Parses a `--cancel-spike` value, `CITY:RATE@START+DURATION`; RATE is a
/// probability (`0.5`) or a percentage (`50%`).
pub fn parse_cancel_spike(s: &str) -> Result<CancelSpike, String> {
    const SYNTAX: &str = "CITY:RATE@START+DURATION, e.g. prague:0.5@0+7m";
    let (city, value, window) = split_windowed(s, SYNTAX)?;
    let rate = if let Some(p) = value.strip_suffix('%') {
        parse_pct(p)?
    } else {
        value
            .parse::<f64>()
            .map_err(|_| format!("rate {value:?} is not a number; expected {SYNTAX}"))?
    };
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!(
            "rate {value:?} must be between 0 and 1 (or 0% and 100%)"
        ));
    }
    Ok(CancelSpike {
        city: city.to_lowercase(),
        rate,
        window,
    })
}

/// Parses a `--late` value, `PCT:DELAY` (`2:90s`: 2% of events, 90 s late).
pub fn parse_late(s: &str) -> Result<Late, String> {
    let (pct, delay) = s
        .split_once(':')
        .ok_or_else(|| "expected PCT:DELAY, e.g. 2:90s".to_string())?;
    let delay = parse_duration(delay).map_err(|e| format!("delay: {e}"))?;
    if delay.is_zero() {
        return Err("the delay must be greater than zero".into());
    }
    Ok(Late {
        fraction: parse_pct(pct)?,
        delay,
    })
}

/// Parses a `--malformed` value, a percentage of ride-event slots (`1` = 1%).
pub fn parse_malformed(s: &str) -> Result<f64, String> {
    parse_pct(s)
}

/// A surge bound to a city index and an absolute window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResolvedSurge {
    /// Index into the configured cities.
    pub city: usize,
    /// Multiplier.
    pub factor: f64,
    /// Window start (inclusive), epoch ms.
    pub from_ms: EpochMillis,
    /// Window end (exclusive), epoch ms.
    pub to_ms: EpochMillis,
}

/// A cancellation spike bound to a city index and an absolute window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResolvedSpike {
    /// Index into the configured cities.
    pub city: usize,
    /// Total cancellation probability.
    pub rate: f64,
    /// Window start (inclusive), epoch ms.
    pub from_ms: EpochMillis,
    /// Window end (exclusive), epoch ms.
    pub to_ms: EpochMillis,
}

/// The demand-side scenarios the simulator applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scenarios {
    /// `--surge` values.
    pub surges: Vec<Surge>,
    /// `--cancel-spike` values.
    pub cancel_spikes: Vec<CancelSpike>,
}

/// [`Scenarios`] bound to the configured cities and the run's start time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedScenarios {
    /// Surges.
    pub surges: Vec<ResolvedSurge>,
    /// Cancellation spikes.
    pub spikes: Vec<ResolvedSpike>,
}

impl Scenarios {
    /// Checks every city name against `cities`; the error names the flag and lists
    /// the known cities.
    pub fn check_cities(&self, cities: &[CityConfig]) -> Result<(), String> {
        let names = || {
            cities
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let known = |c: &str| cities.iter().any(|x| x.name == c);
        for s in &self.surges {
            if !known(&s.city) {
                return Err(format!(
                    "--surge: unknown city {:?} (pipeline.yaml has: {})",
                    s.city,
                    names()
                ));
            }
        }
        for s in &self.cancel_spikes {
            if !known(&s.city) {
                return Err(format!(
                    "--cancel-spike: unknown city {:?} (pipeline.yaml has: {})",
                    s.city,
                    names()
                ));
            }
        }
        Ok(())
    }

    /// Binds the scenarios to city indices and absolute windows. Unknown cities are
    /// an error (see [`Scenarios::check_cities`]).
    pub fn resolve(
        &self,
        cities: &[CityConfig],
        start_ms: EpochMillis,
    ) -> Result<ResolvedScenarios, String> {
        self.check_cities(cities)?;
        let idx = |c: &str| cities.iter().position(|x| x.name == c).unwrap_or(0);
        Ok(ResolvedScenarios {
            surges: self
                .surges
                .iter()
                .map(|s| {
                    let (from_ms, to_ms) = s.window.resolve(start_ms);
                    ResolvedSurge {
                        city: idx(&s.city),
                        factor: s.factor,
                        from_ms,
                        to_ms,
                    }
                })
                .collect(),
            spikes: self
                .cancel_spikes
                .iter()
                .map(|s| {
                    let (from_ms, to_ms) = s.window.resolve(start_ms);
                    ResolvedSpike {
                        city: idx(&s.city),
                        rate: s.rate,
                        from_ms,
                        to_ms,
                    }
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_parses() {
        let s = parse_surge("berlin:x2@5m+10m").unwrap();
        assert_eq!(s.city, "berlin");
        assert_eq!(s.factor, 2.0);
        assert_eq!(s.window.start, At::Offset(Duration::from_secs(300)));
        assert_eq!(s.window.duration, Duration::from_secs(600));
        assert_eq!(s.window.resolve(1000), (301_000, 901_000));
        let s = parse_surge("Vienna:1.5@0+1h").unwrap();
        assert_eq!((s.city.as_str(), s.factor), ("vienna", 1.5));
        let s = parse_surge("munich:x3@2026-11-26T18:00:00Z+2h").unwrap();
        let t = parse_iso8601("2026-11-26T18:00:00Z").unwrap();
        assert_eq!(s.window.start, At::Absolute(t));
        let s = parse_surge("munich:x3@2026-11-26T19:00:00+01:00+2h").unwrap();
        assert_eq!(s.window.start, At::Absolute(t));
        for bad in [
            "berlin",
            "berlin:x2",
            "berlin:x2@5m",
            "berlin:xx@0+1m",
            "berlin:x0@0+1m",
            "berlin:x2@soon+1m",
            "berlin:x2@0+0s",
            ":x2@0+1m",
        ] {
            assert!(parse_surge(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cancel_spike_late_malformed_parse() {
        let c = parse_cancel_spike("prague:0.5@0+7m").unwrap();
        assert_eq!((c.city.as_str(), c.rate), ("prague", 0.5));
        assert_eq!(c.window.start, At::Offset(Duration::ZERO));
        assert_eq!(parse_cancel_spike("prague:40%@1m+1m").unwrap().rate, 0.4);
        assert!(parse_cancel_spike("prague:1.5@0+7m").is_err());
        assert!(parse_cancel_spike("prague:lots@0+7m").is_err());
        let l = parse_late("2:90s").unwrap();
        assert!((l.fraction - 0.02).abs() < 1e-12);
        assert_eq!(l.delay, Duration::from_secs(90));
        assert!(parse_late("2").is_err());
        assert!(parse_late("0:90s").is_err());
        assert!(parse_late("2:0s").is_err());
        assert!((parse_malformed("1").unwrap() - 0.01).abs() < 1e-12);
        assert!(parse_malformed("0").is_err());
        assert!(parse_malformed("101").is_err());
        assert!(parse_malformed("some").is_err());
    }

    #[test]
    fn unknown_cities_name_the_flag() {
        let cities = crate::config::GeneratorConfig::default().cities;
        let sc = Scenarios {
            surges: vec![parse_surge("paris:x2@0+1m").unwrap()],
            cancel_spikes: vec![],
        };
        let e = sc.check_cities(&cities).unwrap_err();
        assert!(e.starts_with("--surge: unknown city \"paris\""), "{e}");
        assert!(e.contains("berlin"), "{e}");
        let sc = Scenarios {
            surges: vec![],
            cancel_spikes: vec![parse_cancel_spike("rome:0.5@0+1m").unwrap()],
        };
        let e = sc.check_cities(&cities).unwrap_err();
        assert!(e.starts_with("--cancel-spike: unknown city"), "{e}");
        let sc = Scenarios {
            surges: vec![parse_surge("prague:x2@1m+1m").unwrap()],
            cancel_spikes: vec![],
        };
        let r = sc.resolve(&cities, 0).unwrap();
        assert_eq!(r.surges[0].city, 2);
        assert_eq!((r.surges[0].from_ms, r.surges[0].to_ms), (60_000, 120_000));
    }
}
