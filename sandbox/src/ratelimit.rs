//! Fixed-window request counting per (user, endpoint), as platforms document it.

use std::collections::HashMap;
use std::hash::Hash;

/// Outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests left in the current window (after this one).
    pub remaining: u32,
    /// Unix epoch seconds at which the window resets.
    pub reset: i64,
    /// Whether this request is within the limit.
    pub allowed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    count: u32,
}

/// Fixed windows that start at the first request after the previous one ended.
#[derive(Debug)]
pub struct RateLimiter<K> {
    windows: HashMap<K, Window>,
}

impl<K: Eq + Hash> Default for RateLimiter<K> {
    fn default() -> Self {
        Self {
            windows: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> RateLimiter<K> {
    /// Counts one request for `key` at `now` (epoch seconds). A refused request
    /// is not counted.
    pub fn hit(&mut self, key: K, limit: u32, window_secs: i64, now: i64) -> RateStatus {
        let w = self.windows.entry(key).or_insert(Window {
            start: now,
            count: 0,
        });
        if now >= w.start + window_secs {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        let reset = w.start + window_secs;
        if w.count >= limit {
            return RateStatus {
                limit,
                remaining: 0,
                reset,
                allowed: false,
            };
        }
        w.count += 1;
        RateStatus {
            limit,
            remaining: limit - w.count,
            reset,
            allowed: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_refuses_then_resets() {
        let mut rl = RateLimiter::default();
        let a = rl.hit("u", 2, 900, 1000);
        assert_eq!((a.remaining, a.reset, a.allowed), (1, 1900, true));
        let b = rl.hit("u", 2, 900, 1001);
        assert_eq!((b.remaining, b.allowed), (0, true));
        let c = rl.hit("u", 2, 900, 1002);
        assert_eq!((c.remaining, c.allowed), (0, false));
        assert!(rl.hit("other", 2, 900, 1002).allowed);
        let d = rl.hit("u", 2, 900, 1900);
        assert_eq!((d.remaining, d.reset, d.allowed), (1, 2800, true));
    }
}
