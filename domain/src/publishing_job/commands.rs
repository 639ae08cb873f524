use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    AttemptId, ConnectionId, Content, JobId, Platform, PlatformFailure, RulesOverride, UserId,
};

/// Accept a new job. The API has already checked that the connection belongs to the user and is
/// active; the aggregate checks the content against the platform's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulePublish {
    pub job_id: JobId,
    pub user_id: UserId,
    pub connection_id: ConnectionId,
    pub platform: Platform,
    pub content: Content,
    /// `None` publishes now.
    pub publish_at: Option<DateTime<Utc>>,
    pub max_attempts: u32,
    pub requested_at: DateTime<Utc>,
    /// This deployment's adjustments to the platform's content rules (boxed: usually empty).
    #[serde(default)]
    pub rules: Box<RulesOverride>,
}

/// Everything that can be asked of a publishing job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PublishingJobCommand {
    SchedulePublish(SchedulePublish),
    /// Record the intent to publish before any irreversible platform call.
    StartAttempt {
        attempt_id: AttemptId,
        at: DateTime<Utc>,
    },
    RecordUploadStarted {
        attempt_id: AttemptId,
        media_index: usize,
        total_bytes: u64,
        at: DateTime<Utc>,
    },
    RecordUploadSessionOpened {
        attempt_id: AttemptId,
        media_index: usize,
        sealed_session: String,
        at: DateTime<Utc>,
    },
    RecordUploadProgress {
        attempt_id: AttemptId,
        media_index: usize,
        bytes_sent: u64,
        total_bytes: u64,
    },
    RecordUploadCompleted {
        attempt_id: AttemptId,
        media_index: usize,
        platform_media_id: String,
        at: DateTime<Utc>,
    },
    /// One post of the job exists on the platform (the only post, or one part of a thread).
    RecordPostCreated {
        attempt_id: AttemptId,
        part_index: usize,
        post_id: String,
        url: String,
        at: DateTime<Utc>,
    },
    /// The attempt failed; `jitter` in [0, 1] spreads retries (chosen by the caller so the
    /// decision stays pure).
    RecordAttemptFailure {
        attempt_id: AttemptId,
        failure: PlatformFailure,
        at: DateTime<Utc>,
        jitter: f64,
    },
    /// The platform call may or may not have taken effect (timeout after send, crashed worker).
    RecordOutcomeUnknown {
        attempt_id: AttemptId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// What the platform says about the unknown attempt: the post exists, or it does not.
    RecordReconciliation {
        attempt_id: AttemptId,
        found: Option<FoundPost>,
        at: DateTime<Utc>,
    },
    /// The platform could not be asked about the unknown attempt (it failed, refused the
    /// lookup, or no token was at hand). Nothing may be sent until it answers, so the lookup
    /// is tried again later, backing off.
    RecordReconciliationFailure {
        attempt_id: AttemptId,
        failure: PlatformFailure,
        at: DateTime<Utc>,
        /// In [0, 1]: spreads the retries of many jobs.
        jitter: f64,
    },
    Cancel {
        at: DateTime<Utc>,
    },
    Reschedule {
        publish_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// A user asks to try a failed job again, with a fresh retry budget.
    Retry {
        at: DateTime<Utc>,
    },
}

/// A post found on the platform while reconciling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundPost {
    pub post_id: String,
    pub url: String,
}
