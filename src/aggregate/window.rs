//! Event-time windows aligned to the epoch, as Spark's `window(col, len, slide)`.
//!
//! A window is `[start, start + len)` with `start ≡ 0 (mod slide)`. An event at `t`
//! belongs to the `len / slide` windows whose start lies in `(t − len, t]`; with
//! `slide == len` (tumbling) that is exactly one window. Everything here is pure
//! integer arithmetic on epoch milliseconds.

use crate::time::EpochMillis;

/// Window length and slide, in milliseconds. `len` is a whole multiple of `slide`
/// (checked by the configuration validation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length.
    pub len: i64,
    /// Distance between consecutive window starts.
    pub slide: i64,
}

impl WindowSpec {
    /// A spec from a length and a slide in milliseconds.
    ///
    /// # Panics
    /// When `slide` is not positive or `len` is not a positive multiple of it: the
    /// configuration validation rejects such values before a spec is built.
    pub fn new(len: i64, slide: i64) -> Self {
        assert!(
            slide > 0 && len > 0 && len % slide == 0,
            "window length {len} must be a positive multiple of the slide {slide}"
        );
        WindowSpec { len, slide }
    }

    /// How many windows every event belongs to.
    pub fn windows_per_event(self) -> usize {
        (self.len / self.slide) as usize
    }

    /// The start of the latest window containing `t`.
    pub fn last_start(self, t: EpochMillis) -> EpochMillis {
        t.div_euclid(self.slide) * self.slide
    }

    /// The starts of every window containing `t`, latest first.
    pub fn starts(self, t: EpochMillis) -> impl Iterator<Item = EpochMillis> {
        let last = self.last_start(t);
        (0..self.len / self.slide).map(move |k| last - k * self.slide)
    }

    /// The end (exclusive) of the window starting at `start`.
    pub fn end(self, start: EpochMillis) -> EpochMillis {
        start + self.len
    }

    /// The end of the last window containing `t`: once a horizon reaches it, every
    /// window of `t` is final.
    pub fn last_end(self, t: EpochMillis) -> EpochMillis {
        self.last_start(t) + self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn sliding_windows_cover_the_event() {
        let w = WindowSpec::new(5 * MIN, MIN);
        let t = 10 * MIN + 30_000; // 00:10:30
        let starts: Vec<i64> = w.starts(t).collect();
        assert_eq!(
            starts,
            vec![10 * MIN, 9 * MIN, 8 * MIN, 7 * MIN, 6 * MIN],
            "start in (t − len, t]"
        );
        for s in starts {
            assert!(s <= t && t < w.end(s));
            assert_eq!(s % MIN, 0);
        }
        assert_eq!(w.last_end(t), 15 * MIN);
    }

    #[test]
    fn boundaries_belong_to_the_window_they_start() {
        let w = WindowSpec::new(5 * MIN, MIN);
        // Exactly on a boundary: [t, t+5m) contains t, [t−5m, t) does not.
        let t = 20 * MIN;
        let starts: Vec<i64> = w.starts(t).collect();
        assert_eq!(starts.first(), Some(&(20 * MIN)));
        assert_eq!(starts.last(), Some(&(16 * MIN)));
        assert!(!starts.contains(&(15 * MIN)));
        // One millisecond before the boundary.
        let starts: Vec<i64> = w.starts(t - 1).collect();
        assert_eq!(
            starts,
            vec![19 * MIN, 18 * MIN, 17 * MIN, 16 * MIN, 15 * MIN]
        );
    }

    #[test]
    fn tumbling_windows_are_one_per_event() {
        let w = WindowSpec::new(5 * MIN, 5 * MIN);
        assert_eq!(w.windows_per_event(), 1);
        assert_eq!(w.starts(7 * MIN).collect::<Vec<_>>(), vec![5 * MIN]);
        assert_eq!(w.starts(5 * MIN - 1).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn negative_times_align_like_positive_ones() {
        let w = WindowSpec::new(2 * MIN, MIN);
        assert_eq!(w.starts(-1).collect::<Vec<_>>(), vec![-MIN, -2 * MIN]);
    }

    #[test]
    fn matches_spark_window_function_formula() {
        // Spark: windowStart = t - (t - startTime + slide) % slide, then the
        // len/slide windows ending after t. Check a spread of values.
        let w = WindowSpec::new(300_000, 60_000);
        for t in [
            0i64,
            1,
            59_999,
            60_000,
            1_764_158_400_123,
            1_764_158_459_999,
        ] {
            let spark_last = t - (t + w.slide) % w.slide;
            assert_eq!(w.last_start(t), spark_last, "t={t}");
            assert_eq!(w.starts(t).count(), 5);
        }
    }
}
