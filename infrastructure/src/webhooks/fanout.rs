//! The log consumer of outbound webhooks: for each job or connection event that notifies
//! (`herald_domain::webhook`), one `webhook_deliveries` row per subscription of the owner that
//! wants it. It only writes rows, never calls a receiver, so the log moves at the database's
//! pace whatever the receivers do. Idempotent: a row's id is the `webhook-id`, derived from the
//! subscription and the event's stream and sequence, so an event handed over again adds nothing.
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use chrono::Utc;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;
use herald_domain::connection::ConnectionEvent;
use herald_domain::publishing_job::PublishingJobEvent;
use herald_domain::webhook::{
    connection_webhook, job_webhook, ConnectionFacts, JobFacts, WebhookEvent,
};
use herald_domain::{Connection, EventHandler, EventReader, HandlerError, PublishingJob};
use tokio::sync::Notify;

use super::{webhook_id, WebhookSubscriptions};
use crate::db::{millis, Db};
use crate::store::Aggregates;

/// How long what a job or connection is about (owner, platform: never changing) is reused.
const FACTS_MAX_AGE: Duration = Duration::from_secs(300);

/// Records the deliveries each event gives; wakes the delivery worker when it recorded some.
pub struct WebhookFanout {
    db: Db,
    subscriptions: WebhookSubscriptions,
    jobs: Aggregates<PublishingJob>,
    connections: Aggregates<Connection>,
    job_events: EventReader<PublishingJobEvent>,
    connection_events: EventReader<ConnectionEvent>,
    wake: Arc<Notify>,
}

impl WebhookFanout {
    pub fn new(
        db: Db,
        subscriptions: WebhookSubscriptions,
        jobs: Aggregates<PublishingJob>,
        connections: Aggregates<Connection>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            subscriptions,
            jobs,
            connections,
            job_events: EventReader::default(),
            connection_events: EventReader::default(),
            wake,
        }
    }

    /// The notification `event` gives and whose it is, if any.
    async fn notification(
        &self,
        event: &SerializedEvent,
    ) -> anyhow::Result<Option<(String, WebhookEvent)>> {
        let id = &event.aggregate_id;
        match event.aggregate_type.as_str() {
            PublishingJob::TYPE => {
                let decoded = self.job_events.read(event.clone())?;
                let Some(notice) = job_webhook(&decoded) else {
                    return Ok(None);
                };
                let job = self
                    .jobs
                    .load_recent(id, FACTS_MAX_AGE)
                    .await
                    .map_err(|e| anyhow!("loading job {id}: {e}"))?;
                let (Some(job_id), Some(user), Some(connection_id), Some(platform)) =
                    (job.job_id, job.user_id, job.connection_id, job.platform)
                else {
                    anyhow::bail!("job {id} has events but was never scheduled");
                };
                let facts = JobFacts {
                    job_id,
                    connection_id,
                    platform,
                };
                Ok(Some((user.to_string(), notice.about_job(&facts))))
            }
            Connection::TYPE => {
                let decoded = self.connection_events.read(event.clone())?;
                let Some(notice) = connection_webhook(&decoded) else {
                    return Ok(None);
                };
                let connection = self
                    .connections
                    .load_recent(id, FACTS_MAX_AGE)
                    .await
                    .map_err(|e| anyhow!("loading connection {id}: {e}"))?;
                let (Some(connection_id), Some(user), Some(platform)) = (
                    connection.connection_id,
                    connection.user_id,
                    connection.platform,
                ) else {
                    anyhow::bail!("connection {id} has events but was never connected");
                };
                let facts = ConnectionFacts {
                    connection_id,
                    platform,
                    account_username: connection.account.map(|a| a.username).unwrap_or_default(),
                };
                Ok(Some((user.to_string(), notice.about_connection(&facts))))
            }
            _ => Ok(None),
        }
    }

    /// Records the deliveries of one event; how many are new.
    async fn record(&self, event: &SerializedEvent) -> anyhow::Result<u64> {
        let Some((user, notice)) = self.notification(event).await? else {
            return Ok(0);
        };
        let sequence = i64::try_from(event.sequence).context("event sequence out of range")?;
        let occurred_at = millis(notice.occurred_at);
        let body = serde_json::to_string(&notice.body())?;
        let now = millis(Utc::now());
        let mut recorded = 0;
        for subscription in self.subscriptions.of_user(&user).await? {
            // A subscription hears of what happens from its creation on; an older event the
            // log hands over again (a consumer rewound, a new consumer group) is not news.
            if !subscription.wants(notice.event_type)
                || millis(subscription.created_at) > occurred_at
            {
                continue;
            }
            recorded += sqlx::query(
                "INSERT INTO webhook_deliveries (delivery_id, subscription_id, user_id, \
                 event_type, stream_id, stream_seq, body, occurred_at_ms, created_at_ms, status, \
                 attempts, next_attempt_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $9) \
                 ON CONFLICT (delivery_id) DO NOTHING",
            )
            .bind(webhook_id(
                &subscription.subscription_id,
                &event.aggregate_id,
                sequence,
            ))
            .bind(&subscription.subscription_id)
            .bind(&user)
            .bind(notice.event_type.as_str())
            .bind(&event.aggregate_id)
            .bind(sequence)
            .bind(&body)
            .bind(occurred_at)
            .bind(now)
            .execute(&self.db.any)
            .await
            .context("recording a webhook delivery")?
            .rows_affected();
        }
        Ok(recorded)
    }
}

#[async_trait::async_trait]
impl EventHandler for WebhookFanout {
    fn name(&self) -> &str {
        "webhooks"
    }

    fn aggregate_types(&self) -> &[&'static str] {
        &[PublishingJob::TYPE, Connection::TYPE]
    }

    async fn handle(&self, event: &SerializedEvent) -> Result<(), HandlerError> {
        if self.record(event).await? > 0 {
            self.wake.notify_one();
        }
        Ok(())
    }
}
