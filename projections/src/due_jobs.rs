//! When each job is next due: the durable schedule the publisher's workers claim from (see
//! `herald_infrastructure::scheduler`). Only due times are written here; leases belong to the
//! workers and are left untouched.
use std::sync::Arc;

use herald_domain::publishing_job::PublishingJobEvent;
use sqlx::{Any, Transaction};

use crate::{millis, Projection};

/// Writes `job_schedule` from job events.
pub struct DueJobsProjection {
    /// Called after a due time is written, to wake the dispatcher at once.
    on_due: Arc<dyn Fn() + Send + Sync>,
}

impl DueJobsProjection {
    pub fn new(on_due: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self { on_due }
    }
}

#[async_trait::async_trait]
impl Projection for DueJobsProjection {
    type Event = PublishingJobEvent;

    fn name(&self) -> &'static str {
        "scheduler"
    }

    fn aggregate_type(&self) -> &'static str {
        "PublishingJob"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["job_schedule", "schedule_user_load"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        aggregate_id: &str,
        _sequence: i64,
        event: &PublishingJobEvent,
    ) -> anyhow::Result<()> {
        use PublishingJobEvent as E;
        if let E::JobScheduled {
            user_id,
            publish_at,
            ..
        } = event
        {
            // Its rank: how many of the user's jobs are in the schedule before it.
            let pending: i64 = sqlx::query_scalar(
                "INSERT INTO schedule_user_load (user_id, pending) VALUES ($1, 1)
                 ON CONFLICT (user_id) DO UPDATE SET pending = schedule_user_load.pending + 1
                 RETURNING pending",
            )
            .bind(user_id.as_str())
            .fetch_one(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO job_schedule (job_id, due_at_ms, lease_owner, lease_until_ms, user_id, user_rank)
                 VALUES ($1, $2, NULL, 0, $3, $4)
                 ON CONFLICT (job_id) DO UPDATE SET due_at_ms = excluded.due_at_ms",
            )
            .bind(aggregate_id)
            .bind(millis(*publish_at))
            .bind(user_id.as_str())
            .bind(pending - 1)
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        let due = match event {
            E::JobScheduled { .. } => None,
            E::RetryScheduled { retry_at, .. } => Some(*retry_at),
            E::Rescheduled { publish_at, .. } => Some(*publish_at),
            E::RetryRequested { at, .. } => Some(*at),
            E::Published { .. } | E::Failed { .. } | E::Cancelled { .. } => {
                let owner: Option<String> = sqlx::query_scalar(
                    "DELETE FROM job_schedule WHERE job_id = $1 RETURNING user_id",
                )
                .bind(aggregate_id)
                .fetch_optional(&mut **tx)
                .await?;
                // Rows a user's retry brought back carry no user (the event names none) and
                // never counted.
                if let Some(owner) = owner.filter(|owner| !owner.is_empty()) {
                    sqlx::query(
                        "UPDATE schedule_user_load SET pending = pending - 1 WHERE user_id = $1",
                    )
                    .bind(owner)
                    .execute(&mut **tx)
                    .await?;
                }
                return Ok(());
            }
            _ => None,
        };
        if let Some(due) = due {
            sqlx::query(
                "INSERT INTO job_schedule (job_id, due_at_ms, lease_owner, lease_until_ms) VALUES ($1, $2, NULL, 0)
                 ON CONFLICT (job_id) DO UPDATE SET due_at_ms = excluded.due_at_ms",
            )
            .bind(aggregate_id)
            .bind(millis(due))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    fn after_commit(&self, event: &PublishingJobEvent) {
        if matches!(
            event,
            PublishingJobEvent::JobScheduled { .. }
                | PublishingJobEvent::RetryScheduled { .. }
                | PublishingJobEvent::Rescheduled { .. }
                | PublishingJobEvent::RetryRequested { .. }
        ) {
            (self.on_due)();
        }
    }
}
