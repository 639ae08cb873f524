//! The rolling posts-per-24-hours publishing quota that Instagram (`content_publishing_limit`,
//! facts §4.3) and Threads (`threads_publishing_limit`, facts §6.3; its replies have a second
//! one) report live and enforce on their publish call. Each publish is reserved through the shared gate right before the
//! irreversible call ([`RateLimitGate::reserve_publish`]), so the live count plus Herald's own
//! publishes the count may not show yet never exceed the quota, whatever the number of workers.
use std::future::Future;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use serde::Deserialize;

use crate::platforms::{
    PostError, PublishReservation, PublishSettled, QuotaReading, RateLimitGate,
};

/// The window of both quotas.
pub const WINDOW: TimeDelta = TimeDelta::hours(24);

/// How Meta refuses a publish past the quota: subcode 2207042 (Instagram, facts §4.4). Facts
/// §6.3 give no error for Threads' quotas; the Threads twin answers with the same subcode.
const REFUSAL_SUBCODE: &str = "_2207042";

/// Whether the platform refused a publish because the quota was used up.
pub fn is_refusal(failure: &PlatformFailure) -> bool {
    failure.code.ends_with(REFUSAL_SUBCODE)
}

/// One entry of a publishing-limit answer: `{"quota_usage": 4, "config": {"quota_total": 250,
/// "quota_duration": 86400}}`.
#[derive(Debug, Default, Deserialize)]
pub struct QuotaEntry {
    #[serde(default)]
    pub quota_usage: u32,
    pub config: Option<QuotaConfig>,
}

#[derive(Debug, Default, Deserialize)]
pub struct QuotaConfig {
    pub quota_total: Option<u32>,
}

/// A platform's publishing quota as one adapter sees it.
#[derive(Debug, Clone, Copy)]
pub struct PublishingQuota {
    /// The gate's key (also the key of the "used up until" hint other workers read).
    pub key: &'static str,
    /// The platform, for messages: "Instagram", "Threads".
    pub platform: &'static str,
    /// Who is limited, for messages: "Instagram account", "Threads profile".
    pub owner: &'static str,
    /// What the quota counts, for messages: "posts", "replies".
    pub items: &'static str,
    /// Posts per window when the platform does not say.
    pub fallback: u32,
    /// Never more than this per window, whatever the platform allows.
    pub cap: Option<u32>,
}

impl PublishingQuota {
    /// The quota the configuration expects before any reading.
    fn configured_total(&self) -> u32 {
        self.cap.unwrap_or(self.fallback)
    }

    /// The reading of a publishing-limit answer taken at `read_at` (before the request).
    pub fn reading(&self, entry: Option<QuotaEntry>, read_at: DateTime<Utc>) -> QuotaReading {
        let entry = entry.unwrap_or_default();
        let live_total = entry
            .config
            .and_then(|c| c.quota_total)
            .unwrap_or(self.fallback);
        let total = self.cap.map_or(live_total, |cap| cap.min(live_total));
        QuotaReading {
            used: u64::from(entry.quota_usage),
            total: u64::from(total),
            window: WINDOW.to_std().expect("a positive window"),
            read_at,
        }
    }

    /// The job waits until `until`: a rate limit, not a failure.
    pub fn used_up(&self, total: u64, in_flight: u64, until: DateTime<Utc>) -> PlatformFailure {
        let publishing = match in_flight {
            0 => String::new(),
            1 => " (Herald is publishing one of them right now)".to_owned(),
            n => format!(" (Herald is publishing {n} of them right now)"),
        };
        PlatformFailure::new(
            ErrorClass::RateLimited,
            "publishing_quota",
            format!(
                "the {} {} used its {total} API-published {} of the last 24 hours{publishing}; Herald publishes at {} when the oldest leaves the window, nothing to do",
                self.platform,
                self.owner,
                self.items,
                until.to_rfc3339()
            ),
        )
        .not_before(until)
    }

    /// Refuses at once when the workers already know the quota is used up (the gate holds
    /// what the last reading said), before any container is made.
    pub async fn known_free(&self, limits: &dyn RateLimitGate) -> Result<(), PlatformFailure> {
        limits
            .acquire(self.key)
            .await
            .map_err(|until| self.used_up(u64::from(self.configured_total()), 0, until))
    }

    /// Reserves this publish given `reading`: refuses when the platform's count plus Herald's
    /// publishes it may not show yet fill the quota, and tells the gate when nothing is left.
    /// `next_free` says when the oldest post the platform lists leaves the window (`None`: it
    /// lists none); it is asked only when the quota is (or becomes) full.
    pub async fn reserve<F, Fut>(
        &self,
        reading: QuotaReading,
        limits: &dyn RateLimitGate,
        next_free: F,
    ) -> Result<PublishReservation, PlatformFailure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<DateTime<Utc>>>,
    {
        match limits.reserve_publish(self.key, reading).await {
            Ok(reservation) => {
                // The hint closes the quota only while it is full (`acquire` takes from a
                // budget that has not reset yet, which must not hold jobs back otherwise).
                match reservation.left {
                    // This publish itself leaves the window last.
                    0 => {
                        let reset = next_free().await.unwrap_or_else(|| Utc::now() + WINDOW);
                        limits.observe(self.key, Some(0), Some(reset)).await;
                    }
                    left => self.reopen(left, limits).await,
                }
                Ok(reservation)
            }
            Err(full) => {
                let free_at = match (next_free().await, full.frees_at) {
                    (Some(on_platform), Some(herald)) => on_platform.min(herald),
                    (Some(at), None) | (None, Some(at)) => at,
                    // The platform counts posts it does not list: look again in an hour.
                    (None, None) => Utc::now() + TimeDelta::hours(1),
                };
                limits.observe(self.key, Some(0), Some(free_at)).await;
                Err(self.used_up(reading.total, full.in_flight, free_at))
            }
        }
    }

    /// Tells the gate how a reserved publish ended: a refusal frees the slot (and reopens the
    /// quota for the other workers when this was its last, unless the refusal was the quota
    /// itself), an unknown outcome keeps it counted.
    pub async fn settle<T>(
        &self,
        reservation: &PublishReservation,
        outcome: &Result<T, PostError>,
        limits: &dyn RateLimitGate,
    ) {
        match outcome {
            Ok(_) => {
                limits
                    .settle_publish(self.key, reservation, PublishSettled::Published)
                    .await
            }
            Err(PostError::Failed(failure)) => {
                limits
                    .settle_publish(self.key, reservation, PublishSettled::NotPublished)
                    .await;
                if reservation.left == 0 && !is_refusal(failure) {
                    self.reopen(1, limits).await;
                }
            }
            Err(PostError::OutcomeUnknown(_)) => {}
        }
    }

    /// Tells the gate the quota has `left` slots: its hint reset long ago, so `known_free` lets
    /// jobs through and the reservation judges. (A reset of "now" would race: a worker whose
    /// clock reading precedes it by a moment would see a closed quota reopening "now".)
    async fn reopen(&self, left: u64, limits: &dyn RateLimitGate) {
        limits
            .observe(self.key, Some(left), Some(DateTime::<Utc>::UNIX_EPOCH))
            .await;
    }

    /// The platform refused a publish past its quota although Herald saw room (posts made
    /// elsewhere meanwhile): every worker waits until `free_at`.
    pub async fn refused(
        &self,
        failure: PlatformFailure,
        free_at: DateTime<Utc>,
        limits: &dyn RateLimitGate,
    ) -> PlatformFailure {
        limits.observe(self.key, Some(0), Some(free_at)).await;
        failure.not_before(free_at)
    }
}

/// Graph's `2025-01-02T03:04:05+0000` (or RFC 3339).
pub fn parse_graph_time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%z")
        .or_else(|_| DateTime::parse_from_rfc3339(raw))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// When the oldest of `posted` (publish times) leaves the window: the next free slot, if any
/// post is in the window.
pub fn next_free_slot(
    posted: impl IntoIterator<Item = DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    posted
        .into_iter()
        .filter(|at| *at > now - WINDOW)
        .min()
        .map(|oldest| oldest + WINDOW + TimeDelta::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(cap: Option<u32>) -> PublishingQuota {
        PublishingQuota {
            key: "k",
            platform: "Threads",
            owner: "profile",
            items: "posts",
            fallback: 250,
            cap,
        }
    }

    #[test]
    fn the_reading_takes_the_live_total_under_the_cap() {
        let now = Utc::now();
        let live = |usage, total| QuotaEntry {
            quota_usage: usage,
            config: Some(QuotaConfig { quota_total: total }),
        };
        let r = quota(None).reading(Some(live(4, Some(100))), now);
        assert_eq!((r.used, r.total, r.read_at), (4, 100, now));
        assert_eq!(
            quota(Some(10)).reading(Some(live(4, Some(100))), now).total,
            10
        );
        assert_eq!(quota(None).reading(Some(live(4, None)), now).total, 250);
        assert_eq!(quota(None).reading(None, now).used, 0);
    }

    #[test]
    fn the_next_slot_frees_when_the_oldest_post_leaves_the_window() {
        let now = Utc::now();
        let oldest = now - TimeDelta::hours(20);
        let posted = [
            now - TimeDelta::hours(2),
            oldest,
            now - TimeDelta::hours(30),
        ];
        assert_eq!(
            next_free_slot(posted, now),
            Some(oldest + WINDOW + TimeDelta::seconds(1))
        );
        assert_eq!(next_free_slot([], now), None);
    }
}
