//! Backoff policy: exponential with jitter, never earlier than the platform allows.
use chrono::{DateTime, Duration, Utc};

use crate::{ErrorClass, PlatformFailure};

/// When the next attempt may start. Jitter is an input so the decision stays pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::seconds(2),
            max: Duration::minutes(15),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `attempt_number`-th failure (1-based): `base * 2^(n-1)`, capped, then
    /// scaled by `jitter` in [0.5, 1.0] ("equal jitter") so workers do not retry in lockstep.
    pub fn backoff(&self, attempt_number: u32, jitter: f64) -> Duration {
        let exponent = attempt_number.saturating_sub(1).min(20);
        let raw = self
            .base
            .num_milliseconds()
            .saturating_mul(1_i64 << exponent);
        let capped = raw.min(self.max.num_milliseconds());
        let jitter = jitter.clamp(0.0, 1.0);
        Duration::milliseconds((capped as f64 * (0.5 + jitter / 2.0)) as i64)
    }

    /// When to retry after `failure`, or `None` if its class is not retried by waiting.
    pub fn retry_at(
        &self,
        failure: &PlatformFailure,
        attempt_number: u32,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let earliest = match failure.class {
            ErrorClass::Retryable | ErrorClass::RateLimited => {
                now + self.backoff(attempt_number, jitter)
            }
            // The refresh happens before the next attempt; no reason to wait longer.
            ErrorClass::Auth => now,
            ErrorClass::Permanent | ErrorClass::ReauthorizationRequired => return None,
        };
        Some(match failure.not_before {
            Some(platform_says) if platform_says > earliest => platform_says,
            _ => earliest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1, 1.0), Duration::seconds(2));
        assert_eq!(policy.backoff(2, 1.0), Duration::seconds(4));
        assert_eq!(policy.backoff(3, 0.0), Duration::seconds(4));
        assert_eq!(policy.backoff(30, 1.0), Duration::minutes(15));
    }

    #[test]
    fn the_platforms_retry_after_wins_when_later() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        let later = now + Duration::seconds(60);
        let failure =
            PlatformFailure::new(ErrorClass::RateLimited, "429", "slow down").not_before(later);
        assert_eq!(policy.retry_at(&failure, 1, now, 1.0), Some(later));
        let soon = PlatformFailure::new(ErrorClass::Retryable, "503", "down")
            .not_before(now + Duration::milliseconds(1));
        assert_eq!(
            policy.retry_at(&soon, 1, now, 1.0),
            Some(now + Duration::seconds(2))
        );
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let failure = PlatformFailure::new(ErrorClass::Permanent, "403", "duplicate");
        assert_eq!(
            RetryPolicy::default().retry_at(&failure, 1, Utc::now(), 0.5),
            None
        );
    }
}
