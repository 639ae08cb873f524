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
        &["job_schedule"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        aggregate_id: &str,
        _sequence: i64,
        event: &PublishingJobEvent,
    ) -> anyhow::Result<()> {
        use PublishingJobEvent as E;
        let due = match event {
            E::JobScheduled { publish_at, .. } => Some(*publish_at),
            E::RetryScheduled { retry_at, .. } => Some(*retry_at),
            E::Rescheduled { publish_at, .. } => Some(*publish_at),
            E::RetryRequested { at, .. } => Some(*at),
            E::Published { .. } | E::Failed { .. } | E::Cancelled { .. } => {
                sqlx::query("DELETE FROM job_schedule WHERE job_id = $1")
                    .bind(aggregate_id)
                    .execute(&mut **tx)
                    .await?;
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
