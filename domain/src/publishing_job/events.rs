use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::{
    AttemptId, ConnectionId, ErrorClass, JobId, Platform, PreparedContent, UserId, EVENT_VERSION_1,
    EVENT_VERSION_2,
};

/// Everything that happened to a publishing job. Events carry no secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PublishingJobEvent {
    JobScheduled {
        job_id: JobId,
        user_id: UserId,
        connection_id: ConnectionId,
        platform: Platform,
        content: PreparedContent,
        publish_at: DateTime<Utc>,
        max_attempts: u32,
        at: DateTime<Utc>,
    },
    AttemptStarted {
        attempt_id: AttemptId,
        attempt_number: u32,
        at: DateTime<Utc>,
    },
    UploadStarted {
        attempt_id: AttemptId,
        media_index: usize,
        total_bytes: u64,
        /// The confirmed offset of the open session this upload resumes (0 for a new upload),
        /// so progress shown after a crash starts where the platform's copy stands. Events
        /// written before the field existed read as 0.
        #[serde(default)]
        resumed_from: u64,
        at: DateTime<Utc>,
    },
    /// The platform opened a resumable upload session (YouTube's session URI, TikTok's upload
    /// URL, ...). The handle can upload without a token, so it is stored sealed by the vault;
    /// a later attempt opens it to resume from the last `UploadChunked` offset.
    UploadSessionOpened {
        attempt_id: AttemptId,
        media_index: usize,
        sealed_session: String,
        at: DateTime<Utc>,
    },
    /// The platform confirmed `bytes_sent` bytes of the media item.
    UploadChunked {
        attempt_id: AttemptId,
        media_index: usize,
        bytes_sent: u64,
        total_bytes: u64,
    },
    UploadCompleted {
        attempt_id: AttemptId,
        media_index: usize,
        platform_media_id: String,
        at: DateTime<Utc>,
    },
    /// A part of a thread, other than the last, exists on the platform.
    ThreadPartPublished {
        attempt_id: AttemptId,
        part_index: usize,
        post_id: String,
        url: String,
        at: DateTime<Utc>,
    },
    /// The last part is on the platform: the job is done. Version 2 (see `upcast.rs`): version
    /// 1 stored the first post's id twice (`post_id` and the head of `post_ids`) and called its
    /// URL `url`.
    Published {
        attempt_id: AttemptId,
        /// Every post of the job in order (one unless a thread); the first is the job's post.
        post_ids: Vec<String>,
        /// Where the first post is seen.
        first_post_url: String,
        at: DateTime<Utc>,
    },
    AttemptFailed {
        attempt_id: AttemptId,
        attempt_number: u32,
        class: ErrorClass,
        code: String,
        message: String,
        retry_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    RetryScheduled {
        retry_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    Failed {
        class: ErrorClass,
        code: String,
        message: String,
        at: DateTime<Utc>,
    },
    Cancelled {
        at: DateTime<Utc>,
    },
    Rescheduled {
        publish_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    OutcomeUnknown {
        attempt_id: AttemptId,
        reason: String,
        at: DateTime<Utc>,
    },
    Reconciled {
        attempt_id: AttemptId,
        part_index: usize,
        found_post_id: Option<String>,
        at: DateTime<Utc>,
    },
    /// Looking the unknown attempt up failed; the next lookup is at `retry_at`.
    ReconciliationFailed {
        attempt_id: AttemptId,
        class: ErrorClass,
        code: String,
        message: String,
        retry_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    RetryRequested {
        max_attempts: u32,
        at: DateTime<Utc>,
    },
}

impl PublishingJobEvent {
    /// When the event happened, for read models and the audit trail.
    pub fn occurred_at(&self) -> Option<DateTime<Utc>> {
        use PublishingJobEvent::*;
        match self {
            JobScheduled { at, .. }
            | AttemptStarted { at, .. }
            | UploadStarted { at, .. }
            | UploadSessionOpened { at, .. }
            | UploadCompleted { at, .. }
            | ThreadPartPublished { at, .. }
            | Published { at, .. }
            | AttemptFailed { at, .. }
            | RetryScheduled { at, .. }
            | Failed { at, .. }
            | Cancelled { at }
            | Rescheduled { at, .. }
            | OutcomeUnknown { at, .. }
            | Reconciled { at, .. }
            | ReconciliationFailed { at, .. }
            | RetryRequested { at, .. } => Some(*at),
            UploadChunked { .. } => None,
        }
    }
}

impl DomainEvent for PublishingJobEvent {
    fn event_type(&self) -> String {
        use PublishingJobEvent::*;
        match self {
            JobScheduled { .. } => "JobScheduled",
            AttemptStarted { .. } => "AttemptStarted",
            UploadStarted { .. } => "UploadStarted",
            UploadSessionOpened { .. } => "UploadSessionOpened",
            UploadChunked { .. } => "UploadChunked",
            UploadCompleted { .. } => "UploadCompleted",
            ThreadPartPublished { .. } => "ThreadPartPublished",
            Published { .. } => "Published",
            AttemptFailed { .. } => "AttemptFailed",
            RetryScheduled { .. } => "RetryScheduled",
            Failed { .. } => "Failed",
            Cancelled { .. } => "Cancelled",
            Rescheduled { .. } => "Rescheduled",
            OutcomeUnknown { .. } => "OutcomeUnknown",
            Reconciled { .. } => "Reconciled",
            ReconciliationFailed { .. } => "ReconciliationFailed",
            RetryRequested { .. } => "RetryRequested",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        match self {
            PublishingJobEvent::Published { .. } => EVENT_VERSION_2,
            _ => EVENT_VERSION_1,
        }
        .to_string()
    }
}
