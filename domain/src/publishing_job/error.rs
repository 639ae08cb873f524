use chrono::{DateTime, Utc};

use crate::{AttemptId, ContentError};

/// Why a publishing-job command was refused. Typed so tests and the API match on variants.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishingJobError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("the job does not exist")]
    NotFound,
    #[error("a job with this id already exists with different content or target; use a new Idempotency-Key")]
    IdConflict,
    #[error("the scheduled time {publish_at} is in the past; give a future time with an offset")]
    ScheduledInPast { publish_at: DateTime<Utc> },
    #[error("max_attempts must be between 1 and 20; got {0}")]
    InvalidRetryBudget(u32),
    #[error("the job is {status} and cannot {action}")]
    InvalidState {
        status: &'static str,
        action: &'static str,
    },
    #[error("the job is not due until {due_at}")]
    NotDueYet { due_at: DateTime<Utc> },
    #[error("attempt {0} is not the job's current attempt")]
    StaleAttempt(AttemptId),
    #[error("the previous attempt's outcome is unknown; reconcile it with the platform first")]
    ReconcileFirst,
    #[error("all {max_attempts} attempts are used")]
    RetryBudgetExhausted { max_attempts: u32 },
    #[error("this job was already retried {retries} times, the most a job may be; publish it again as a new job if it should still go out")]
    ManualRetriesExhausted { retries: u32 },
    #[error("thread part {part_index} is not the next part to publish (expected {expected})")]
    UnexpectedPart { part_index: usize, expected: usize },
    #[error("media item {0} does not exist in this job")]
    UnknownMedia(usize),
}
