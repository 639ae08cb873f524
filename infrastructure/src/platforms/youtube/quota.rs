//! YouTube's daily quota (platform-facts §7.5): units per Google project per day, the day
//! ending at midnight Pacific time. Google reports no remaining quota, so Herald counts what it
//! spends in the shared store (every worker, every channel of the project) and stops before
//! the project is refused; a `quotaExceeded` from Google closes the quota until the reset.
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use herald_domain::{ErrorClass, PlatformFailure};

use super::config::{InsertQuota, QuotaConfig};
use crate::platforms::RateLimitGate;

/// What a call costs (quota table: `videos.insert` 1600 or its own bucket, `search.list` 100,
/// `thumbnails.set` 50, lists 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cost {
    Insert,
    Units(u64),
}

impl Cost {
    pub const LIST: Self = Self::Units(1);
    pub const THUMBNAIL: Self = Self::Units(50);
}

/// Whether US daylight saving time is in force at `t`: from the second Sunday of March,
/// 02:00 PST (10:00 UTC), to the first Sunday of November, 02:00 PDT (09:00 UTC).
fn pacific_dst(t: DateTime<Utc>) -> bool {
    let at = |month: u32, n: u8, hour: u32| {
        NaiveDate::from_weekday_of_month_opt(t.year(), month, Weekday::Sun, n)
            .and_then(|d| d.and_hms_opt(hour, 0, 0))
            .map(|d| d.and_utc())
    };
    match (at(3, 2, 10), at(11, 1, 9)) {
        (Some(start), Some(end)) => t >= start && t < end,
        _ => false,
    }
}

fn pacific_offset(t: DateTime<Utc>) -> Duration {
    Duration::hours(if pacific_dst(t) { -7 } else { -8 })
}

/// The next midnight in Pacific time (America/Los_Angeles) after `t`: when the quota resets.
pub fn next_pacific_midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    let today = (t + pacific_offset(t)).date_naive();
    let midnight = (today + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    // Transitions happen at 02:00, so the offset eight hours after the local midnight (read
    // as UTC) is the offset at that midnight.
    midnight - pacific_offset(midnight + Duration::hours(8))
}

/// The project's quota as the adapter spends it.
#[derive(Debug, Clone)]
pub(crate) struct Quota {
    config: QuotaConfig,
    /// The shared-store key of the project (its OAuth client id).
    project: String,
}

impl Quota {
    pub fn new(config: QuotaConfig, client_id: &str) -> Self {
        Self {
            config,
            project: format!("youtube:{client_id}"),
        }
    }

    /// The store scope a call draws from, its units and the scope's daily budget.
    fn bucket(&self, cost: Cost) -> (String, u64, u64) {
        match (cost, self.config.insert) {
            (Cost::Insert, InsertQuota::Bucket(per_day)) => {
                (format!("{}:inserts", self.project), 1, per_day)
            }
            (Cost::Insert, InsertQuota::Units(units)) => (
                format!("{}:units", self.project),
                units,
                self.config.daily_units,
            ),
            (Cost::Units(units), _) => (
                format!("{}:units", self.project),
                units,
                self.config.daily_units,
            ),
        }
    }

    /// Takes the call's cost from the day's quota, or says why it cannot be spent today.
    pub async fn take(
        &self,
        limits: &dyn RateLimitGate,
        cost: Cost,
        action: &str,
    ) -> Result<(), PlatformFailure> {
        let now = Utc::now();
        let reset = next_pacific_midnight(now);
        let (scope, units, budget) = self.bucket(cost);
        match limits.take_quota(&scope, units, budget, reset).await {
            Ok(()) => Ok(()),
            Err(until) => Err(PlatformFailure::new(
                ErrorClass::RateLimited,
                "quota_exhausted",
                format!(
                    "could not {action}: the Google project's daily YouTube Data API quota does not leave the {units} units this costs ({}); it resets at midnight Pacific time ({}) and Herald waits until then. To publish more a day, request a higher quota for the project in the Google Cloud console",
                    self.describe(),
                    until.to_rfc3339()
                ),
            )
            .not_before(until)),
        }
    }

    /// Google said `quotaExceeded`: close the quota the call drew from until the reset.
    pub async fn exhausted(&self, limits: &dyn RateLimitGate, cost: Cost) -> DateTime<Utc> {
        let until = next_pacific_midnight(Utc::now());
        let (scope, _, _) = self.bucket(cost);
        limits.quota_exhausted(&scope, until).await;
        until
    }

    fn describe(&self) -> String {
        match self.config.insert {
            InsertQuota::Units(units) => format!(
                "{} units a day, a video upload {units}",
                self.config.daily_units
            ),
            InsertQuota::Bucket(per_day) => format!(
                "{} units a day and {per_day} video uploads",
                self.config.daily_units
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn midnight_pacific_in_both_seasons_and_on_transition_days() {
        assert_eq!(
            next_pacific_midnight(utc("2025-01-15T07:59:00Z")),
            utc("2025-01-15T08:00:00Z")
        );
        assert_eq!(
            next_pacific_midnight(utc("2025-07-01T12:00:00Z")),
            utc("2025-07-02T07:00:00Z")
        );
        assert_eq!(
            next_pacific_midnight(utc("2025-03-09T12:00:00Z")),
            utc("2025-03-10T07:00:00Z")
        );
        assert_eq!(
            next_pacific_midnight(utc("2025-03-08T20:00:00Z")),
            utc("2025-03-09T08:00:00Z")
        );
        assert_eq!(
            next_pacific_midnight(utc("2025-11-02T12:00:00Z")),
            utc("2025-11-03T08:00:00Z")
        );
    }

    #[test]
    fn inserts_draw_from_units_or_their_own_bucket() {
        let q = Quota::new(QuotaConfig::default(), "client");
        assert_eq!(
            q.bucket(Cost::Insert),
            ("youtube:client:units".into(), 1600, 10_000)
        );
        assert_eq!(
            q.bucket(Cost::THUMBNAIL),
            ("youtube:client:units".into(), 50, 10_000)
        );
        let q = Quota::new(
            QuotaConfig {
                daily_units: 10_000,
                insert: InsertQuota::Bucket(100),
            },
            "client",
        );
        assert_eq!(
            q.bucket(Cost::Insert),
            ("youtube:client:inserts".into(), 1, 100)
        );
    }
}
