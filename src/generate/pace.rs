//! Pacing: when each emission slot may go out, with an injectable clock.
//!
//! Slots are numbered; slot `k` of a stream with `interval` milliseconds between
//! slots sits at simulated offset `k × interval` from the run's start (computed, never
//! accumulated, so the rate is exact however long the run). [`Pacer::wait`] holds a
//! slot back until the wall clock reaches its offset ÷ `speedup`; a slow sink makes
//! the pacer fall behind, and it then catches up without sleeping, so the count over
//! a run stays exact. Unpaced (`--rate max`), it never waits.

use std::time::{Duration, Instant};

/// A clock: elapsed time since the pacer started, and a way to wait.
pub trait Clock {
    /// Time since the clock's origin.
    fn now(&self) -> Duration;
    /// Blocks for about `d`.
    fn sleep(&self, d: Duration);
}

/// The real clock (monotonic).
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn start() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Simulated offsets of numbered slots: slot `k` at `k × interval_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slots {
    /// Milliseconds of simulated time between slots.
    pub interval_ms: f64,
}

impl Slots {
    /// `per_second` slots per second of simulated time.
    pub fn per_second(per_second: f64) -> Slots {
        Slots {
            interval_ms: 1000.0 / per_second,
        }
    }

    /// Simulated offset of slot `k`, milliseconds.
    #[inline]
    pub fn offset_ms(&self, k: u64) -> f64 {
        k as f64 * self.interval_ms
    }
}

/// Shortest sleep: when the next slot is closer than this, the pacer sleeps this
/// long and then sends every slot that became due, in its order. Waking at most
/// 100 times a second keeps the CPU cost of slow rates small (each wake-up is a
/// context switch, for this thread and for the producer's); the groups it sends
/// are what 10 ms of the rate holds (8 events at 50,000/min), far below the
/// producer's own 50 ms linger, so emission stays smooth, and timestamps are
/// unaffected (they are the slots' times).
pub const MIN_SLEEP: Duration = Duration::from_millis(10);
/// Longest single sleep, so a stop request is seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// Holds slots back until their time.
#[derive(Debug)]
pub struct Pacer<C: Clock> {
    clock: C,
    /// Wall milliseconds per simulated millisecond (1 / speedup); `None`: unpaced.
    wall_per_sim: Option<f64>,
}

impl<C: Clock> Pacer<C> {
    /// A pacer running simulated time `speedup` times faster than `clock`.
    pub fn paced(clock: C, speedup: f64) -> Pacer<C> {
        Pacer {
            clock,
            wall_per_sim: Some(1.0 / speedup),
        }
    }

    /// A pacer that never waits (`--rate max`).
    pub fn unpaced(clock: C) -> Pacer<C> {
        Pacer {
            clock,
            wall_per_sim: None,
        }
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The wall-clock offset at which a slot at simulated offset `sim_ms` is due.
    pub fn due(&self, sim_ms: f64) -> Option<Duration> {
        self.wall_per_sim
            .map(|w| Duration::from_secs_f64((sim_ms * w / 1000.0).max(0.0)))
    }

    /// Waits until the slot at simulated offset `sim_ms` is due. Returns `false`
    /// early (without waiting the whole time) when `stop()` turns true.
    pub fn wait(&self, sim_ms: f64, stop: impl Fn() -> bool) -> bool {
        let Some(due) = self.due(sim_ms) else {
            return true;
        };
        loop {
            let now = self.clock.now();
            if now >= due {
                return true;
            }
            if stop() {
                return false;
            }
            self.clock.sleep((due - now).clamp(MIN_SLEEP, MAX_SLEEP));
        }
    }

    /// How far behind its schedule the slot at `sim_ms` is going out (zero when
    /// on time or unpaced).
    pub fn lag(&self, sim_ms: f64) -> Duration {
        self.due(sim_ms)
            .map_or(Duration::ZERO, |d| self.clock.now().saturating_sub(d))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::generate::rng::Rng;

    /// A deterministic clock: sleeping advances it by the requested time plus a
    /// random oversleep (as a busy machine does), and each `now()` costs a little.
    struct FakeClock {
        t: Cell<Duration>,
        rng: std::cell::RefCell<Rng>,
        max_oversleep_us: u64,
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            self.t.set(self.t.get() + Duration::from_nanos(50));
            self.t.get()
        }
        fn sleep(&self, d: Duration) {
            let over = self.rng.borrow_mut().below(self.max_oversleep_us + 1);
            self.t.set(self.t.get() + d + Duration::from_micros(over));
        }
    }

    fn fake(max_oversleep_us: u64) -> FakeClock {
        FakeClock {
            t: Cell::new(Duration::ZERO),
            rng: std::cell::RefCell::new(Rng::new(1)),
            max_oversleep_us,
        }
    }

    /// Emission times (seconds) of `n` slots at `rate`/s with `speedup`.
    fn emit(rate: f64, speedup: f64, secs: f64, clock: FakeClock, sink_cost: Duration) -> Vec<f64> {
        let slots = Slots::per_second(rate / speedup);
        let pacer = Pacer::paced(clock, speedup);
        let mut out = Vec::new();
        // As the generator does: a duration is a whole number of slots.
        for k in 0..(rate * secs).round() as u64 {
            let sim = slots.offset_ms(k);
            assert!(pacer.wait(sim, || false));
            out.push(pacer.clock().now().as_secs_f64());
            // The sink takes a little time per event.
            let c = pacer.clock();
            c.t.set(c.t.get() + sink_cost);
        }
        out
    }

    /// Checks ±1% over every 10 s window (1 s steps) after the first second, and
    /// that no 10 ms window holds more than its share plus a small group.
    fn check(times: &[f64], rate: f64, secs: f64) {
        assert_eq!(times.len() as f64, (rate * secs).round(), "exact count");
        let mut start = 1.0;
        while start + 10.0 <= secs {
            let n = times
                .iter()
                .filter(|&&t| t >= start && t < start + 10.0)
                .count() as f64;
            let want = rate * 10.0;
            assert!(
                (n - want).abs() <= want * 0.01,
                "window at {start}s: {n} events, want {want} ±1%"
            );
            start += 1.0;
        }
        // No bursts: in any 10 ms, at most the rate's share plus what one minimum
        // sleep and an oversleep (≤ 2 ms) can accumulate.
        let per_10ms = rate * 0.010;
        let allowed = per_10ms + rate * (MIN_SLEEP.as_secs_f64() + 0.002) + 2.0;
        let mut j = 0;
        for i in 0..times.len() {
            while times[i] - times[j] >= 0.010 {
                j += 1;
            }
            assert!(
                (i - j + 1) as f64 <= allowed,
                "{} events in 10 ms at {}s (allowed {allowed})",
                i - j + 1,
                times[i]
            );
        }
    }

    #[test]
    fn paced_at_50000_per_minute() {
        let rate = 50_000.0 / 60.0;
        let times = emit(rate, 1.0, 60.0, fake(2000), Duration::from_micros(20));
        check(&times, rate, 60.0);
    }

    #[test]
    fn paced_at_high_rates_and_with_speedup() {
        let times = emit(20_000.0, 1.0, 30.0, fake(1000), Duration::from_micros(2));
        check(&times, 20_000.0, 30.0);
        // Speedup changes simulated time, not the wall rate.
        let times = emit(1000.0, 60.0, 20.0, fake(500), Duration::from_micros(5));
        check(&times, 1000.0, 20.0);
    }

    #[test]
    fn a_stall_is_caught_up_and_the_count_stays_exact() {
        let rate = 1000.0;
        let clock = fake(100);
        let slots = Slots::per_second(rate);
        let pacer = Pacer::paced(clock, 1.0);
        let mut sent = 0;
        for k in 0..20_000u64 {
            assert!(pacer.wait(slots.offset_ms(k), || false));
            if k == 5000 {
                // The sink blocks for 300 ms.
                let c = pacer.clock();
                c.t.set(c.t.get() + Duration::from_millis(300));
            }
            sent += 1;
        }
        assert_eq!(sent, 20_000);
        let end = pacer.clock().now().as_secs_f64();
        assert!((end - 20.0).abs() < 0.02, "{end}");
        assert!(pacer.lag(slots.offset_ms(19_999)) < MIN_SLEEP + Duration::from_millis(1));
    }

    #[test]
    fn unpaced_never_waits_and_stop_interrupts() {
        let pacer = Pacer::unpaced(fake(0));
        assert!(pacer.wait(1e12, || false));
        // Only this call to now() moved the fake clock: nothing slept.
        assert_eq!(pacer.clock().now(), Duration::from_nanos(50));
        let pacer = Pacer::paced(fake(0), 1.0);
        assert!(!pacer.wait(60_000.0, || true));
    }
}
