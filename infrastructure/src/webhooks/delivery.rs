//! The delivery worker: sends due `webhook_deliveries` to their receivers, signed.
//!
//! - **Order per job.** Of a subscription's pending deliveries of one stream (a job, a
//!   connection), only the lowest sequence is ever claimed, so the next waits until it is
//!   delivered or given up.
//! - **Isolation.** Each subscription has at most [`PER_SUBSCRIPTION`] sends in flight, so a
//!   receiver that hangs until the timeout holds only its own deliveries back.
//! - **Any number of workers.** A delivery is claimed with a lease (a fresh token and a time);
//!   an attempt is recorded only under the token that claimed it. A worker that dies loses its
//!   leases when they run out, and the delivery is sent again: at least once, same id.
//! - **Retries.** A failed attempt is retried on the [`DeliverySchedule`]; when the window
//!   ends the delivery is given up and its subscription disabled with the reason.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald_domain::webhook::DeliverySchedule;
use sqlx::Row;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{signing, WebhookSubscriptions};
use crate::db::{from_millis, millis, Db};
use crate::media_source::{guarded_client, MediaUrlPolicy, MediaUrlRefused};

/// Sends in flight at once for one subscription.
pub const PER_SUBSCRIPTION: usize = 4;
/// Bytes of a receiver's answer kept (in the attempt's error); the rest is not read.
const ANSWER_KEPT: usize = 512;
/// How often old deliveries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How long past the request timeout a claim lasts, for recording the attempt. Past it, another
/// worker may send the delivery again (same id): a duplicate, never a loss.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// How the worker sends.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub schedule: DeliverySchedule,
    /// The whole request, from connecting to the end of the answer.
    pub timeout: Duration,
    /// Sends in flight at once in this process.
    pub concurrency: usize,
    /// How often due deliveries are looked for when nothing wakes the worker.
    pub poll: Duration,
    /// How long delivered and given-up deliveries are kept for their owner to see.
    pub retention: chrono::Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            schedule: DeliverySchedule::default(),
            timeout: Duration::from_secs(10),
            concurrency: 64,
            poll: Duration::from_secs(1),
            retention: chrono::Duration::days(30),
        }
    }
}

/// What one attempt came to.
#[derive(Debug)]
struct AttemptOutcome {
    status_code: Option<u16>,
    latency: Duration,
    /// Why it failed; `None` when the receiver answered 2xx.
    error: Option<String>,
    /// The receiver's `Retry-After`.
    retry_after: Option<DateTime<Utc>>,
}

/// A claimed delivery and what sending it needs.
struct Claimed {
    delivery_id: String,
    subscription_id: String,
    lease_token: String,
}

/// Sends deliveries until shutdown.
#[derive(Clone)]
pub struct DeliveryWorker {
    db: Db,
    subscriptions: WebhookSubscriptions,
    policy: Arc<MediaUrlPolicy>,
    client: reqwest::Client,
    settings: DeliverySettings,
    wake: Arc<Notify>,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl DeliveryWorker {
    /// `wake` is notified by the log consumer when it records deliveries.
    pub fn new(
        db: Db,
        subscriptions: WebhookSubscriptions,
        policy: MediaUrlPolicy,
        settings: DeliverySettings,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let client = guarded_client(policy.clone())
            // A redirect would send the signed body somewhere the owner did not name.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("Herald-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the webhook HTTP client")?;
        Ok(Self {
            db,
            subscriptions,
            policy,
            client,
            settings,
            wake,
            in_flight: Arc::default(),
        })
    }

    /// Claims and sends due deliveries until `shutdown`, then waits for the sends in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        // Counts the sends being made by this process as delivery outcomes, from zero.
        for outcome in ["delivered", "failed", "gave_up"] {
            metrics::counter!("herald_outbound_webhooks_total", "outcome" => outcome).increment(0);
        }
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut sends = JoinSet::new();
        let mut pruned_at: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(Instant::now());
                let before = Utc::now() - self.settings.retention;
                if let Err(error) = self.subscriptions.prune(before).await {
                    tracing::warn!(error = %format!("{error:#}"), "could not prune old webhook deliveries");
                }
            }
            if let Err(error) = self.claim_and_send(&permits, &mut sends).await {
                tracing::warn!(error = %format!("{error:#}"), "could not claim webhook deliveries");
            }
            while sends.try_join_next().is_some() {}
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
        while sends.join_next().await.is_some() {}
    }

    /// One round: claims what is due and may be sent now, and starts sending it.
    async fn claim_and_send(
        &self,
        permits: &Arc<Semaphore>,
        sends: &mut JoinSet<()>,
    ) -> anyhow::Result<()> {
        let now = millis(Utc::now());
        // Subscriptions with no free place are left out of the query, so a backlog of one
        // (thousands due at once after it is enabled) cannot fill every round's candidates.
        let full = self.full_subscriptions();
        let leave_out = if full.is_empty() {
            String::new()
        } else {
            let placeholders = (3..3 + full.len())
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("AND d.subscription_id NOT IN ({placeholders})")
        };
        // Only the head of each subscription's stream: nothing earlier of it is pending.
        let sql = format!(
            "SELECT d.delivery_id, d.subscription_id FROM webhook_deliveries d \
             JOIN webhook_subscriptions s ON s.subscription_id = d.subscription_id \
             WHERE d.status = 'pending' AND d.next_attempt_at_ms <= $1 \
               AND d.lease_until_ms < $1 AND s.status = 'active' {leave_out} \
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
                   WHERE e.subscription_id = d.subscription_id AND e.stream_id = d.stream_id \
                     AND e.status = 'pending' AND e.stream_seq < d.stream_seq) \
             ORDER BY d.next_attempt_at_ms LIMIT $2"
        );
        let mut query = sqlx::query(&sql)
            .bind(now)
            .bind(i64::try_from(self.settings.concurrency.max(1) * 2).unwrap_or(128));
        for subscription_id in &full {
            query = query.bind(subscription_id.as_str());
        }
        let candidates = query
            .fetch_all(&self.db.any)
            .await
            .context("finding due deliveries")?;
        for row in candidates {
            let delivery_id: String = row.try_get("delivery_id")?;
            let subscription_id: String = row.try_get("subscription_id")?;
            if !self.reserve(&subscription_id) {
                continue;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.release(&subscription_id);
                break;
            };
            let lease_token = uuid::Uuid::new_v4().to_string();
            let lease_until = Utc::now() + self.settings.timeout + LEASE_MARGIN;
            let leased = sqlx::query(
                "UPDATE webhook_deliveries SET lease_token = $1, lease_until_ms = $2 \
                 WHERE delivery_id = $3 AND status = 'pending' AND lease_until_ms < $4",
            )
            .bind(&lease_token)
            .bind(millis(lease_until))
            .bind(&delivery_id)
            .bind(now)
            .execute(&self.db.any)
            .await
            .context("claiming a delivery")?
            .rows_affected();
            if leased == 0 {
                // Another worker claimed it first.
                self.release(&subscription_id);
                continue;
            }
            let worker = self.clone();
            let claimed = Claimed {
                delivery_id,
                subscription_id,
                lease_token,
            };
            sends.spawn(async move {
                let _permit = permit;
                if let Err(error) = worker.send(&claimed).await {
                    // The lease runs out and the delivery is claimed again.
                    tracing::warn!(
                        delivery_id = %claimed.delivery_id,
                        error = %format!("{error:#}"),
                        "could not send or record a webhook delivery"
                    );
                }
                worker.release(&claimed.subscription_id);
                worker.wake.notify_one();
            });
        }
        Ok(())
    }

    /// The subscriptions whose in-flight places are all taken in this process.
    fn full_subscriptions(&self) -> Vec<String> {
        let in_flight = self.in_flight.lock().expect("in-flight lock");
        in_flight
            .iter()
            .filter(|(_, count)| **count >= PER_SUBSCRIPTION)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Takes one of the subscription's in-flight places, if one is free.
    fn reserve(&self, subscription_id: &str) -> bool {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        let count = in_flight.entry(subscription_id.to_string()).or_default();
        if *count >= PER_SUBSCRIPTION {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, subscription_id: &str) {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        if let Some(count) = in_flight.get_mut(subscription_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(subscription_id);
            }
        }
    }

    /// Makes one attempt at a claimed delivery and records it.
    async fn send(&self, claimed: &Claimed) -> anyhow::Result<()> {
        let row = sqlx::query(
            "SELECT d.body, d.attempts, d.first_attempt_at_ms, s.url, s.nonce, s.sealed_secret \
             FROM webhook_deliveries d \
             JOIN webhook_subscriptions s ON s.subscription_id = d.subscription_id \
             WHERE d.delivery_id = $1 AND d.lease_token = $2",
        )
        .bind(&claimed.delivery_id)
        .bind(&claimed.lease_token)
        .fetch_optional(&self.db.any)
        .await
        .context("reading the claimed delivery")?;
        // Deleted with its subscription meanwhile, or claimed by another after our lease ran out.
        let Some(row) = row else { return Ok(()) };
        let body: String = row.try_get("body")?;
        let url: String = row.try_get("url")?;
        let secret = self.subscriptions.open_secret(
            &claimed.subscription_id,
            &row.try_get::<Vec<u8>, _>("nonce")?,
            &row.try_get::<Vec<u8>, _>("sealed_secret")?,
        )?;
        let attempt_number = row.try_get::<i64, _>("attempts")? + 1;
        let first_attempt_at = row
            .try_get::<Option<i64>, _>("first_attempt_at_ms")?
            .map(from_millis);
        let started_at = Utc::now();
        let outcome = self
            .attempt(&url, &claimed.delivery_id, &secret, &body)
            .await?;
        self.record(
            claimed,
            attempt_number,
            started_at,
            first_attempt_at.unwrap_or(started_at),
            outcome,
        )
        .await
    }

    /// One signed POST of `body` to `url`, under the URL policy, answers read up to a bound.
    async fn attempt(
        &self,
        url: &str,
        webhook_id: &str,
        secret: &crate::secret::Secret,
        body: &str,
    ) -> anyhow::Result<AttemptOutcome> {
        let started = Instant::now();
        let refused = |error: String| AttemptOutcome {
            status_code: None,
            latency: started.elapsed(),
            error: Some(error),
            retry_after: None,
        };
        // Checked again at each attempt: the name may resolve elsewhere since subscribing.
        if let Err(refusal) = self.policy.check(url).await {
            return Ok(refused(format!(
                "not sent: {}",
                super::url_refusal(&refusal)
            )));
        }
        let timestamp = Utc::now().timestamp();
        let signature = signing::sign(secret, webhook_id, timestamp, body)?;
        let sent = self
            .client
            .post(url)
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return Ok(refused(transport_error(&error, self.settings.timeout))),
        };
        let status = response.status();
        let retry_after = crate::oauth::retry_after(response.headers(), Utc::now());
        // The answer is read only as far as it is kept, so a receiver cannot make Herald read
        // without end; the client's timeout bounds how long.
        let mut answer = Vec::new();
        while answer.len() < ANSWER_KEPT {
            match response.chunk().await {
                Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        answer.truncate(ANSWER_KEPT);
        let error = (!status.is_success()).then(|| {
            let said = String::from_utf8_lossy(&answer);
            let said = said.trim();
            let redirect = if status.is_redirection() {
                " (redirects are not followed: subscribe the final URL)"
            } else {
                ""
            };
            if said.is_empty() {
                format!("HTTP {status}{redirect}")
            } else {
                format!("HTTP {status}{redirect}: {said}")
            }
        });
        Ok(AttemptOutcome {
            status_code: Some(status.as_u16()),
            latency: started.elapsed(),
            error,
            retry_after,
        })
    }

    /// Records an attempt under the claim's lease: the attempt row, the delivery's new state,
    /// and the subscription's run of failures (disabling it when a delivery is given up).
    async fn record(
        &self,
        claimed: &Claimed,
        attempt_number: i64,
        attempted_at: DateTime<Utc>,
        first_attempt_at: DateTime<Utc>,
        outcome: AttemptOutcome,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let failed_attempts = u32::try_from(attempt_number).unwrap_or(u32::MAX);
        let next_retry = outcome.error.as_ref().and_then(|_| {
            self.settings.schedule.next_attempt(
                failed_attempts,
                first_attempt_at,
                now,
                outcome.retry_after,
                rand::random::<f64>(),
            )
        });
        let status = match (&outcome.error, next_retry) {
            (None, _) => "delivered",
            (Some(_), Some(_)) => "pending",
            (Some(_), None) => "failed",
        };
        let status_code = outcome.status_code.map(i64::from);
        let latency_ms = i64::try_from(outcome.latency.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.db.any.begin().await?;
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = $2, \
             first_attempt_at_ms = $3, next_attempt_at_ms = COALESCE($4, next_attempt_at_ms), \
             delivered_at_ms = $5, last_status_code = $6, last_error = $7, \
             lease_token = NULL, lease_until_ms = 0 \
             WHERE delivery_id = $8 AND lease_token = $9",
        )
        .bind(status)
        .bind(attempt_number)
        .bind(millis(first_attempt_at))
        .bind(next_retry.map(millis))
        .bind((status == "delivered").then(|| millis(now)))
        .bind(status_code)
        .bind(outcome.error.as_deref())
        .bind(&claimed.delivery_id)
        .bind(&claimed.lease_token)
        .execute(&mut *tx)
        .await
        .context("recording the delivery's state")?
        .rows_affected();
        if updated == 0 {
            // The lease ran out and another worker has it now; its attempt will be recorded.
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt_number, attempted_at_ms, \
             status_code, latency_ms, error, next_retry_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&claimed.delivery_id)
        .bind(attempt_number)
        .bind(millis(attempted_at))
        .bind(status_code)
        .bind(latency_ms)
        .bind(outcome.error.as_deref())
        .bind(next_retry.map(millis))
        .execute(&mut *tx)
        .await
        .context("recording the attempt")?;
        match status {
            "delivered" => {
                sqlx::query(
                    "UPDATE webhook_subscriptions SET consecutive_failures = 0 \
                     WHERE subscription_id = $1",
                )
                .bind(&claimed.subscription_id)
                .execute(&mut *tx)
                .await?;
            }
            "pending" => {
                sqlx::query(
                    "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1 \
                     WHERE subscription_id = $1",
                )
                .bind(&claimed.subscription_id)
                .execute(&mut *tx)
                .await?;
            }
            _ => {
                let reason = format!(
                    "a delivery ({}) failed every attempt for {} hours; the last: {}. \
                     Fix the receiver, then enable the subscription (its waiting deliveries \
                     are sent) and redeliver what was given up",
                    claimed.delivery_id,
                    self.settings.schedule.give_up_after.num_hours(),
                    outcome.error.as_deref().unwrap_or("unknown")
                );
                sqlx::query(
                    "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1, \
                     status = 'disabled', disabled_reason = $1, disabled_at_ms = $2 \
                     WHERE subscription_id = $3",
                )
                .bind(reason)
                .bind(millis(now))
                .bind(&claimed.subscription_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        let outcome_label = match status {
            "delivered" => "delivered",
            "pending" => "failed",
            _ => "gave_up",
        };
        metrics::counter!("herald_outbound_webhooks_total", "outcome" => outcome_label)
            .increment(1);
        if status == "failed" {
            tracing::warn!(
                subscription_id = %claimed.subscription_id,
                delivery_id = %claimed.delivery_id,
                "a webhook delivery was given up; its subscription is disabled"
            );
        }
        Ok(())
    }
}

/// What went wrong before an answer, in words, without the URL (its query may hold the
/// receiver's own credentials).
fn transport_error(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("no answer within {} s", timeout.as_secs_f64())
    } else if error.is_connect() {
        let mut why = String::from("could not connect");
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            // The resolver refused the address the name points at now (DNS rebinding).
            if let Some(refusal) = cause.downcast_ref::<MediaUrlRefused>() {
                return format!("not sent: {}", super::url_refusal(refusal));
            }
            why = format!("could not connect: {cause}");
            source = cause.source();
        }
        why
    } else {
        format!("the request failed: {}", error_chain(error))
    }
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.is_empty() {
        "unknown error".into()
    } else {
        text
    }
}
