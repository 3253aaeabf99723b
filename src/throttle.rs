//! Rate limiting for repeated log lines. While a broker is down, librdkafka reports
//! the same error on every poll (dozens of lines a second per worker); a
//! [`LogThrottle`] lets the first one through, then one per interval with the number
//! left out in between.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets a repeated message through at most once per interval.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    /// When a message last went through, and how many were held back since.
    state: Mutex<Option<(Instant, u64)>>,
}

impl LogThrottle {
    /// At most one message per `every`.
    pub const fn new(every: Duration) -> LogThrottle {
        LogThrottle {
            every,
            state: Mutex::new(None),
        }
    }

    /// `Some(n)` when this occurrence should be logged (`n` were held back since
    /// the last one), `None` when it should be dropped.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let Ok(mut state) = self.state.lock() else {
            return Some(0);
        };
        match *state {
            Some((last, held)) if now.duration_since(last) < self.every => {
                *state = Some((last, held + 1));
                None
            }
            Some((_, held)) => {
                *state = Some((now, 0));
                Some(held)
            }
            None => {
                *state = Some((now, 0));
                Some(0)
            }
        }
    }
}

/// " (N more like it in the last interval)" when `held` > 0, else "".
pub fn held_back(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(" ({held} similar messages held back)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_goes_through_then_one_per_interval_with_the_count() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow_at(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(t.allow_at(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.allow_at(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(t.allow_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(held_back(0), "");
        assert_eq!(held_back(3), " (3 similar messages held back)");
    }
}
