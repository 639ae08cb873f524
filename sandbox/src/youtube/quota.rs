//! YouTube quota: units per project per day, the day ending at midnight Pacific time
//! (facts §7.5), under the legacy single pool or the newer per-method buckets.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Utc, Weekday};

use super::{YouTubeQuotaModel, YouTubeQuotaSnapshot};

/// What a call costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cost {
    /// This many units from the common pool.
    Units(u64),
    /// `videos.insert`.
    Insert,
    /// `search.list`.
    Search,
}

/// The nth (1-based) `weekday` of `month` in `year`.
fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u32) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n as u8)
        .expect("every month has a first and second Sunday")
}

/// Whether US daylight saving time is in force at `t`: from the second Sunday of March,
/// 02:00 PST (10:00 UTC), to the first Sunday of November, 02:00 PDT (09:00 UTC).
fn pacific_dst(t: DateTime<Utc>) -> bool {
    let year = t.year();
    let start = nth_weekday(year, 3, Weekday::Sun, 2)
        .and_hms_opt(10, 0, 0)
        .expect("valid time")
        .and_utc();
    let end = nth_weekday(year, 11, Weekday::Sun, 1)
        .and_hms_opt(9, 0, 0)
        .expect("valid time")
        .and_utc();
    t >= start && t < end
}

/// Offset of Pacific time from UTC at `t` (hours: -7 or -8).
fn pacific_offset_hours(t: DateTime<Utc>) -> i64 {
    if pacific_dst(t) {
        -7
    } else {
        -8
    }
}

/// The calendar date in Pacific time (America/Los_Angeles) at `t`.
pub fn pacific_date(t: DateTime<Utc>) -> NaiveDate {
    (t + Duration::hours(pacific_offset_hours(t))).date_naive()
}

/// The next midnight in Pacific time after `t`, as UTC: when YouTube's daily quota resets.
pub fn next_pacific_midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    let local_midnight: NaiveDateTime = (pacific_date(t) + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    // Midnight is never inside a transition (they happen at 02:00), so the offset at the
    // candidate instant is the offset of that midnight.
    let guess = local_midnight.and_utc() + Duration::hours(8);
    local_midnight.and_utc() - Duration::hours(pacific_offset_hours(guess))
}

/// The project's counts for one Pacific day.
#[derive(Debug, Clone)]
pub(crate) struct Quota {
    pub day: NaiveDate,
    pub units: u64,
    pub inserts: u64,
    pub searches: u64,
    pub refused: u64,
}

impl Quota {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            day: pacific_date(now),
            units: 0,
            inserts: 0,
            searches: 0,
            refused: 0,
        }
    }

    /// Starts a new day's counts when the Pacific date has changed.
    fn roll(&mut self, now: DateTime<Utc>) {
        if pacific_date(now) != self.day {
            *self = Quota::new(now);
        }
    }

    /// Charges `cost` if the day's quota allows it; a refused call is not charged.
    pub fn charge(
        &mut self,
        cost: Cost,
        model: YouTubeQuotaModel,
        daily_units: u64,
        now: DateTime<Utc>,
    ) -> bool {
        self.roll(now);
        let units = match (cost, model) {
            (Cost::Units(n), _) => n,
            (Cost::Insert, YouTubeQuotaModel::Legacy { insert_cost }) => insert_cost,
            (Cost::Search, YouTubeQuotaModel::Legacy { .. }) => 100,
            (
                Cost::Insert,
                YouTubeQuotaModel::Buckets {
                    inserts_per_day, ..
                },
            ) => {
                if self.inserts >= inserts_per_day {
                    self.refused += 1;
                    return false;
                }
                self.inserts += 1;
                return true;
            }
            (
                Cost::Search,
                YouTubeQuotaModel::Buckets {
                    searches_per_day, ..
                },
            ) => {
                if self.searches >= searches_per_day {
                    self.refused += 1;
                    return false;
                }
                self.searches += 1;
                return true;
            }
        };
        if self.units + units > daily_units {
            self.refused += 1;
            return false;
        }
        self.units += units;
        match cost {
            Cost::Insert => self.inserts += 1,
            Cost::Search => self.searches += 1,
            _ => {}
        }
        true
    }

    pub fn snapshot(
        &mut self,
        model: YouTubeQuotaModel,
        daily_units: u64,
        now: DateTime<Utc>,
    ) -> YouTubeQuotaSnapshot {
        self.roll(now);
        YouTubeQuotaSnapshot {
            day: self.day.to_string(),
            units_used: self.units,
            daily_units,
            inserts: self.inserts,
            searches: self.searches,
            refused: self.refused,
            model,
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
    fn pacific_midnight_in_winter_and_summer() {
        // January: PST, UTC-8.
        assert_eq!(
            next_pacific_midnight(utc("2025-01-15T07:59:00Z")),
            utc("2025-01-15T08:00:00Z")
        );
        assert_eq!(
            next_pacific_midnight(utc("2025-01-15T08:00:00Z")),
            utc("2025-01-16T08:00:00Z")
        );
        // July: PDT, UTC-7.
        assert_eq!(
            next_pacific_midnight(utc("2025-07-01T12:00:00Z")),
            utc("2025-07-02T07:00:00Z")
        );
        assert_eq!(
            pacific_date(utc("2025-07-02T06:59:59Z")).to_string(),
            "2025-07-01"
        );
    }

    #[test]
    fn transition_days() {
        // 2025-03-09 is the second Sunday of March: the midnight after it is PDT.
        assert_eq!(
            next_pacific_midnight(utc("2025-03-09T12:00:00Z")),
            utc("2025-03-10T07:00:00Z")
        );
        // 2025-11-02 is the first Sunday of November: the midnight after it is PST.
        assert_eq!(
            next_pacific_midnight(utc("2025-11-02T12:00:00Z")),
            utc("2025-11-03T08:00:00Z")
        );
        // The midnight starting 2025-03-09 itself was still PST.
        assert_eq!(
            next_pacific_midnight(utc("2025-03-08T20:00:00Z")),
            utc("2025-03-09T08:00:00Z")
        );
    }

    #[test]
    fn legacy_pool_refuses_what_does_not_fit() {
        let now = utc("2025-01-15T12:00:00Z");
        let model = YouTubeQuotaModel::Legacy { insert_cost: 1600 };
        let mut q = Quota::new(now);
        for _ in 0..6 {
            assert!(q.charge(Cost::Insert, model, 10_000, now));
        }
        assert!(!q.charge(Cost::Insert, model, 10_000, now));
        assert!(q.charge(Cost::Units(1), model, 10_000, now));
        assert_eq!((q.units, q.inserts, q.refused), (9601, 6, 1));
        // A new Pacific day starts afresh.
        assert!(q.charge(Cost::Insert, model, 10_000, utc("2025-01-16T08:00:00Z")));
        assert_eq!(q.units, 1600);
    }

    #[test]
    fn buckets_count_calls() {
        let now = utc("2025-01-15T12:00:00Z");
        let model = YouTubeQuotaModel::Buckets {
            inserts_per_day: 2,
            searches_per_day: 1,
        };
        let mut q = Quota::new(now);
        assert!(q.charge(Cost::Insert, model, 10, now));
        assert!(q.charge(Cost::Insert, model, 10, now));
        assert!(!q.charge(Cost::Insert, model, 10, now));
        assert!(q.charge(Cost::Search, model, 10, now));
        assert!(!q.charge(Cost::Search, model, 10, now));
        assert!(q.charge(Cost::Units(10), model, 10, now));
        assert!(!q.charge(Cost::Units(1), model, 10, now));
    }
}
