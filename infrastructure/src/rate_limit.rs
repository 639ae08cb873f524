//! Rate limits shared by every worker process (ARCHITECTURE invariant 6): the budget the
//! platform last reported, per platform, account and endpoint, lives in the database, and so
//! do the publishes reserved from a rolling posts-per-24-hours quota (`publish_reservations`).
//!
//! Keys: `{platform}:{account_id}:{endpoint}` for an account's budget, and
//! `app:{client_id}:{endpoint}` for a budget every account connected through one application
//! shares (an endpoint the adapter names with [`crate::platforms::app_key`]). The app key has no
//! platform in it, so two adapters of one application (Facebook Pages and Instagram on one Meta
//! app) share it; its endpoint names the platform (`reddit_api`, `meta_app_usage`).
//!
//! A row holds the calls left and when the window resets. Every call takes one before it goes
//! out; a platform's report replaces the count only for a new window, and within one window
//! only lowers it (reports arrive out of order, and the store has already counted calls still
//! on their way). Once a window has reset nobody knows the new budget until the platform
//! answers: calls then go out as a debt below zero, at most the window's size where the
//! platform said it (`{key}#window`), and the first report of the new window takes that debt
//! off what it says is left.
use chrono::{DateTime, Utc};
use herald_domain::Platform;
use sqlx::Row;

use crate::db::{from_millis, millis, Db};
use crate::platforms::{
    PublishReservation, PublishSettled, QuotaFull, QuotaReading, RateLimitGate,
};

/// How long after its reservation a publish whose outcome is unknown may have happened: its
/// reservation counts for the window plus this (publish calls time out well within it).
const PUBLISH_MARGIN_MS: i64 = 5 * 60 * 1000;

/// Reports from one window whose resets differ by no more than this are the same window
/// (Reddit's reset is "seconds to the end of the period", rounded).
const SAME_WINDOW_MS: i64 = 2_000;
/// The size of a window no platform answer has given yet: no bound.
const UNKNOWN_WINDOW: i64 = i64::MAX / 2;
/// How long to hold back when a new window's calls are all on their way, unanswered.
const UNANSWERED_WAIT_MS: i64 = 1_000;

/// The store key holding how many calls `bucket`'s window allows.
fn window_bucket(bucket: &str) -> String {
    format!("{bucket}#window")
}

/// The gate for one account on one platform.
#[derive(Debug, Clone)]
pub struct SharedRateLimits {
    db: Db,
    platform: Platform,
    account_id: String,
}

impl SharedRateLimits {
    pub fn new(db: Db, platform: Platform, account_id: &str) -> Self {
        Self {
            db,
            platform,
            account_id: account_id.to_owned(),
        }
    }

    /// The store key of `endpoint`: the application's budget for an `app:` endpoint, this
    /// account's otherwise.
    fn bucket(&self, endpoint: &str) -> String {
        if crate::platforms::is_app_key(endpoint) {
            endpoint.to_owned()
        } else {
            format!("{}:{}:{endpoint}", self.platform, self.account_id)
        }
    }

    async fn try_acquire(
        &self,
        endpoint: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Result<(), DateTime<Utc>>> {
        let bucket = self.bucket(endpoint);
        let now_ms = millis(now);
        let window = window_bucket(&bucket);
        // Take one unit if the window still has budget. Once the window has reset, the budget is
        // unknown until the platform reports it again: the call goes ahead and is counted as a
        // debt (below zero) that the first report of the new window settles (see `observe`) —
        // up to the window's size where the platform said it (`observe_limit`).
        let taken = sqlx::query(
            "UPDATE rate_limits SET remaining = CASE
                 WHEN reset_at_ms <= $2 THEN (CASE WHEN remaining < 0 THEN remaining ELSE 0 END) - 1
                 ELSE remaining - 1 END
             WHERE bucket = $1 AND blocked_until_ms <= $2
               AND (remaining > 0 OR (reset_at_ms <= $2 AND
                    (CASE WHEN remaining < 0 THEN -remaining ELSE 0 END) <
                    COALESCE((SELECT w.remaining FROM rate_limits w WHERE w.bucket = $3), $4)))",
        )
        .bind(&bucket)
        .bind(now_ms)
        .bind(&window)
        .bind(UNKNOWN_WINDOW)
        .execute(&self.db.any)
        .await?
        .rows_affected();
        if taken == 1 {
            return Ok(Ok(()));
        }
        let row = sqlx::query(
            "SELECT remaining, reset_at_ms, blocked_until_ms,
                    COALESCE((SELECT w.remaining FROM rate_limits w WHERE w.bucket = $2), $3) AS window_size
             FROM rate_limits WHERE bucket = $1",
        )
        .bind(&bucket)
        .bind(&window)
        .bind(UNKNOWN_WINDOW)
        .fetch_optional(&self.db.any)
        .await?;
        Ok(match row {
            None => {
                // Never reported: go ahead, as a debt of one in a window that has passed.
                sqlx::query(
                    "INSERT INTO rate_limits (bucket, remaining, reset_at_ms, blocked_until_ms) VALUES ($1, -1, 0, 0)
                     ON CONFLICT (bucket) DO NOTHING",
                )
                .bind(&bucket)
                .execute(&self.db.any)
                .await?;
                Ok(())
            }
            Some(row) => {
                let remaining: i64 = row.try_get("remaining")?;
                let reset: i64 = row.try_get("reset_at_ms")?;
                let blocked: i64 = row.try_get("blocked_until_ms")?;
                let window_size: i64 = row.try_get("window_size")?;
                if blocked > now_ms {
                    Err(from_millis(blocked))
                } else if remaining <= 0 && reset > now_ms {
                    Err(from_millis(reset))
                } else if reset <= now_ms && -remaining >= window_size {
                    // A whole window's calls are on their way and none has been answered:
                    // the answers will say when the new window resets.
                    Err(now + chrono::TimeDelta::milliseconds(UNANSWERED_WAIT_MS))
                } else {
                    // The row changed (another worker recorded the platform's headers) between
                    // the UPDATE and this SELECT, with budget left: not a refusal.
                    Ok(())
                }
            }
        })
    }
}

/// The store key of a quota shared beyond one account (e.g. a Google project).
fn quota_bucket(scope: &str) -> String {
    format!("quota:{scope}")
}

impl SharedRateLimits {
    async fn try_take_quota(
        &self,
        scope: &str,
        units: u64,
        budget: u64,
        resets_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Result<(), DateTime<Utc>>> {
        let bucket = quota_bucket(scope);
        let now_ms = millis(now);
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        // A day the store has not seen (or a new one) starts with the whole budget.
        sqlx::query(
            "INSERT INTO rate_limits (bucket, remaining, reset_at_ms, blocked_until_ms) VALUES ($1, $2, $3, 0)
             ON CONFLICT (bucket) DO UPDATE SET remaining = excluded.remaining, reset_at_ms = excluded.reset_at_ms, blocked_until_ms = 0
             WHERE rate_limits.reset_at_ms <= $4",
        )
        .bind(&bucket)
        .bind(as_i64(budget))
        .bind(millis(resets_at))
        .bind(now_ms)
        .execute(&self.db.any)
        .await?;
        let taken = sqlx::query(
            "UPDATE rate_limits SET remaining = remaining - $2
             WHERE bucket = $1 AND remaining >= $2 AND reset_at_ms > $3",
        )
        .bind(&bucket)
        .bind(as_i64(units))
        .bind(now_ms)
        .execute(&self.db.any)
        .await?
        .rows_affected();
        if taken == 1 {
            return Ok(Ok(()));
        }
        let reset: Option<i64> =
            sqlx::query_scalar("SELECT reset_at_ms FROM rate_limits WHERE bucket = $1")
                .bind(&bucket)
                .fetch_optional(&self.db.any)
                .await?;
        Ok(Err(reset.map(from_millis).unwrap_or(resets_at)))
    }
}

impl SharedRateLimits {
    /// One call from a documented budget of `limit` calls in any `window`: the budget is `limit`
    /// slot rows, each holding when it is free again; a call takes the slot free the longest
    /// with a compare-and-set, so concurrent workers never share one. A sliding window.
    async fn try_acquire_documented(
        &self,
        endpoint: &str,
        limit: u32,
        window: std::time::Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Result<(), DateTime<Utc>>> {
        let slots: Vec<String> = (0..limit.max(1))
            .map(|i| self.bucket(&format!("{endpoint}#{i}")))
            .collect();
        let placeholders = |first: usize| {
            (first..first + slots.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let values = (1..=slots.len())
            .map(|i| format!("(${i}, 0, 0, 0)"))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "INSERT INTO rate_limits (bucket, remaining, reset_at_ms, blocked_until_ms) VALUES {values}
             ON CONFLICT (bucket) DO NOTHING"
        );
        let take = format!(
            "UPDATE rate_limits SET reset_at_ms = $1
             WHERE reset_at_ms <= $2 AND bucket = (
                 SELECT bucket FROM rate_limits WHERE bucket IN ({}) AND reset_at_ms <= $2
                 ORDER BY reset_at_ms, bucket LIMIT 1)",
            placeholders(3)
        );
        let earliest = format!(
            "SELECT MIN(reset_at_ms) AS free_at FROM rate_limits WHERE bucket IN ({})",
            placeholders(1)
        );

        let mut query = sqlx::query(&insert);
        for slot in &slots {
            query = query.bind(slot);
        }
        query.execute(&self.db.any).await?;
        let now_ms = millis(now);
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        // Another worker may take the chosen slot first; then try the next one.
        for _ in 0..=slots.len() {
            let mut query = sqlx::query(&take)
                .bind(now_ms.saturating_add(window_ms))
                .bind(now_ms);
            for slot in &slots {
                query = query.bind(slot);
            }
            if query.execute(&self.db.any).await?.rows_affected() == 1 {
                return Ok(Ok(()));
            }
            let mut query = sqlx::query(&earliest);
            for slot in &slots {
                query = query.bind(slot);
            }
            let free_at: Option<i64> = query.fetch_one(&self.db.any).await?.try_get("free_at")?;
            if let Some(free_at) = free_at.filter(|at| *at > now_ms) {
                return Ok(Err(from_millis(free_at)));
            }
        }
        anyhow::bail!("the {endpoint} budget kept changing under concurrent workers")
    }
}

impl SharedRateLimits {
    /// Takes one publish from `scope`'s rolling quota if the platform's count plus Herald's
    /// reservations it may not include leave room. One transaction: the quota's row is updated
    /// first, which serialises every reserver of that quota on both engines (a row lock on
    /// Postgres, the write lock on SQLite) until the reservation is inserted and committed.
    async fn try_reserve_publish(
        &self,
        scope: &str,
        reading: QuotaReading,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Result<PublishReservation, QuotaFull>> {
        let quota = self.bucket(scope);
        let now_ms = millis(now);
        let mut tx = self.db.any.begin().await?;
        sqlx::query(
            "INSERT INTO publish_quotas (quota, reservations) VALUES ($1, 1)
             ON CONFLICT (quota) DO UPDATE SET reservations = publish_quotas.reservations + 1",
        )
        .bind(&quota)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM publish_reservations WHERE quota = $1 AND expires_at_ms <= $2")
            .bind(&quota)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        // Reservations the reading may not include: still in flight or unknown, or published
        // after the platform was asked.
        let row = sqlx::query(
            "SELECT COUNT(*) AS counted, MIN(expires_at_ms) AS first_free FROM publish_reservations
             WHERE quota = $1 AND (published_at_ms IS NULL OR published_at_ms >= $2)",
        )
        .bind(&quota)
        .bind(millis(reading.read_at))
        .fetch_one(&mut *tx)
        .await?;
        let in_flight = u64::try_from(row.try_get::<i64, _>("counted")?).unwrap_or(0);
        let first_free: Option<i64> = row.try_get("first_free")?;
        let used = reading.used.saturating_add(in_flight);
        if used >= reading.total {
            tx.commit().await?;
            return Ok(Err(QuotaFull {
                in_flight,
                frees_at: first_free.map(from_millis),
            }));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let window_ms = i64::try_from(reading.window.as_millis()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO publish_reservations (id, quota, reserved_at_ms, expires_at_ms, published_at_ms)
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(&id)
        .bind(&quota)
        .bind(now_ms)
        .bind(
            now_ms
                .saturating_add(window_ms)
                .saturating_add(PUBLISH_MARGIN_MS),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(PublishReservation {
            id,
            left: reading.total - used - 1,
        }))
    }

    async fn try_settle_publish(
        &self,
        reservation: &PublishReservation,
        outcome: PublishSettled,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        match outcome {
            PublishSettled::Published => {
                sqlx::query("UPDATE publish_reservations SET published_at_ms = $2 WHERE id = $1")
                    .bind(&reservation.id)
                    .bind(millis(now))
                    .execute(&self.db.any)
                    .await?;
            }
            PublishSettled::NotPublished => {
                sqlx::query("DELETE FROM publish_reservations WHERE id = $1")
                    .bind(&reservation.id)
                    .execute(&self.db.any)
                    .await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl RateLimitGate for SharedRateLimits {
    async fn take_quota(
        &self,
        scope: &str,
        units: u64,
        budget: u64,
        resets_at: DateTime<Utc>,
    ) -> Result<(), DateTime<Utc>> {
        match self
            .try_take_quota(scope, units, budget, resets_at, Utc::now())
            .await
        {
            Ok(decision) => decision,
            Err(error) => {
                // As with `acquire`: the platform stays the final judge.
                tracing::warn!(error = %error, scope, "quota state unavailable; calling anyway");
                Ok(())
            }
        }
    }

    async fn quota_exhausted(&self, scope: &str, until: DateTime<Utc>) {
        let result = sqlx::query(
            "INSERT INTO rate_limits (bucket, remaining, reset_at_ms, blocked_until_ms) VALUES ($1, 0, $2, 0)
             ON CONFLICT (bucket) DO UPDATE SET remaining = 0, reset_at_ms = excluded.reset_at_ms",
        )
        .bind(quota_bucket(scope))
        .bind(millis(until))
        .execute(&self.db.any)
        .await;
        if let Err(error) = result {
            tracing::warn!(error = %error, scope, "could not record the exhausted quota");
        }
    }

    async fn acquire(&self, endpoint: &str) -> Result<(), DateTime<Utc>> {
        match self.try_acquire(endpoint, Utc::now()).await {
            Ok(decision) => decision,
            Err(error) => {
                // The platform is the final judge; a database hiccup must not stop publishing.
                tracing::warn!(error = %error, endpoint, "rate-limit state unavailable; calling anyway");
                Ok(())
            }
        }
    }

    async fn observe(
        &self,
        endpoint: &str,
        remaining: Option<u64>,
        reset_at: Option<DateTime<Utc>>,
    ) {
        let (Some(remaining), Some(reset_at)) = (remaining, reset_at) else {
            return;
        };
        // Within one window the lower count wins: workers report out of order, and the store
        // has already counted calls still on their way (the platform counts them on arrival).
        // The first report of a new window takes off the other calls made since the old one
        // reset (the debt below zero), which may still be on their way.
        let result = sqlx::query(
            "INSERT INTO rate_limits (bucket, remaining, reset_at_ms, blocked_until_ms) VALUES ($1, $2, $3, 0)
             ON CONFLICT (bucket) DO UPDATE SET
                 remaining = CASE
                     WHEN rate_limits.reset_at_ms > $4
                          AND ABS(excluded.reset_at_ms - rate_limits.reset_at_ms) <= $5
                     THEN (CASE WHEN rate_limits.remaining < excluded.remaining
                                THEN rate_limits.remaining ELSE excluded.remaining END)
                     WHEN rate_limits.remaining < -1
                     THEN excluded.remaining + rate_limits.remaining + 1
                     ELSE excluded.remaining END,
                 reset_at_ms = excluded.reset_at_ms",
        )
        .bind(self.bucket(endpoint))
        .bind(i64::try_from(remaining).unwrap_or(i64::MAX))
        .bind(millis(reset_at))
        .bind(millis(Utc::now()))
        .bind(SAME_WINDOW_MS)
        .execute(&self.db.any)
        .await;
        if let Err(error) = result {
            tracing::warn!(error = %error, endpoint, "could not record rate-limit headers");
        }
    }

    async fn reserve_publish(
        &self,
        scope: &str,
        reading: QuotaReading,
    ) -> Result<PublishReservation, QuotaFull> {
        match self.try_reserve_publish(scope, reading, Utc::now()).await {
            Ok(decision) => decision,
            Err(error) => {
                // As with `acquire`: the platform stays the final judge (it refuses past its
                // limit, and the adapter waits for a free slot then).
                tracing::warn!(error = %error, scope, "publishing quota state unavailable; judging by the live reading");
                reading.judge_alone()
            }
        }
    }

    async fn settle_publish(
        &self,
        scope: &str,
        reservation: &PublishReservation,
        outcome: PublishSettled,
    ) {
        if reservation.id.is_empty() {
            return;
        }
        if let Err(error) = self
            .try_settle_publish(reservation, outcome, Utc::now())
            .await
        {
            // A reservation left in flight keeps counting until it expires: strict, not lost.
            tracing::warn!(error = %error, scope, ?outcome, "could not settle the publish reservation");
        }
    }

    async fn observe_limit(&self, endpoint: &str, limit: u64) {
        let result = sqlx::query(
            "INSERT INTO rate_limits (bucket, remaining, reset_at_ms, blocked_until_ms) VALUES ($1, $2, 0, 0)
             ON CONFLICT (bucket) DO UPDATE SET remaining = excluded.remaining",
        )
        .bind(window_bucket(&self.bucket(endpoint)))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.db.any)
        .await;
        if let Err(error) = result {
            tracing::warn!(error = %error, endpoint, "could not record the window's size");
        }
    }

    async fn acquire_documented(
        &self,
        endpoint: &str,
        limit: u32,
        window: std::time::Duration,
    ) -> Result<(), DateTime<Utc>> {
        // What the platform reported (a 429) closes the endpoint whatever the budget says.
        self.acquire(endpoint).await?;
        match self
            .try_acquire_documented(endpoint, limit, window, Utc::now())
            .await
        {
            Ok(decision) => decision,
            Err(error) => {
                tracing::warn!(error = %error, endpoint, "rate-limit state unavailable; calling anyway");
                Ok(())
            }
        }
    }
}
