//! Each user's webhook subscriptions, and what their owner may see and do with the deliveries:
//! list them with every attempt, send one again, or send again everything since a time. Every
//! query names the user, so another user's subscription is simply not found.
use std::collections::{BTreeSet, HashMap};

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use herald_domain::webhook::WebhookEventType;
use herald_domain::UserId;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::signing;
use crate::db::{from_millis, millis, Db};
use crate::secret::Secret;
use crate::vault::Sealer;

/// Whether a subscription's deliveries are being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    /// Its deliveries kept failing; events are still recorded, and sent once it is enabled.
    Disabled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    fn parse(raw: &str) -> anyhow::Result<Self> {
        match raw {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            other => Err(anyhow!("unknown subscription status {other:?}")),
        }
    }
}

/// A subscription as its owner sees it. The secret is not part of it: it is shown once, when
/// the subscription is created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription {
    pub subscription_id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub status: SubscriptionStatus,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Attempts that failed since the last one that succeeded.
    pub consecutive_failures: i64,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub(crate) event_type_set: BTreeSet<WebhookEventType>,
}

impl Subscription {
    /// Whether the subscription wants events of `event_type`.
    pub fn wants(&self, event_type: WebhookEventType) -> bool {
        self.event_type_set.contains(&event_type)
    }

    fn from_row(row: &AnyRow) -> anyhow::Result<Self> {
        let names: String = row.try_get("event_types")?;
        let event_type_set = names
            .split(',')
            .filter(|name| !name.is_empty())
            .map(str::parse)
            .collect::<Result<BTreeSet<WebhookEventType>, _>>()?;
        Ok(Self {
            subscription_id: row.try_get("subscription_id")?,
            url: row.try_get("url")?,
            event_types: event_type_set
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            status: SubscriptionStatus::parse(&row.try_get::<String, _>("status")?)?,
            disabled_reason: row.try_get("disabled_reason")?,
            disabled_at: row
                .try_get::<Option<i64>, _>("disabled_at_ms")?
                .map(from_millis),
            consecutive_failures: row.try_get("consecutive_failures")?,
            created_at: from_millis(row.try_get("created_at_ms")?),
            event_type_set,
        })
    }
}

const SUBSCRIPTION_COLUMNS: &str = "subscription_id, url, event_types, status, disabled_reason, \
     disabled_at_ms, consecutive_failures, created_at_ms";

/// A subscription just made, with its secret: the only time Herald shows it.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub subscription: Subscription,
    pub secret: Secret,
}

/// One attempt at sending a delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptView {
    pub attempt: i64,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status; absent when no answer came (refused, timed out, ...).
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// A delivery as its owner sees it, with every attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryView {
    /// The `webhook-id` the receiver sees.
    pub delivery_id: String,
    pub event_type: String,
    /// pending, delivered, or failed (given up after the retry window).
    pub status: String,
    pub occurred_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    /// The body every attempt sends.
    pub payload: serde_json::Value,
    pub attempts: Vec<AttemptView>,
}

const DELIVERY_COLUMNS: &str = "delivery_id, event_type, status, occurred_at_ms, created_at_ms, \
     next_attempt_at_ms, delivered_at_ms, last_status_code, last_error, body";

impl DeliveryView {
    fn from_row(row: &AnyRow) -> anyhow::Result<Self> {
        let status: String = row.try_get("status")?;
        let body: String = row.try_get("body")?;
        Ok(Self {
            delivery_id: row.try_get("delivery_id")?,
            event_type: row.try_get("event_type")?,
            next_attempt_at: (status == "pending")
                .then(|| row.try_get("next_attempt_at_ms").map(from_millis))
                .transpose()?,
            status,
            occurred_at: from_millis(row.try_get("occurred_at_ms")?),
            created_at: from_millis(row.try_get("created_at_ms")?),
            delivered_at: row
                .try_get::<Option<i64>, _>("delivered_at_ms")?
                .map(from_millis),
            last_status_code: row.try_get("last_status_code")?,
            last_error: row.try_get("last_error")?,
            payload: serde_json::from_str(&body).context("a stored webhook body")?,
            attempts: Vec::new(),
        })
    }
}

/// Which deliveries a listing shows.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only deliveries with this status (pending, delivered, failed).
    pub status: Option<String>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// The subscriptions store.
#[derive(Debug, Clone)]
pub struct WebhookSubscriptions {
    db: Db,
    sealer: Sealer,
}

impl WebhookSubscriptions {
    /// `sealer` is the vault's: the secrets are sealed with the vault key.
    pub fn new(db: Db, sealer: Sealer) -> Self {
        Self { db, sealer }
    }

    /// The associated data binding a sealed secret to its subscription, so a ciphertext
    /// copied onto another row does not open.
    fn aad(subscription_id: &str) -> Vec<u8> {
        format!("herald-webhook-secret:v1:{subscription_id}").into_bytes()
    }

    /// Records a subscription with a new secret. `url` has passed the URL policy and
    /// `event_types` is not empty.
    pub async fn create(
        &self,
        user: &UserId,
        url: &str,
        event_types: &BTreeSet<WebhookEventType>,
    ) -> anyhow::Result<NewSubscription> {
        let subscription_id = uuid::Uuid::new_v4().to_string();
        let secret = signing::generate_secret();
        let (nonce, sealed) = self
            .sealer
            .seal(&Self::aad(&subscription_id), secret.expose().as_bytes());
        let names = event_types
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let row = sqlx::query(&format!(
            "INSERT INTO webhook_subscriptions (subscription_id, user_id, url, event_types, nonce, \
             sealed_secret, key_id, status, consecutive_failures, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', 0, $8) RETURNING {SUBSCRIPTION_COLUMNS}"
        ))
        .bind(&subscription_id)
        .bind(user.as_str())
        .bind(url)
        .bind(names)
        .bind(nonce)
        .bind(sealed)
        .bind(self.sealer.key_id().to_string())
        .bind(millis(Utc::now()))
        .fetch_one(&self.db.any)
        .await
        .context("recording the webhook subscription")?;
        Ok(NewSubscription {
            subscription: Subscription::from_row(&row)?,
            secret,
        })
    }

    /// How many subscriptions `user` has (for the per-user cap).
    pub async fn count(&self, user: &UserId) -> anyhow::Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM webhook_subscriptions WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_one(&self.db.any)
            .await
            .context("counting webhook subscriptions")
    }

    /// `user`'s subscriptions, oldest first.
    pub async fn list(&self, user: &UserId) -> anyhow::Result<Vec<Subscription>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE user_id = $1 \
             ORDER BY created_at_ms, subscription_id"
        ))
        .bind(user.as_str())
        .fetch_all(&self.db.any)
        .await
        .context("listing webhook subscriptions")?;
        rows.iter().map(Subscription::from_row).collect()
    }

    /// One of `user`'s subscriptions.
    pub async fn get(&self, user: &UserId, id: &str) -> anyhow::Result<Option<Subscription>> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions \
             WHERE user_id = $1 AND subscription_id = $2"
        ))
        .bind(user.as_str())
        .bind(id)
        .fetch_optional(&self.db.any)
        .await
        .context("reading a webhook subscription")?;
        row.as_ref().map(Subscription::from_row).transpose()
    }

    /// Deletes one of `user`'s subscriptions with its deliveries and their attempts; whether
    /// it existed.
    pub async fn delete(&self, user: &UserId, id: &str) -> anyhow::Result<bool> {
        let mut tx = self.db.any.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM webhook_subscriptions WHERE user_id = $1 AND subscription_id = $2",
        )
        .bind(user.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("deleting the webhook subscription")?
        .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT delivery_id FROM webhook_deliveries WHERE subscription_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("deleting the subscription's attempts")?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE subscription_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("deleting the subscription's deliveries")?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sends a disabled subscription's deliveries again, from the oldest waiting.
    pub async fn enable(&self, user: &UserId, id: &str) -> anyhow::Result<Option<Subscription>> {
        sqlx::query(
            "UPDATE webhook_subscriptions SET status = 'active', disabled_reason = NULL, \
             disabled_at_ms = NULL, consecutive_failures = 0 \
             WHERE user_id = $1 AND subscription_id = $2",
        )
        .bind(user.as_str())
        .bind(id)
        .execute(&self.db.any)
        .await
        .context("enabling the webhook subscription")?;
        self.get(user, id).await
    }

    /// Every subscription of `user`, as the log consumer matches events against them.
    pub(crate) async fn of_user(&self, user: &str) -> anyhow::Result<Vec<Subscription>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE user_id = $1"
        ))
        .bind(user)
        .fetch_all(&self.db.any)
        .await
        .context("reading the user's webhook subscriptions")?;
        rows.iter().map(Subscription::from_row).collect()
    }

    /// A subscription's secret, opened from its sealed form.
    pub(crate) fn open_secret(
        &self,
        subscription_id: &str,
        nonce: &[u8],
        sealed: &[u8],
    ) -> anyhow::Result<Secret> {
        let plain = self
            .sealer
            .open(&Self::aad(subscription_id), nonce, sealed)?;
        Ok(Secret::new(
            String::from_utf8(plain).map_err(|_| anyhow!("a webhook secret is not text"))?,
        ))
    }

    /// The deliveries of one of `user`'s subscriptions, newest first, each with its attempts;
    /// `None` if the subscription is not theirs.
    pub async fn deliveries(
        &self,
        user: &UserId,
        subscription_id: &str,
        filter: &DeliveryFilter,
    ) -> anyhow::Result<Option<Vec<DeliveryView>>> {
        if self.get(user, subscription_id).await?.is_none() {
            return Ok(None);
        }
        let status_clause = if filter.status.is_some() {
            "AND status = $3"
        } else {
            ""
        };
        let page = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE subscription_id = $1 {status_clause} \
             ORDER BY created_at_ms DESC, stream_seq DESC, delivery_id LIMIT $2"
        );
        let mut query = sqlx::query(&page).bind(subscription_id).bind(filter.limit);
        if let Some(status) = &filter.status {
            query = query.bind(status.as_str());
        }
        let rows = query
            .fetch_all(&self.db.any)
            .await
            .context("listing webhook deliveries")?;
        let mut deliveries = rows
            .iter()
            .map(DeliveryView::from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut attempts = self.attempts_of(&deliveries).await?;
        for delivery in &mut deliveries {
            delivery.attempts = attempts.remove(&delivery.delivery_id).unwrap_or_default();
        }
        Ok(Some(deliveries))
    }

    /// The attempts of `deliveries`, in order, by delivery id: one query for the whole page.
    async fn attempts_of(
        &self,
        deliveries: &[DeliveryView],
    ) -> anyhow::Result<HashMap<String, Vec<AttemptView>>> {
        if deliveries.is_empty() {
            return Ok(HashMap::new());
        }
        let placeholders = (1..=deliveries.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT delivery_id, attempt_number, attempted_at_ms, status_code, latency_ms, error, \
             next_retry_at_ms FROM webhook_attempts WHERE delivery_id IN ({placeholders}) \
             ORDER BY delivery_id, attempt_number"
        );
        let mut query = sqlx::query(&sql);
        for delivery in deliveries {
            query = query.bind(delivery.delivery_id.as_str());
        }
        let rows = query
            .fetch_all(&self.db.any)
            .await
            .context("reading delivery attempts")?;
        let mut attempts: HashMap<String, Vec<AttemptView>> = HashMap::new();
        for row in &rows {
            attempts
                .entry(row.try_get("delivery_id")?)
                .or_default()
                .push(AttemptView {
                    attempt: row.try_get("attempt_number")?,
                    attempted_at: from_millis(row.try_get("attempted_at_ms")?),
                    status_code: row.try_get("status_code")?,
                    latency_ms: row.try_get("latency_ms")?,
                    error: row.try_get("error")?,
                    next_retry_at: row
                        .try_get::<Option<i64>, _>("next_retry_at_ms")?
                        .map(from_millis),
                });
        }
        Ok(attempts)
    }

    /// Forgets deliveries recorded before `before` that are no longer waiting (delivered or
    /// given up), with their attempts; how many. Waiting ones are kept whatever their age.
    pub async fn prune(&self, before: DateTime<Utc>) -> anyhow::Result<u64> {
        let mut tx = self.db.any.begin().await?;
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT delivery_id FROM webhook_deliveries \
              WHERE status <> 'pending' AND created_at_ms < $1)",
        )
        .bind(millis(before))
        .execute(&mut *tx)
        .await
        .context("forgetting old delivery attempts")?;
        let pruned = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at_ms < $1",
        )
        .bind(millis(before))
        .execute(&mut *tx)
        .await
        .context("forgetting old deliveries")?
        .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    /// Sends one delivery again, now, with the same `webhook-id` and body, and a fresh retry
    /// window; `false` if no such delivery of `user`'s subscription exists.
    pub async fn redeliver(
        &self,
        user: &UserId,
        subscription_id: &str,
        delivery_id: &str,
    ) -> anyhow::Result<bool> {
        let requeued = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at_ms = $1, \
             first_attempt_at_ms = NULL \
             WHERE delivery_id = $2 AND subscription_id = $3 AND user_id = $4",
        )
        .bind(millis(Utc::now()))
        .bind(delivery_id)
        .bind(subscription_id)
        .bind(user.as_str())
        .execute(&self.db.any)
        .await
        .context("queueing the delivery again")?
        .rows_affected();
        Ok(requeued > 0)
    }

    /// Sends again every delivery of the subscription whose event happened at or after `since`
    /// and that is not waiting already (what a receiver that lost data needs back); how many.
    /// `None` if the subscription is not `user`'s.
    pub async fn replay(
        &self,
        user: &UserId,
        subscription_id: &str,
        since: DateTime<Utc>,
    ) -> anyhow::Result<Option<u64>> {
        if self.get(user, subscription_id).await?.is_none() {
            return Ok(None);
        }
        let requeued = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at_ms = $1, \
             first_attempt_at_ms = NULL \
             WHERE subscription_id = $2 AND occurred_at_ms >= $3 AND status <> 'pending'",
        )
        .bind(millis(Utc::now()))
        .bind(subscription_id)
        .bind(millis(since))
        .execute(&self.db.any)
        .await
        .context("queueing deliveries again")?
        .rows_affected();
        Ok(Some(requeued))
    }
}
