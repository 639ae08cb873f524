//! Rate limits shared by every worker process (ARCHITECTURE invariant 6): the budget the
//! platform last reported, per platform, account and endpoint, lives in the database.
use chrono::{DateTime, Utc};
use herald_domain::Platform;
use sqlx::Row;

use crate::db::{from_millis, millis, Db};
use crate::platforms::RateLimitGate;

/// The gate for one account on one platform.
#[derive(Debug, Clone)]
pub struct SharedRateLimits {
    db: Db,
    prefix: String,
}

impl SharedRateLimits {
    pub fn new(db: Db, platform: Platform, account_id: &str) -> Self {
        Self {
            db,
            prefix: format!("{platform}:{account_id}:"),
        }
    }

    fn bucket(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.prefix)
    }

    async fn try_acquire(
        &self,
        endpoint: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Result<(), DateTime<Utc>>> {
        let bucket = self.bucket(endpoint);
        let now_ms = millis(now);
        // Take one unit if the window still has budget, or if it has reset (budget unknown until
        // the platform reports it again).
        let taken = sqlx::query(
            "UPDATE rate_limits SET remaining = CASE WHEN reset_at_ms <= $2 THEN remaining ELSE remaining - 1 END
             WHERE bucket = $1 AND blocked_until_ms <= $2 AND (remaining > 0 OR reset_at_ms <= $2)",
        )
        .bind(&bucket)
        .bind(now_ms)
        .execute(&self.db.any)
        .await?
        .rows_affected();
        if taken == 1 {
            return Ok(Ok(()));
        }
        let row = sqlx::query(
            "SELECT remaining, reset_at_ms, blocked_until_ms FROM rate_limits WHERE bucket = $1",
        )
        .bind(&bucket)
        .fetch_optional(&self.db.any)
        .await?;
        Ok(match row {
            None => Ok(()),
            Some(row) => {
                let remaining: i64 = row.try_get("remaining")?;
                let reset: i64 = row.try_get("reset_at_ms")?;
                let blocked: i64 = row.try_get("blocked_until_ms")?;
                if blocked > now_ms {
                    Err(from_millis(blocked))
                } else if remaining <= 0 && reset > now_ms {
                    Err(from_millis(reset))
                } else {
                    // The row appeared (another worker recorded the platform's headers) between
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
        let result = sqlx::query(
            "INSERT INTO rate_limits (bucket, remaining, reset_at_ms, blocked_until_ms) VALUES ($1, $2, $3, 0)
             ON CONFLICT (bucket) DO UPDATE SET remaining = excluded.remaining, reset_at_ms = excluded.reset_at_ms",
        )
        .bind(self.bucket(endpoint))
        .bind(i64::try_from(remaining).unwrap_or(i64::MAX))
        .bind(millis(reset_at))
        .execute(&self.db.any)
        .await;
        if let Err(error) = result {
            tracing::warn!(error = %error, endpoint, "could not record rate-limit headers");
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
