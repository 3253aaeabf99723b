//! Tests of the plan (flag rules) and of the whole message stream.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::scenario::{parse_cancel_spike, parse_late, parse_surge};
use super::*;
use crate::events::{EventType, RejectReason, parse_driver_location, parse_ride_event};

const NOW: EpochMillis = 1_764_158_400_000; // 2025-11-26T12:00:00Z

fn cfg() -> PipelineConfig {
    PipelineConfig::default()
}

fn plan(o: &GenerateOptions) -> Result<Plan, String> {
    o.plan(&cfg(), NOW).map_err(|e| e.0)
}

#[test]
fn contradictory_flags_are_usage_errors_naming_the_flag() {
    let o = |f: fn(&mut GenerateOptions)| {
        let mut o = GenerateOptions::default();
        f(&mut o);
        plan(&o).unwrap_err()
    };
    assert!(o(|o| o.count = Some(0)).contains("--count"));
    assert!(o(|o| o.duration = Some(Duration::ZERO)).contains("--duration"));
    assert!(
        o(|o| {
            o.count = Some(1);
            o.duration = Some(Duration::from_secs(1))
        })
        .contains("--count and --duration")
    );
    assert!(o(|o| o.speedup = Some(10.0)).contains("--speedup needs --start-time"));
    assert!(
        o(|o| {
            o.speedup = Some(10.0);
            o.start_time = Some(0);
            o.rate = Some(Rate::Max)
        })
        .contains("--speedup cannot be used with --rate max")
    );
    assert!(
        o(|o| {
            o.backfill = Some(Duration::from_secs(60));
            o.start_time = Some(0)
        })
        .contains("--backfill and --start-time")
    );
    assert!(
        o(|o| {
            o.backfill = Some(Duration::from_secs(60));
            o.rate = Some(Rate::PerSecond(5.0))
        })
        .contains("--backfill runs as fast as possible")
    );
    assert!(
        o(|o| o
            .scenarios
            .surges
            .push(parse_surge("paris:x2@0+1m").unwrap()))
        .contains("--surge: unknown city \"paris\"")
    );
    assert!(
        o(|o| o
            .scenarios
            .cancel_spikes
            .push(parse_cancel_spike("oslo:0.5@0+1m").unwrap()))
        .contains("--cancel-spike: unknown city")
    );
}

#[test]
fn plans_follow_the_time_rules() {
    // Paced, from now: 60 s at 50000/min is exactly 50,000 slots 1.2 ms apart.
    let p = plan(&GenerateOptions {
        rate: Some("50000/min".parse().unwrap()),
        duration: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(p.source.start_ms, NOW);
    assert_eq!(p.source.max_ride_slots, Some(50_000));
    assert!((p.source.ride_interval_ms - 1.2).abs() < 1e-9);
    assert_eq!(p.speedup, Some(1.0));
    assert_eq!(p.expected_rides, Some(50_000));
    // Speedup: simulated slots further apart, same wall rate.
    let p = plan(&GenerateOptions {
        rate: Some(Rate::PerSecond(100.0)),
        start_time: Some(NOW - 86_400_000),
        speedup: Some(60.0),
        ..Default::default()
    })
    .unwrap();
    assert!((p.source.ride_interval_ms - 600.0).abs() < 1e-9);
    assert_eq!(p.source.start_ms, NOW - 86_400_000);
    // Max: nominal spacing; a backfill ends now.
    let p = plan(&GenerateOptions {
        backfill: Some(Duration::from_secs(3600)),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(p.speedup, None);
    assert_eq!(p.source.start_ms, NOW - 3_600_000);
    assert_eq!(p.source.end_ms, Some(NOW));
    assert_eq!(p.expected_rides, Some(3_000_000));
    // Max with a count: a history that ends about now.
    let p = plan(&GenerateOptions {
        rate: Some(Rate::Max),
        count: Some(50_000),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(p.source.start_ms, NOW - 60_000);
    // Seeds: given, or random and reported.
    let p = plan(&GenerateOptions {
        seed: Some(7),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(p.source.seed, 7);
}

/// Collects a whole stream: (kind, key, payload, slot offset).
fn collect(o: &GenerateOptions) -> Vec<(Kind, Vec<u8>, Vec<u8>, f64)> {
    let p = o.plan(&cfg(), NOW).unwrap();
    let mut src = Source::new(&cfg().generator, p.source);
    let mut out = Vec::new();
    while let Some(m) = src.next() {
        out.push((m.kind, m.key.to_vec(), m.payload.to_vec(), m.sim_offset_ms));
    }
    out
}

fn fixed(count: u64, seed: u64) -> GenerateOptions {
    GenerateOptions {
        rate: Some(Rate::Max),
        count: Some(count),
        seed: Some(seed),
        start_time: Some(NOW),
        ..Default::default()
    }
}

#[test]
fn same_seed_same_stream_including_faults() {
    let mut o = fixed(20_000, 11);
    o.late = Some(parse_late("5:90s").unwrap());
    o.malformed = Some(0.02);
    o.out_of_order = true;
    o.scenarios
        .surges
        .push(parse_surge("berlin:x2@1s+5s").unwrap());
    let a = collect(&o);
    let b = collect(&o);
    assert_eq!(a, b);
    o.seed = Some(12);
    assert_ne!(a, collect(&o));
}

#[test]
fn count_is_exact_and_counts_valid_ride_events_only() {
    let mut o = fixed(10_000, 1);
    o.malformed = Some(0.05);
    let s = collect(&o);
    let count = |k: Kind| s.iter().filter(|m| m.0 == k).count();
    assert_eq!(count(Kind::Ride), 10_000);
    let bad = count(Kind::Malformed);
    assert!((300..=800).contains(&bad), "{bad} malformed");
    assert!(count(Kind::Location) > 0);
    // Every valid event parses, every malformed one is rejected, and all reasons occur.
    let mut reasons = HashSet::new();
    let mut ids = HashSet::new();
    for (kind, key, payload, _) in &s {
        match kind {
            Kind::Ride => {
                let e = parse_ride_event(payload).unwrap();
                assert_eq!(e.ride_id.as_bytes(), &key[..]);
                assert!(ids.insert(format!("{:?}", e.event_id)), "unique event_id");
            }
            Kind::Malformed => {
                reasons.insert(parse_ride_event(payload).unwrap_err().reason);
            }
            Kind::Location => {
                let l = parse_driver_location(payload).unwrap();
                assert_eq!(l.driver_id.as_bytes(), &key[..]);
            }
        }
    }
    assert_eq!(reasons.len(), RejectReason::ALL.len(), "{reasons:?}");
    // Paced duration: an exact number of slots.
    let o = GenerateOptions {
        rate: Some(Rate::PerSecond(1000.0)),
        duration: Some(Duration::from_secs(3)),
        seed: Some(1),
        start_time: Some(NOW),
        driver_locations: Some(false),
        ..Default::default()
    };
    let s = collect(&o);
    assert_eq!(s.len(), 3000);
    assert!(s.iter().all(|m| m.0 == Kind::Ride));
    assert!((s[2999].3 - 2999.0).abs() < 1e-6);
    // A slow paced run: driver locations continue to the end of the duration.
    let o = GenerateOptions {
        rate: Some(Rate::PerSecond(1.0)),
        duration: Some(Duration::from_secs(10)),
        seed: Some(1),
        start_time: Some(NOW),
        ..Default::default()
    };
    let s = collect(&o);
    assert_eq!(s.iter().filter(|m| m.0 == Kind::Ride).count(), 10);
    let locs: Vec<_> = s.iter().filter(|m| m.0 == Kind::Location).collect();
    assert!((4900..=5000).contains(&locs.len()), "{}", locs.len());
    assert!(locs.last().unwrap().3 > 9990.0);
}

#[test]
fn stream_is_in_time_order_and_rides_are_consistent() {
    let s = collect(&fixed(200_000, 2));
    let mut last = i64::MIN;
    let mut rides: HashMap<String, Vec<EventType>> = HashMap::new();
    for (kind, _, payload, _) in &s {
        let t = match kind {
            Kind::Ride => {
                let e = parse_ride_event(payload).unwrap();
                rides
                    .entry(e.ride_id.to_string())
                    .or_default()
                    .push(e.event_type);
                e.event_time
            }
            Kind::Location => parse_driver_location(payload).unwrap().event_time,
            Kind::Malformed => unreachable!(),
        };
        assert!(t >= last, "time order");
        last = t;
    }
    for (id, evs) in &rides {
        assert_eq!(evs[0], EventType::Requested, "{id}");
        assert!(evs.iter().filter(|e| e.is_terminal()).count() <= 1, "{id}");
    }
    // Locations: 2500 drivers every 5 s, over 200,000 / 833 ≈ 240 s.
    let locs = s.iter().filter(|m| m.0 == Kind::Location).count();
    assert!((110_000..=121_000).contains(&locs), "{locs}");
}

#[test]
fn late_and_out_of_order_change_timestamps_and_order_only() {
    let base = collect(&fixed(20_000, 3));
    let mut o = fixed(20_000, 3);
    o.out_of_order = true;
    o.driver_locations = Some(false);
    let mut b = fixed(20_000, 3);
    b.driver_locations = Some(false);
    let base_nl = collect(&b);
    let shuffled = collect(&o);
    // Same messages, other order; slot offsets still ascending.
    let set = |v: &Vec<(Kind, Vec<u8>, Vec<u8>, f64)>| {
        let mut p: Vec<Vec<u8>> = v.iter().map(|m| m.2.clone()).collect();
        p.sort();
        p
    };
    assert_eq!(set(&base_nl), set(&shuffled));
    assert_ne!(
        base_nl.iter().map(|m| &m.2).collect::<Vec<_>>(),
        shuffled.iter().map(|m| &m.2).collect::<Vec<_>>()
    );
    assert!(shuffled.windows(2).all(|w| w[0].3 <= w[1].3));
    let _ = base;

    let mut o = fixed(20_000, 3);
    o.late = Some(parse_late("10:90s").unwrap());
    o.driver_locations = Some(false);
    let late = collect(&o);
    let mut n_late = 0;
    for (_, _, p, off) in &late {
        let e = parse_ride_event(p).unwrap();
        let slot = NOW + *off as i64;
        if e.event_time == slot - 90_000 {
            n_late += 1;
        } else {
            assert_eq!(e.event_time, slot);
        }
    }
    assert!((1700..=2300).contains(&n_late), "{n_late} late");
}

#[test]
fn a_million_events_stream_in_bounded_memory() {
    // Not a timed test (see `ridectl bench generate`): the stream of a long
    // unpaced run keeps only the rides in flight.
    let o = GenerateOptions {
        driver_locations: Some(false),
        ..fixed(1_000_000, 5)
    };
    let p = o.plan(&cfg(), NOW).unwrap();
    let mut src = Source::new(&cfg().generator, p.source);
    let t = std::time::Instant::now();
    let mut bytes = 0usize;
    while let Some(m) = src.next() {
        bytes += m.payload.len();
    }
    eprintln!(
        "sim+encode: {:.0} events/s, {:.0} bytes/event",
        1e6 / t.elapsed().as_secs_f64(),
        bytes as f64 / 1e6
    );
    assert_eq!(src.counts().rides, 1_000_000);
    // 20 simulated minutes at 833 events/s: well under the ~250k rides in
    // flight of the steady state.
    assert!(src.in_flight() < 250_000, "{}", src.in_flight());
}
