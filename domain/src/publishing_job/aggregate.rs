use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{FoundPost, PublishingJobCommand, SchedulePublish};
use super::error::PublishingJobError;
use super::events::PublishingJobEvent;
use crate::content::ContentRules;
use crate::retry::RetryPolicy;
use crate::{
    AttemptId, ConnectionId, ErrorClass, JobId, Platform, PlatformFailure, PreparedContent, UserId,
};

/// The retry budget when the request does not name one.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
const MAX_RETRY_BUDGET: u32 = 20;
/// Waits for a rate limit or quota in a row after which a job gives up: a limit that never
/// reopens (a quota of zero, a ban) must not keep a job waiting for ever.
pub const MAX_LIMIT_WAITS: u32 = 100;
/// Retries a user may ask for one job: each grants a fresh attempt budget, so without a bound
/// one failing job could be sent to a platform for ever.
pub const MAX_MANUAL_RETRIES: u32 = 5;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    #[default]
    New,
    Scheduled,
    Publishing,
    RetryScheduled,
    OutcomeUnknown,
    Published,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::New => "new",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Publishing => "publishing",
            JobStatus::RetryScheduled => "retry_scheduled",
            JobStatus::OutcomeUnknown => "outcome_unknown",
            JobStatus::Published => "published",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Published | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// What the publisher should do with a job now (pure; see `PublishingJob::next_step`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Terminal, or nothing to do.
    Nothing,
    /// Not due yet.
    WaitUntil(DateTime<Utc>),
    /// Start an attempt; refresh the token first if the last attempt failed on auth.
    StartAttempt { refresh_token_first: bool },
    /// An attempt was started but never concluded (its worker died): record that its outcome
    /// is unknown before anything else.
    DeclareOutcomeUnknown { attempt_id: AttemptId },
    /// Ask the platform whether the unknown attempt's post exists.
    Reconcile {
        attempt_id: AttemptId,
        part_index: usize,
    },
}

/// A job's state, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishingJob {
    pub job_id: Option<JobId>,
    pub user_id: Option<UserId>,
    pub connection_id: Option<ConnectionId>,
    pub platform: Option<Platform>,
    pub content: Option<PreparedContent>,
    pub status: JobStatus,
    pub due_at: Option<DateTime<Utc>>,
    pub max_attempts: u32,
    /// Attempts started, waits for a limit included.
    pub attempts: u32,
    /// Attempts that ended waiting for a rate limit or quota: they do not use up the retry
    /// budget (the platform asked Herald to wait, nothing failed).
    pub limit_waits: u32,
    /// Of those, the ones since the last other outcome (see [`MAX_LIMIT_WAITS`]).
    pub limit_waits_in_a_row: u32,
    pub current_attempt: Option<AttemptId>,
    pub last_failure: Option<ErrorClass>,
    /// Failed lookups of the current unknown outcome, for their backoff.
    pub reconciliation_failures: u32,
    /// Platform media ids already uploaded, by media index; reused by later attempts.
    pub uploaded_media: BTreeMap<usize, String>,
    /// Resumable upload sessions not yet completed, by media index.
    pub upload_sessions: BTreeMap<usize, UploadSession>,
    /// Post ids (and the first post's URL) already on the platform, in part order.
    pub posted_parts: Vec<String>,
    pub first_post_url: Option<String>,
    pub published_post_id: Option<String>,
    /// Retries the user asked for (`RetryRequested`), each with a fresh attempt budget.
    pub manual_retries: u32,
}

/// A resumable upload in progress: the sealed session handle and the bytes the platform has
/// confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UploadSession {
    pub sealed_session: String,
    pub bytes_confirmed: u64,
}

impl PublishingJob {
    /// The next part of the content that is not on the platform yet.
    pub fn next_part_index(&self) -> usize {
        self.posted_parts.len()
    }

    pub fn part_count(&self) -> usize {
        self.content.as_ref().map_or(0, |c| c.parts.len())
    }

    /// What the publisher should do now. `attempt_is_live` says whether a worker still holds
    /// the job's lease; a `Publishing` job without one has lost its worker.
    pub fn next_step(&self, now: DateTime<Utc>, attempt_is_live: bool) -> NextStep {
        match self.status {
            JobStatus::Scheduled | JobStatus::RetryScheduled => match self.due_at {
                Some(due) if due > now => NextStep::WaitUntil(due),
                _ => NextStep::StartAttempt {
                    refresh_token_first: self.last_failure == Some(ErrorClass::Auth),
                },
            },
            JobStatus::Publishing if !attempt_is_live => match self.current_attempt {
                Some(attempt_id) => NextStep::DeclareOutcomeUnknown { attempt_id },
                None => NextStep::Nothing,
            },
            JobStatus::OutcomeUnknown => match (self.current_attempt, self.due_at) {
                // After a failed lookup, the next one waits for its backoff.
                (Some(_), Some(due)) if self.reconciliation_failures > 0 && due > now => {
                    NextStep::WaitUntil(due)
                }
                (Some(attempt_id), _) => NextStep::Reconcile {
                    attempt_id,
                    part_index: self.next_part_index(),
                },
                (None, _) => NextStep::Nothing,
            },
            _ => NextStep::Nothing,
        }
    }

    fn invalid(&self, action: &'static str) -> PublishingJobError {
        if self.status == JobStatus::New {
            return PublishingJobError::NotFound;
        }
        PublishingJobError::InvalidState {
            status: self.status.as_str(),
            action,
        }
    }

    fn require_current(&self, attempt_id: AttemptId) -> Result<(), PublishingJobError> {
        if self.current_attempt != Some(attempt_id) {
            return Err(PublishingJobError::StaleAttempt(attempt_id));
        }
        Ok(())
    }

    fn require_publishing(
        &self,
        attempt_id: AttemptId,
        action: &'static str,
    ) -> Result<(), PublishingJobError> {
        if self.status != JobStatus::Publishing {
            return Err(self.invalid(action));
        }
        self.require_current(attempt_id)
    }

    fn schedule(
        &self,
        cmd: SchedulePublish,
    ) -> Result<Vec<PublishingJobEvent>, PublishingJobError> {
        if !(1..=MAX_RETRY_BUDGET).contains(&cmd.max_attempts) {
            return Err(PublishingJobError::InvalidRetryBudget(cmd.max_attempts));
        }
        let content = ContentRules::for_platform(cmd.platform)
            .adjusted(&cmd.rules)
            .prepare(&cmd.content)?;
        if self.status != JobStatus::New {
            // Same id again: an idempotent replay of the same request is a no-op.
            let same = self.connection_id == Some(cmd.connection_id)
                && self.user_id.as_ref() == Some(&cmd.user_id)
                && self.content.as_ref() == Some(&content);
            return if same {
                Ok(vec![])
            } else {
                Err(PublishingJobError::IdConflict)
            };
        }
        let publish_at = match cmd.publish_at {
            Some(at) if at < cmd.requested_at => {
                return Err(PublishingJobError::ScheduledInPast { publish_at: at })
            }
            Some(at) => at,
            None => cmd.requested_at,
        };
        Ok(vec![PublishingJobEvent::JobScheduled {
            job_id: cmd.job_id,
            user_id: cmd.user_id,
            connection_id: cmd.connection_id,
            platform: cmd.platform,
            content,
            publish_at,
            max_attempts: cmd.max_attempts,
            at: cmd.requested_at,
        }])
    }

    fn start_attempt(
        &self,
        attempt_id: AttemptId,
        at: DateTime<Utc>,
    ) -> Result<Vec<PublishingJobEvent>, PublishingJobError> {
        match self.status {
            JobStatus::Scheduled | JobStatus::RetryScheduled => {}
            JobStatus::OutcomeUnknown => return Err(PublishingJobError::ReconcileFirst),
            _ => return Err(self.invalid("start an attempt")),
        }
        if let Some(due_at) = self.due_at.filter(|due| *due > at) {
            return Err(PublishingJobError::NotDueYet { due_at });
        }
        if self.spent_attempts() >= self.max_attempts {
            return Err(PublishingJobError::RetryBudgetExhausted {
                max_attempts: self.max_attempts,
            });
        }
        Ok(vec![PublishingJobEvent::AttemptStarted {
            attempt_id,
            attempt_number: self.attempts + 1,
            at,
        }])
    }

    fn post_created(
        &self,
        attempt_id: AttemptId,
        part_index: usize,
        post_id: String,
        url: String,
        at: DateTime<Utc>,
        reconciled: bool,
    ) -> Result<Vec<PublishingJobEvent>, PublishingJobError> {
        let expected = self.next_part_index();
        if part_index != expected {
            return Err(PublishingJobError::UnexpectedPart {
                part_index,
                expected,
            });
        }
        let mut events = Vec::new();
        if part_index + 1 < self.part_count() {
            events.push(PublishingJobEvent::ThreadPartPublished {
                attempt_id,
                part_index,
                post_id,
                url,
                at,
            });
            // Reconciliation found a middle part: the attempt is over, continue with a new one.
            if reconciled {
                events.push(PublishingJobEvent::RetryScheduled { retry_at: at, at });
            }
            return Ok(events);
        }
        let mut post_ids = self.posted_parts.clone();
        post_ids.push(post_id.clone());
        let first_url = self.first_post_url.clone().unwrap_or(url);
        events.push(PublishingJobEvent::Published {
            attempt_id,
            post_ids,
            first_post_url: first_url,
            at,
        });
        Ok(events)
    }

    fn attempt_failed(
        &self,
        attempt_id: AttemptId,
        failure: PlatformFailure,
        at: DateTime<Utc>,
        jitter: f64,
    ) -> Result<Vec<PublishingJobEvent>, PublishingJobError> {
        self.require_publishing(attempt_id, "record a failure")?;
        let mut class = failure.class;
        let mut message = failure.message.clone();
        // One refresh per auth failure: a second 401 in a row means the grant is unusable.
        if class == ErrorClass::Auth && self.last_failure == Some(ErrorClass::Auth) {
            class = ErrorClass::ReauthorizationRequired;
            message = format!(
                "{message}. The platform refused the token again after a refresh: reconnect the account"
            );
        }
        let budget_left = match class {
            ErrorClass::RateLimited => self.limit_waits_in_a_row < MAX_LIMIT_WAITS,
            _ => self.spent_attempts() < self.max_attempts,
        };
        let retry_at = if budget_left {
            let classified = PlatformFailure {
                class,
                ..failure.clone()
            };
            // Waits for a limit do not make the next real failure back off longer.
            let failures = self.spent_attempts().max(1);
            RetryPolicy::default().retry_at(&classified, failures, at, jitter)
        } else {
            None
        };
        let mut events = vec![PublishingJobEvent::AttemptFailed {
            attempt_id,
            attempt_number: self.attempts,
            class,
            code: failure.code.clone(),
            message: message.clone(),
            retry_at,
            at,
        }];
        match retry_at {
            Some(retry_at) => events.push(PublishingJobEvent::RetryScheduled { retry_at, at }),
            None => {
                let message = if budget_left {
                    message
                } else if class == ErrorClass::RateLimited {
                    format!("gave up after waiting {MAX_LIMIT_WAITS} times in a row for a limit that did not reopen; last error: {message}")
                } else {
                    format!(
                        "gave up after {} attempts; last error: {message}",
                        self.max_attempts
                    )
                };
                events.push(PublishingJobEvent::Failed {
                    class,
                    code: failure.code,
                    message,
                    at,
                });
            }
        }
        Ok(events)
    }

    fn reconciled(
        &self,
        attempt_id: AttemptId,
        found: Option<FoundPost>,
        at: DateTime<Utc>,
    ) -> Result<Vec<PublishingJobEvent>, PublishingJobError> {
        if self.status != JobStatus::OutcomeUnknown {
            return Err(self.invalid("be reconciled"));
        }
        self.require_current(attempt_id)?;
        let part_index = self.next_part_index();
        let mut events = vec![PublishingJobEvent::Reconciled {
            attempt_id,
            part_index,
            found_post_id: found.as_ref().map(|f| f.post_id.clone()),
            at,
        }];
        match found {
            Some(post) => {
                events.extend(self.post_created(
                    attempt_id,
                    part_index,
                    post.post_id,
                    post.url,
                    at,
                    true,
                )?);
            }
            None if self.spent_attempts() < self.max_attempts => {
                events.push(PublishingJobEvent::RetryScheduled { retry_at: at, at });
            }
            None => events.push(PublishingJobEvent::Failed {
                class: ErrorClass::Retryable,
                code: "outcome_unknown".into(),
                message: format!(
                    "gave up after {} attempts; the last one did not reach the platform",
                    self.max_attempts
                ),
                at,
            }),
        }
        Ok(events)
    }

    fn decide(
        &self,
        command: PublishingJobCommand,
    ) -> Result<Vec<PublishingJobEvent>, PublishingJobError> {
        use PublishingJobCommand as C;
        use PublishingJobEvent as E;
        if !matches!(command, C::SchedulePublish(_)) && self.status == JobStatus::New {
            return Err(PublishingJobError::NotFound);
        }
        match command {
            C::SchedulePublish(cmd) => self.schedule(cmd),
            C::StartAttempt { attempt_id, at } => self.start_attempt(attempt_id, at),
            C::RecordUploadStarted {
                attempt_id,
                media_index,
                total_bytes,
                at,
            } => {
                self.require_publishing(attempt_id, "upload media")?;
                self.require_media(media_index)?;
                let resumed_from = self
                    .upload_sessions
                    .get(&media_index)
                    .map_or(0, |session| session.bytes_confirmed.min(total_bytes));
                Ok(vec![E::UploadStarted {
                    attempt_id,
                    media_index,
                    total_bytes,
                    resumed_from,
                    at,
                }])
            }
            C::RecordUploadSessionOpened {
                attempt_id,
                media_index,
                sealed_session,
                at,
            } => {
                self.require_publishing(attempt_id, "upload media")?;
                self.require_media(media_index)?;
                Ok(vec![E::UploadSessionOpened {
                    attempt_id,
                    media_index,
                    sealed_session,
                    at,
                }])
            }
            C::RecordUploadProgress {
                attempt_id,
                media_index,
                bytes_sent,
                total_bytes,
            } => {
                self.require_publishing(attempt_id, "upload media")?;
                self.require_media(media_index)?;
                Ok(vec![E::UploadChunked {
                    attempt_id,
                    media_index,
                    bytes_sent: bytes_sent.min(total_bytes),
                    total_bytes,
                }])
            }
            C::RecordUploadCompleted {
                attempt_id,
                media_index,
                platform_media_id,
                at,
            } => {
                self.require_publishing(attempt_id, "upload media")?;
                self.require_media(media_index)?;
                Ok(vec![E::UploadCompleted {
                    attempt_id,
                    media_index,
                    platform_media_id,
                    at,
                }])
            }
            C::RecordPostCreated {
                attempt_id,
                part_index,
                post_id,
                url,
                at,
            } => {
                self.require_publishing(attempt_id, "publish")?;
                self.post_created(attempt_id, part_index, post_id, url, at, false)
            }
            C::RecordAttemptFailure {
                attempt_id,
                failure,
                at,
                jitter,
            } => self.attempt_failed(attempt_id, failure, at, jitter),
            C::RecordOutcomeUnknown {
                attempt_id,
                reason,
                at,
            } => {
                self.require_publishing(attempt_id, "have an unknown outcome")?;
                Ok(vec![E::OutcomeUnknown {
                    attempt_id,
                    reason,
                    at,
                }])
            }
            C::RecordReconciliation {
                attempt_id,
                found,
                at,
            } => self.reconciled(attempt_id, found, at),
            C::RecordReconciliationFailure {
                attempt_id,
                failure,
                at,
                jitter,
            } => {
                if self.status != JobStatus::OutcomeUnknown {
                    return Err(self.invalid("be reconciled"));
                }
                self.require_current(attempt_id)?;
                // Whatever the class, the lookup is tried again: a refused one may succeed once
                // the account is reconnected, and giving up could only end in sending twice.
                let backoff =
                    RetryPolicy::default().backoff(self.reconciliation_failures + 1, jitter);
                let retry_at = match failure.not_before {
                    Some(platform_says) if platform_says > at + backoff => platform_says,
                    _ => at + backoff,
                };
                Ok(vec![E::ReconciliationFailed {
                    attempt_id,
                    class: failure.class,
                    code: failure.code,
                    message: failure.message,
                    retry_at,
                    at,
                }])
            }
            C::Cancel { at } => match self.status {
                JobStatus::Scheduled | JobStatus::RetryScheduled => Ok(vec![E::Cancelled { at }]),
                _ => Err(self.invalid("be cancelled")),
            },
            C::Reschedule { publish_at, at } => {
                if self.status != JobStatus::Scheduled {
                    return Err(self.invalid("be rescheduled"));
                }
                if publish_at < at {
                    return Err(PublishingJobError::ScheduledInPast { publish_at });
                }
                Ok(vec![E::Rescheduled { publish_at, at }])
            }
            C::Retry { at } => {
                if self.status != JobStatus::Failed {
                    return Err(self.invalid("be retried (only failed jobs can)"));
                }
                if self.manual_retries >= MAX_MANUAL_RETRIES {
                    return Err(PublishingJobError::ManualRetriesExhausted {
                        retries: self.manual_retries,
                    });
                }
                Ok(vec![E::RetryRequested {
                    max_attempts: self.spent_attempts() + self.max_attempts.max(1),
                    at,
                }])
            }
        }
    }

    /// Attempts that used up the retry budget: every attempt but the waits for a limit.
    pub fn spent_attempts(&self) -> u32 {
        self.attempts.saturating_sub(self.limit_waits)
    }

    fn require_media(&self, media_index: usize) -> Result<(), PublishingJobError> {
        let count = self.content.as_ref().map_or(0, |c| c.media.len());
        if media_index >= count {
            return Err(PublishingJobError::UnknownMedia(media_index));
        }
        Ok(())
    }
}

impl Aggregate for PublishingJob {
    const TYPE: &'static str = "PublishingJob";
    type Command = PublishingJobCommand;
    type Event = PublishingJobEvent;
    type Error = PublishingJobError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use PublishingJobEvent as E;
        match event {
            E::JobScheduled {
                job_id,
                user_id,
                connection_id,
                platform,
                content,
                publish_at,
                max_attempts,
                ..
            } => {
                self.job_id = Some(job_id);
                self.user_id = Some(user_id);
                self.connection_id = Some(connection_id);
                self.platform = Some(platform);
                self.content = Some(content);
                self.due_at = Some(publish_at);
                self.max_attempts = max_attempts;
                self.status = JobStatus::Scheduled;
            }
            E::AttemptStarted {
                attempt_id,
                attempt_number,
                ..
            } => {
                self.status = JobStatus::Publishing;
                self.current_attempt = Some(attempt_id);
                self.attempts = attempt_number;
            }
            E::UploadStarted { .. } => {}
            E::UploadSessionOpened {
                media_index,
                sealed_session,
                ..
            } => {
                self.upload_sessions.insert(
                    media_index,
                    UploadSession {
                        sealed_session,
                        bytes_confirmed: 0,
                    },
                );
            }
            E::UploadChunked {
                media_index,
                bytes_sent,
                ..
            } => {
                if let Some(session) = self.upload_sessions.get_mut(&media_index) {
                    session.bytes_confirmed = bytes_sent;
                }
            }
            E::UploadCompleted {
                media_index,
                platform_media_id,
                ..
            } => {
                self.upload_sessions.remove(&media_index);
                self.uploaded_media.insert(media_index, platform_media_id);
            }
            E::ThreadPartPublished { post_id, url, .. } => {
                self.posted_parts.push(post_id);
                self.first_post_url.get_or_insert(url);
            }
            E::Published {
                post_ids,
                first_post_url,
                ..
            } => {
                self.status = JobStatus::Published;
                self.published_post_id = post_ids.first().cloned();
                self.posted_parts = post_ids;
                self.first_post_url = Some(first_post_url);
                self.due_at = None;
            }
            E::AttemptFailed { class, .. } => {
                self.last_failure = Some(class);
                if class == ErrorClass::RateLimited {
                    self.limit_waits += 1;
                    self.limit_waits_in_a_row += 1;
                } else {
                    self.limit_waits_in_a_row = 0;
                }
            }
            E::RetryScheduled { retry_at, .. } => {
                self.status = JobStatus::RetryScheduled;
                self.due_at = Some(retry_at);
            }
            E::Failed { class, .. } => {
                self.status = JobStatus::Failed;
                self.last_failure = Some(class);
                self.due_at = None;
            }
            E::Cancelled { .. } => {
                self.status = JobStatus::Cancelled;
                self.due_at = None;
            }
            E::Rescheduled { publish_at, .. } => {
                self.due_at = Some(publish_at);
            }
            E::OutcomeUnknown { .. } => {
                self.status = JobStatus::OutcomeUnknown;
                self.reconciliation_failures = 0;
            }
            E::Reconciled { .. } => {
                // A reconciliation is not an auth failure; the next attempt needs no refresh.
                self.last_failure = None;
                self.reconciliation_failures = 0;
            }
            E::ReconciliationFailed { retry_at, .. } => {
                self.reconciliation_failures += 1;
                self.due_at = Some(retry_at);
            }
            E::RetryRequested { max_attempts, at } => {
                self.manual_retries += 1;
                self.status = JobStatus::RetryScheduled;
                self.limit_waits_in_a_row = 0;
                self.max_attempts = max_attempts;
                self.due_at = Some(at);
                self.last_failure = None;
                // Platform media ids and upload sessions may have expired by now; upload again.
                self.uploaded_media.clear();
                self.upload_sessions.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::ContentError;
    use crate::{Content, Poll};

    type JobTest = TestFramework<PublishingJob>;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ids() -> (JobId, UserId, ConnectionId) {
        let user = UserId::parse("alice").unwrap();
        let connection = ConnectionId::for_account(&user, Platform::X, "1");
        (JobId::from_uuid(uuid::Uuid::from_u128(7)), user, connection)
    }

    fn schedule_cmd(text: &str, publish_at: Option<DateTime<Utc>>) -> SchedulePublish {
        let (job_id, user_id, connection_id) = ids();
        SchedulePublish {
            job_id,
            user_id,
            connection_id,
            platform: Platform::X,
            content: Content {
                text: text.into(),
                ..Content::default()
            },
            publish_at,
            max_attempts: 3,
            requested_at: t0(),
            rules: Box::default(),
        }
    }

    fn prepared(parts: &[&str]) -> PreparedContent {
        PreparedContent {
            parts: parts.iter().map(|p| p.to_string()).collect(),
            ..PreparedContent::default()
        }
    }

    fn scheduled_with(parts: &[&str], max_attempts: u32) -> PublishingJobEvent {
        let (job_id, user_id, connection_id) = ids();
        PublishingJobEvent::JobScheduled {
            job_id,
            user_id,
            connection_id,
            platform: Platform::X,
            content: prepared(parts),
            publish_at: t0(),
            max_attempts,
            at: t0(),
        }
    }

    fn scheduled() -> PublishingJobEvent {
        scheduled_with(&["hello"], 3)
    }

    fn attempt(n: u128) -> AttemptId {
        AttemptId::from_uuid(uuid::Uuid::from_u128(100 + n))
    }

    fn started(n: u32) -> PublishingJobEvent {
        PublishingJobEvent::AttemptStarted {
            attempt_id: attempt(n as u128),
            attempt_number: n,
            at: t0(),
        }
    }

    fn session_opened(n: u32) -> PublishingJobEvent {
        PublishingJobEvent::UploadSessionOpened {
            attempt_id: attempt(n as u128),
            media_index: 0,
            sealed_session: "sealed".into(),
            at: t0(),
        }
    }

    /// `bytes_sent` of a 1,000,000-byte video confirmed in attempt `n`.
    fn chunked(n: u32, bytes_sent: u64) -> PublishingJobEvent {
        PublishingJobEvent::UploadChunked {
            attempt_id: attempt(n as u128),
            media_index: 0,
            bytes_sent,
            total_bytes: 1_000_000,
        }
    }

    fn failure(class: ErrorClass) -> PlatformFailure {
        PlatformFailure::new(class, "503", "Service Unavailable")
    }

    fn with_video(event: PublishingJobEvent) -> PublishingJobEvent {
        match event {
            PublishingJobEvent::JobScheduled {
                job_id,
                user_id,
                connection_id,
                platform,
                mut content,
                publish_at,
                max_attempts,
                at,
            } => {
                content.media = vec![crate::MediaItem {
                    url: "https://cdn.example.com/v.mp4".into(),
                    kind: crate::MediaKind::Video,
                    mime_type: "video/mp4".into(),
                    probe: None,
                }];
                PublishingJobEvent::JobScheduled {
                    job_id,
                    user_id,
                    connection_id,
                    platform,
                    content,
                    publish_at,
                    max_attempts,
                    at,
                }
            }
            other => other,
        }
    }

    fn replay(events: Vec<PublishingJobEvent>) -> PublishingJob {
        let mut job = PublishingJob::default();
        for event in events {
            job.apply(event);
        }
        job
    }

    #[test]
    fn an_upload_session_is_recorded_sealed_and_tracks_the_confirmed_offset() {
        JobTest::with(())
            .given(vec![with_video(scheduled()), started(1)])
            .when(PublishingJobCommand::RecordUploadSessionOpened {
                attempt_id: attempt(1),
                media_index: 0,
                sealed_session: "sealed".into(),
                at: t0(),
            })
            .then_expect_events(vec![PublishingJobEvent::UploadSessionOpened {
                attempt_id: attempt(1),
                media_index: 0,
                sealed_session: "sealed".into(),
                at: t0(),
            }]);
        let (opened, chunked) = (session_opened(1), chunked(1, 262_144));
        // A worker that dies here leaves the session for the next attempt to resume.
        let job = replay(vec![
            with_video(scheduled()),
            started(1),
            opened.clone(),
            chunked.clone(),
            started(2),
        ]);
        assert_eq!(
            job.upload_sessions.get(&0),
            Some(&UploadSession {
                sealed_session: "sealed".into(),
                bytes_confirmed: 262_144,
            })
        );
        let job = replay(vec![
            with_video(scheduled()),
            started(1),
            opened,
            chunked,
            PublishingJobEvent::UploadCompleted {
                attempt_id: attempt(1),
                media_index: 0,
                platform_media_id: "video-1".into(),
                at: t0(),
            },
        ]);
        assert!(job.upload_sessions.is_empty());
        assert_eq!(
            job.uploaded_media.get(&0).map(String::as_str),
            Some("video-1")
        );
    }

    #[test]
    fn an_upload_started_by_a_later_attempt_resumes_from_the_confirmed_offset() {
        let (opened, chunked) = (session_opened(1), chunked(1, 262_144));
        let upload_started = |resumed_from| PublishingJobEvent::UploadStarted {
            attempt_id: attempt(2),
            media_index: 0,
            total_bytes: 1_000_000,
            resumed_from,
            at: t0(),
        };
        let start_upload = PublishingJobCommand::RecordUploadStarted {
            attempt_id: attempt(2),
            media_index: 0,
            total_bytes: 1_000_000,
            at: t0(),
        };
        JobTest::with(())
            .given(vec![
                with_video(scheduled()),
                started(1),
                opened.clone(),
                chunked.clone(),
                started(2),
            ])
            .when(start_upload.clone())
            .then_expect_events(vec![upload_started(262_144)]);
        // Without a session (the upload cannot resume) it starts from the first byte.
        JobTest::with(())
            .given(vec![
                with_video(scheduled()),
                started(1),
                chunked,
                started(2),
            ])
            .when(start_upload.clone())
            .then_expect_events(vec![upload_started(0)]);
        // A session opened again (the platform lost the old one) has nothing confirmed yet.
        JobTest::with(())
            .given(vec![with_video(scheduled()), started(2), opened])
            .when(start_upload)
            .then_expect_events(vec![upload_started(0)]);
    }

    #[test]
    fn an_upload_started_event_written_before_resumed_from_existed_reads_as_a_new_upload() {
        let stored = serde_json::json!({"UploadStarted": {
            "attempt_id": attempt(1),
            "media_index": 0,
            "total_bytes": 10,
            "at": t0(),
        }});
        let event: PublishingJobEvent = serde_json::from_value(stored).expect("an old event reads");
        assert!(matches!(
            event,
            PublishingJobEvent::UploadStarted {
                resumed_from: 0,
                ..
            }
        ));
    }

    #[test]
    fn an_upload_session_for_media_the_job_does_not_have_is_refused() {
        JobTest::with(())
            .given(vec![scheduled(), started(1)])
            .when(PublishingJobCommand::RecordUploadSessionOpened {
                attempt_id: attempt(1),
                media_index: 0,
                sealed_session: "sealed".into(),
                at: t0(),
            })
            .then_expect_error(PublishingJobError::UnknownMedia(0));
    }

    #[test]
    fn publishing_now_schedules_the_job_at_the_request_time() {
        JobTest::with(())
            .given_no_previous_events()
            .when(PublishingJobCommand::SchedulePublish(schedule_cmd(
                "hello", None,
            )))
            .then_expect_events(vec![scheduled()]);
    }

    #[test]
    fn content_over_the_platform_limit_is_refused() {
        JobTest::with(())
            .given_no_previous_events()
            .when(PublishingJobCommand::SchedulePublish(schedule_cmd(
                &"a".repeat(281),
                None,
            )))
            .then_expect_error(PublishingJobError::Content(ContentError::TextTooLong {
                platform: Platform::X,
                limit: 280,
                length: 281,
            }));
    }

    #[test]
    fn content_is_judged_by_the_rules_the_command_carries() {
        let mut cmd = schedule_cmd(&"a".repeat(281), None);
        cmd.rules.max_text = Some(25_000);
        JobTest::with(())
            .given_no_previous_events()
            .when(PublishingJobCommand::SchedulePublish(cmd))
            .then_expect_events(vec![scheduled_with(&[&"a".repeat(281)], 3)]);
    }

    #[test]
    fn a_poll_with_one_option_is_refused() {
        let mut cmd = schedule_cmd("vote", None);
        cmd.content.poll = Some(Poll {
            options: vec!["yes".into()],
            duration_minutes: 60,
            question: None,
        });
        JobTest::with(())
            .given_no_previous_events()
            .when(PublishingJobCommand::SchedulePublish(cmd))
            .then_expect_error(PublishingJobError::Content(ContentError::PollOptionCount {
                count: 1,
            }));
    }

    #[test]
    fn a_time_in_the_past_is_refused() {
        let past = t0() - Duration::minutes(1);
        JobTest::with(())
            .given_no_previous_events()
            .when(PublishingJobCommand::SchedulePublish(schedule_cmd(
                "hello",
                Some(past),
            )))
            .then_expect_error(PublishingJobError::ScheduledInPast { publish_at: past });
    }

    #[test]
    fn content_the_platform_would_refuse_is_refused_when_the_job_is_accepted() {
        let mut cmd = schedule_cmd("hello", None);
        cmd.platform = Platform::Tiktok;
        JobTest::with(())
            .given_no_previous_events()
            .when(PublishingJobCommand::SchedulePublish(cmd))
            .then_expect_error(PublishingJobError::Content(ContentError::MediaRequired {
                platform: Platform::Tiktok,
                what: "a video or 1-35 photos",
            }));
    }

    #[test]
    fn the_same_request_twice_is_a_no_op_and_a_different_one_conflicts() {
        JobTest::with(())
            .given(vec![scheduled()])
            .when(PublishingJobCommand::SchedulePublish(schedule_cmd(
                "hello", None,
            )))
            .then_expect_events(vec![]);
        JobTest::with(())
            .given(vec![scheduled()])
            .when(PublishingJobCommand::SchedulePublish(schedule_cmd(
                "other", None,
            )))
            .then_expect_error(PublishingJobError::IdConflict);
    }

    #[test]
    fn an_attempt_cannot_start_before_the_job_is_due() {
        let later = t0() + Duration::seconds(30);
        JobTest::with(())
            .given(vec![
                scheduled(),
                PublishingJobEvent::Rescheduled {
                    publish_at: later,
                    at: t0(),
                },
            ])
            .when(PublishingJobCommand::StartAttempt {
                attempt_id: attempt(1),
                at: t0(),
            })
            .then_expect_error(PublishingJobError::NotDueYet { due_at: later });
    }

    #[test]
    fn a_due_job_starts_its_first_attempt() {
        JobTest::with(())
            .given(vec![scheduled()])
            .when(PublishingJobCommand::StartAttempt {
                attempt_id: attempt(1),
                at: t0(),
            })
            .then_expect_events(vec![started(1)]);
    }

    #[test]
    fn a_created_post_publishes_the_job() {
        JobTest::with(())
            .given(vec![scheduled(), started(1)])
            .when(PublishingJobCommand::RecordPostCreated {
                attempt_id: attempt(1),
                part_index: 0,
                post_id: "99".into(),
                url: "https://x.com/a/status/99".into(),
                at: t0(),
            })
            .then_expect_events(vec![PublishingJobEvent::Published {
                attempt_id: attempt(1),
                post_ids: vec!["99".into()],
                first_post_url: "https://x.com/a/status/99".into(),
                at: t0(),
            }]);
    }

    #[test]
    fn a_thread_publishes_part_by_part() {
        JobTest::with(())
            .given(vec![scheduled_with(&["one", "two"], 3), started(1)])
            .when(PublishingJobCommand::RecordPostCreated {
                attempt_id: attempt(1),
                part_index: 0,
                post_id: "1".into(),
                url: "u1".into(),
                at: t0(),
            })
            .then_expect_events(vec![PublishingJobEvent::ThreadPartPublished {
                attempt_id: attempt(1),
                part_index: 0,
                post_id: "1".into(),
                url: "u1".into(),
                at: t0(),
            }]);
        JobTest::with(())
            .given(vec![
                scheduled_with(&["one", "two"], 3),
                started(1),
                PublishingJobEvent::ThreadPartPublished {
                    attempt_id: attempt(1),
                    part_index: 0,
                    post_id: "1".into(),
                    url: "u1".into(),
                    at: t0(),
                },
            ])
            .when(PublishingJobCommand::RecordPostCreated {
                attempt_id: attempt(1),
                part_index: 1,
                post_id: "2".into(),
                url: "u2".into(),
                at: t0(),
            })
            .then_expect_events(vec![PublishingJobEvent::Published {
                attempt_id: attempt(1),
                post_ids: vec!["1".into(), "2".into()],
                first_post_url: "u1".into(),
                at: t0(),
            }]);
    }

    #[test]
    fn a_cancelled_job_cannot_publish_or_start() {
        JobTest::with(())
            .given(vec![
                scheduled(),
                PublishingJobEvent::Cancelled { at: t0() },
            ])
            .when(PublishingJobCommand::StartAttempt {
                attempt_id: attempt(1),
                at: t0(),
            })
            .then_expect_error(PublishingJobError::InvalidState {
                status: "cancelled",
                action: "start an attempt",
            });
    }

    #[test]
    fn a_job_being_published_cannot_be_cancelled() {
        JobTest::with(())
            .given(vec![scheduled(), started(1)])
            .when(PublishingJobCommand::Cancel { at: t0() })
            .then_expect_error(PublishingJobError::InvalidState {
                status: "publishing",
                action: "be cancelled",
            });
    }

    #[test]
    fn a_published_job_cannot_fail() {
        JobTest::with(())
            .given(vec![
                scheduled(),
                started(1),
                PublishingJobEvent::Published {
                    attempt_id: attempt(1),
                    post_ids: vec!["9".into()],
                    first_post_url: "u".into(),
                    at: t0(),
                },
            ])
            .when(PublishingJobCommand::RecordAttemptFailure {
                attempt_id: attempt(1),
                failure: failure(ErrorClass::Retryable),
                at: t0(),
                jitter: 1.0,
            })
            .then_expect_error(PublishingJobError::InvalidState {
                status: "published",
                action: "record a failure",
            });
    }

    #[test]
    fn a_server_error_schedules_a_backed_off_retry() {
        let retry_at = t0() + Duration::seconds(2);
        JobTest::with(())
            .given(vec![scheduled(), started(1)])
            .when(PublishingJobCommand::RecordAttemptFailure {
                attempt_id: attempt(1),
                failure: failure(ErrorClass::Retryable),
                at: t0(),
                jitter: 1.0,
            })
            .then_expect_events(vec![
                PublishingJobEvent::AttemptFailed {
                    attempt_id: attempt(1),
                    attempt_number: 1,
                    class: ErrorClass::Retryable,
                    code: "503".into(),
                    message: "Service Unavailable".into(),
                    retry_at: Some(retry_at),
                    at: t0(),
                },
                PublishingJobEvent::RetryScheduled { retry_at, at: t0() },
            ]);
    }

    #[test]
    fn a_rate_limit_retries_no_earlier_than_the_platform_allows() {
        let reset = t0() + Duration::seconds(90);
        let rate_limited = failure(ErrorClass::RateLimited).not_before(reset);
        let events = JobTest::with(())
            .given(vec![scheduled(), started(1)])
            .when(PublishingJobCommand::RecordAttemptFailure {
                attempt_id: attempt(1),
                failure: rate_limited,
                at: t0(),
                jitter: 0.3,
            })
            .inspect_result()
            .unwrap();
        assert_eq!(
            events[1],
            PublishingJobEvent::RetryScheduled {
                retry_at: reset,
                at: t0()
            }
        );
    }

    /// Attempt `n` ended with `class`, and a retry was scheduled.
    fn failed_then_retried(n: u32, class: ErrorClass) -> Vec<PublishingJobEvent> {
        vec![
            started(n),
            PublishingJobEvent::AttemptFailed {
                attempt_id: attempt(n as u128),
                attempt_number: n,
                class,
                code: "429".into(),
                message: "wait".into(),
                retry_at: Some(t0()),
                at: t0(),
            },
            PublishingJobEvent::RetryScheduled {
                retry_at: t0(),
                at: t0(),
            },
        ]
    }

    #[test]
    fn waiting_for_a_limit_does_not_use_up_the_retry_budget() {
        // A budget of 2 attempts; 5 waits for a rate limit, then one real failure.
        let mut given = vec![scheduled_with(&["x"], 2)];
        for n in 1..=5 {
            given.extend(failed_then_retried(n, ErrorClass::RateLimited));
        }
        given.extend(failed_then_retried(6, ErrorClass::Retryable));
        JobTest::with(())
            .given(given.clone())
            .when(PublishingJobCommand::StartAttempt {
                attempt_id: attempt(7),
                at: t0(),
            })
            .then_expect_events(vec![started(7)]);

        // The second real failure spends the budget: the job fails.
        given.push(started(7));
        let events = JobTest::with(())
            .given(given)
            .when(PublishingJobCommand::RecordAttemptFailure {
                attempt_id: attempt(7),
                failure: failure(ErrorClass::Retryable),
                at: t0(),
                jitter: 1.0,
            })
            .inspect_result()
            .unwrap();
        assert!(
            matches!(
                &events[1],
                PublishingJobEvent::Failed { message, .. } if message.starts_with("gave up after 2 attempts")
            ),
            "{events:?}"
        );
    }

    #[test]
    fn a_limit_that_never_reopens_gives_up_after_waiting_in_a_row() {
        let mut given = vec![scheduled_with(&["x"], 2)];
        for n in 1..=MAX_LIMIT_WAITS {
            given.extend(failed_then_retried(n, ErrorClass::RateLimited));
        }
        let last = MAX_LIMIT_WAITS + 1;
        given.push(started(last));
        let events = JobTest::with(())
            .given(given)
            .when(PublishingJobCommand::RecordAttemptFailure {
                attempt_id: attempt(u128::from(last)),
                failure: failure(ErrorClass::RateLimited).not_before(t0() + Duration::hours(1)),
                at: t0(),
                jitter: 1.0,
            })
            .inspect_result()
            .unwrap();
        assert!(
            matches!(
                &events[1],
                PublishingJobEvent::Failed { class: ErrorClass::RateLimited, message, .. }
                    if message.contains("100 times in a row")
            ),
            "{events:?}"
        );
    }

    #[test]
    fn attempts_never_exceed_the_retry_budget() {
        let events = JobTest::with(())
            .given(vec![scheduled_with(&["x"], 1), started(1)])
            .when(PublishingJobCommand::RecordAttemptFailure {
                attempt_id: attempt(1),
                failure: failure(ErrorClass::Retryable),
                at: t0(),
                jitter: 1.0,
            })
            .inspect_result()
            .unwrap();
        assert!(matches!(
            &events[1],
            PublishingJobEvent::Failed { message, .. } if message.starts_with("gave up after 1 attempts")
        ));
        JobTest::with(())
            .given(vec![
                scheduled_with(&["x"], 1),
                started(1),
                PublishingJobEvent::RetryScheduled {
                    retry_at: t0(),
                    at: t0(),
                },
            ])
            .when(PublishingJobCommand::StartAttempt {
                attempt_id: attempt(2),
                at: t0(),
            })
            .then_expect_error(PublishingJobError::RetryBudgetExhausted { max_attempts: 1 });
    }

    #[test]
    fn a_content_error_fails_the_job_at_once_with_its_message() {
        JobTest::with(())
            .given(vec![scheduled(), started(1)])
            .when(PublishingJobCommand::RecordAttemptFailure {
                attempt_id: attempt(1),
                failure: PlatformFailure::new(ErrorClass::Permanent, "403", "duplicate content"),
                at: t0(),
                jitter: 1.0,
            })
            .then_expect_events(vec![
                PublishingJobEvent::AttemptFailed {
                    attempt_id: attempt(1),
                    attempt_number: 1,
                    class: ErrorClass::Permanent,
                    code: "403".into(),
                    message: "duplicate content".into(),
                    retry_at: None,
                    at: t0(),
                },
                PublishingJobEvent::Failed {
                    class: ErrorClass::Permanent,
                    code: "403".into(),
                    message: "duplicate content".into(),
                    at: t0(),
                },
            ]);
    }

    #[test]
    fn an_auth_failure_retries_at_once_with_a_refresh_and_a_second_one_needs_reauthorization() {
        let job = PublishingJob::default();
        let mut job = [scheduled(), started(1)].into_iter().fold(job, |mut j, e| {
            j.apply(e);
            j
        });
        let events = job
            .decide(PublishingJobCommand::RecordAttemptFailure {
                attempt_id: attempt(1),
                failure: failure(ErrorClass::Auth),
                at: t0(),
                jitter: 1.0,
            })
            .unwrap();
        assert_eq!(
            events[1],
            PublishingJobEvent::RetryScheduled {
                retry_at: t0(),
                at: t0()
            }
        );
        events.into_iter().for_each(|e| job.apply(e));
        assert_eq!(
            job.next_step(t0(), false),
            NextStep::StartAttempt {
                refresh_token_first: true
            }
        );
        job.apply(started(2));
        let events = job
            .decide(PublishingJobCommand::RecordAttemptFailure {
                attempt_id: attempt(2),
                failure: failure(ErrorClass::Auth),
                at: t0(),
                jitter: 1.0,
            })
            .unwrap();
        assert!(matches!(
            &events[1],
            PublishingJobEvent::Failed {
                class: ErrorClass::ReauthorizationRequired,
                ..
            }
        ));
    }

    #[test]
    fn a_failed_lookup_of_an_unknown_outcome_backs_off_and_sends_nothing() {
        let unknown = PublishingJobEvent::OutcomeUnknown {
            attempt_id: attempt(1),
            reason: "timeout".into(),
            at: t0(),
        };
        let refused = PlatformFailure::new(
            ErrorClass::ReauthorizationRequired,
            "10",
            "reconnect to grant threads_read_replies",
        );
        let lookup_failed =
            |failure: &PlatformFailure| PublishingJobCommand::RecordReconciliationFailure {
                attempt_id: attempt(1),
                failure: failure.clone(),
                at: t0(),
                jitter: 1.0,
            };
        let failed_lookup = |retry_at| PublishingJobEvent::ReconciliationFailed {
            attempt_id: attempt(1),
            class: ErrorClass::ReauthorizationRequired,
            code: "10".into(),
            message: "reconnect to grant threads_read_replies".into(),
            retry_at,
            at: t0(),
        };
        // The first failure waits the base backoff (2 s at full jitter), the third 2 s × 2².
        JobTest::with(())
            .given(vec![scheduled(), started(1), unknown.clone()])
            .when(lookup_failed(&refused))
            .then_expect_events(vec![failed_lookup(t0() + Duration::seconds(2))]);
        let twice = vec![
            scheduled(),
            started(1),
            unknown.clone(),
            failed_lookup(t0() + Duration::seconds(2)),
            failed_lookup(t0() + Duration::seconds(4)),
        ];
        JobTest::with(())
            .given(twice.clone())
            .when(lookup_failed(&refused))
            .then_expect_events(vec![failed_lookup(t0() + Duration::seconds(8))]);
        // A platform that says when to come back is obeyed.
        let later = t0() + Duration::minutes(30);
        let mut limited = refused.clone();
        limited.not_before = Some(later);
        JobTest::with(())
            .given(vec![scheduled(), started(1), unknown.clone()])
            .when(lookup_failed(&limited))
            .then_expect_events(vec![failed_lookup(later)]);
        // The job waits for the lookup, then looks again; it never starts a new attempt.
        let job = replay(twice);
        assert_eq!(
            job.next_step(t0(), false),
            NextStep::WaitUntil(t0() + Duration::seconds(4))
        );
        assert_eq!(
            job.next_step(t0() + Duration::seconds(5), false),
            NextStep::Reconcile {
                attempt_id: attempt(1),
                part_index: 0
            }
        );
        // Only an unknown outcome is looked up.
        JobTest::with(())
            .given(vec![scheduled(), started(1)])
            .when(lookup_failed(&refused))
            .then_expect_error(PublishingJobError::InvalidState {
                status: "publishing",
                action: "be reconciled",
            });
    }

    #[test]
    fn an_unknown_outcome_must_be_reconciled_before_a_new_attempt() {
        let unknown = PublishingJobEvent::OutcomeUnknown {
            attempt_id: attempt(1),
            reason: "timeout".into(),
            at: t0(),
        };
        JobTest::with(())
            .given(vec![scheduled(), started(1), unknown.clone()])
            .when(PublishingJobCommand::StartAttempt {
                attempt_id: attempt(2),
                at: t0(),
            })
            .then_expect_error(PublishingJobError::ReconcileFirst);
        JobTest::with(())
            .given(vec![scheduled(), started(1), unknown.clone()])
            .when(PublishingJobCommand::RecordReconciliation {
                attempt_id: attempt(1),
                found: Some(FoundPost {
                    post_id: "5".into(),
                    url: "u5".into(),
                }),
                at: t0(),
            })
            .then_expect_events(vec![
                PublishingJobEvent::Reconciled {
                    attempt_id: attempt(1),
                    part_index: 0,
                    found_post_id: Some("5".into()),
                    at: t0(),
                },
                PublishingJobEvent::Published {
                    attempt_id: attempt(1),
                    post_ids: vec!["5".into()],
                    first_post_url: "u5".into(),
                    at: t0(),
                },
            ]);
        JobTest::with(())
            .given(vec![scheduled(), started(1), unknown])
            .when(PublishingJobCommand::RecordReconciliation {
                attempt_id: attempt(1),
                found: None,
                at: t0(),
            })
            .then_expect_events(vec![
                PublishingJobEvent::Reconciled {
                    attempt_id: attempt(1),
                    part_index: 0,
                    found_post_id: None,
                    at: t0(),
                },
                PublishingJobEvent::RetryScheduled {
                    retry_at: t0(),
                    at: t0(),
                },
            ]);
    }

    #[test]
    fn next_step_recovers_an_attempt_whose_worker_died() {
        let mut job = PublishingJob::default();
        job.apply(scheduled());
        job.apply(started(1));
        assert_eq!(job.next_step(t0(), true), NextStep::Nothing);
        assert_eq!(
            job.next_step(t0(), false),
            NextStep::DeclareOutcomeUnknown {
                attempt_id: attempt(1)
            }
        );
    }

    #[test]
    fn a_failed_job_can_be_retried_with_a_fresh_budget_and_others_cannot() {
        JobTest::with(())
            .given(vec![
                scheduled(),
                started(1),
                PublishingJobEvent::Failed {
                    class: ErrorClass::Permanent,
                    code: "403".into(),
                    message: "m".into(),
                    at: t0(),
                },
            ])
            .when(PublishingJobCommand::Retry { at: t0() })
            .then_expect_events(vec![PublishingJobEvent::RetryRequested {
                max_attempts: 4,
                at: t0(),
            }]);
        JobTest::with(())
            .given(vec![scheduled()])
            .when(PublishingJobCommand::Retry { at: t0() })
            .then_expect_error(PublishingJobError::InvalidState {
                status: "scheduled",
                action: "be retried (only failed jobs can)",
            });
    }

    #[test]
    fn given_a_job_retried_as_often_as_allowed_when_retried_again_then_refused() {
        let failed = || PublishingJobEvent::Failed {
            class: ErrorClass::Permanent,
            code: "403".into(),
            message: "m".into(),
            at: t0(),
        };
        let mut history = vec![scheduled(), started(1), failed()];
        for n in 0..MAX_MANUAL_RETRIES {
            history.push(PublishingJobEvent::RetryRequested {
                max_attempts: 1 + (n + 1) * 3,
                at: t0(),
            });
            history.push(started(n + 2));
            history.push(failed());
        }
        // One retry fewer: still allowed, with a fresh budget on top of the attempts spent.
        let mut allowed = history.clone();
        allowed.truncate(history.len() - 3);
        let mut job = PublishingJob::default();
        for event in allowed.clone() {
            job.apply(event);
        }
        assert_eq!(job.manual_retries, MAX_MANUAL_RETRIES - 1);
        JobTest::with(())
            .given(allowed)
            .when(PublishingJobCommand::Retry { at: t0() })
            .then_expect_events(vec![PublishingJobEvent::RetryRequested {
                max_attempts: job.spent_attempts() + job.max_attempts,
                at: t0(),
            }]);
        JobTest::with(())
            .given(history)
            .when(PublishingJobCommand::Retry { at: t0() })
            .then_expect_error(PublishingJobError::ManualRetriesExhausted {
                retries: MAX_MANUAL_RETRIES,
            });
    }

    #[test]
    fn commands_to_a_job_that_does_not_exist_are_refused() {
        JobTest::with(())
            .given_no_previous_events()
            .when(PublishingJobCommand::Cancel { at: t0() })
            .then_expect_error(PublishingJobError::NotFound);
    }

    #[test]
    fn a_stale_attempt_cannot_record_results() {
        JobTest::with(())
            .given(vec![scheduled(), started(1)])
            .when(PublishingJobCommand::RecordPostCreated {
                attempt_id: attempt(9),
                part_index: 0,
                post_id: "1".into(),
                url: "u".into(),
                at: t0(),
            })
            .then_expect_error(PublishingJobError::StaleAttempt(attempt(9)));
    }
}
