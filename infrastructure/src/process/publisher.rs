//! The publisher: claims due jobs from the durable schedule, records the intent of every attempt
//! before the irreversible call, uploads media, creates the post(s), and records the outcome —
//! `Published`, a classified failure, or an unknown outcome that is reconciled against the
//! platform before anything is sent again (ARCHITECTURE invariant 4).
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::publishing_job::{
    FoundPost, NextStep, PublishingJobCommand, PublishingJobError,
};
use herald_domain::{AttemptId, Connection, ErrorClass, JobId, PlatformFailure, PublishingJob};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::platforms::{
    Adapters, MediaUpload, PlatformAdapter, PostDraft, PostError, UploadProgress, UploadResume,
};
use crate::rate_limit::SharedRateLimits;
use crate::scheduler::DueJobs;
use crate::secret::Secret;
use crate::store::{Aggregates, CommandMetadata};
use crate::tokens::{RefreshWhen, TokenService};
use crate::vault::Sealer;

/// How long a job whose state says there is nothing to do is left alone (the due-jobs
/// projection removes its row meanwhile).
const SETTLE: chrono::Duration = chrono::Duration::seconds(5);
/// How long to wait before looking at a job again after our own infrastructure failed.
const INTERNAL_BACKOFF: chrono::Duration = chrono::Duration::seconds(2);
/// How old a connection's state may be when read for its account (which never changes).
const CONNECTION_STATE_AGE: Duration = Duration::from_secs(1);
/// How often the dispatcher looks for due jobs when nothing wakes it.
const POLL: Duration = Duration::from_millis(250);

/// Runs publishing attempts for due jobs.
#[derive(Clone)]
pub struct Publisher {
    jobs: Aggregates<PublishingJob>,
    connections: Aggregates<Connection>,
    adapters: Adapters,
    tokens: TokenService,
    due: DueJobs,
    db: Db,
    /// Seals upload session handles before they go into events.
    sealer: Sealer,
    concurrency: usize,
}

type StepResult = Result<Continue, anyhow::Error>;

/// Whether to look at the job again right away, or release it until a time.
enum Continue {
    Again,
    ReleaseUntil(DateTime<Utc>),
}

impl Publisher {
    pub fn new(
        jobs: Aggregates<PublishingJob>,
        connections: Aggregates<Connection>,
        adapters: Adapters,
        tokens: TokenService,
        due: DueJobs,
        db: Db,
        concurrency: usize,
    ) -> Self {
        let sealer = tokens.sealer().clone();
        Self {
            jobs,
            connections,
            adapters,
            tokens,
            due,
            db,
            sealer,
            concurrency: concurrency.max(1),
        }
    }

    /// Claims and processes due jobs until `shutdown`. `wake` is notified when a job may have
    /// become due (a new schedule row), so a job due now starts without waiting for the poll.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let free = permits.available_permits();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                match self.due.claim(Utc::now(), free as i64).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::warn!(error = %error, "could not claim due jobs");
                        Vec::new()
                    }
                }
            };
            let got_work = !claimed.is_empty();
            for job_id in claimed {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let publisher = self.clone();
                tokio::spawn(async move {
                    publisher.process(job_id).await;
                    drop(permit);
                });
            }
            if got_work && permits.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        // Let running attempts finish their current step; their leases expire otherwise.
        let _ = permits.acquire_many(self.concurrency as u32).await;
    }

    /// Works on one claimed job until it is done or waiting, renewing the lease meanwhile.
    #[tracing::instrument(skip(self), fields(job = %job_id))]
    pub async fn process(&self, job_id: JobId) {
        let heartbeat = {
            let due = self.due.clone();
            let every = due.lease() / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(error) = due.renew(&job_id).await {
                        tracing::warn!(error = %error, "could not renew the job lease");
                    }
                }
            })
        };
        let release_at = loop {
            match self.step(&job_id).await {
                Ok(Continue::Again) => continue,
                Ok(Continue::ReleaseUntil(at)) => break at,
                Err(error) => {
                    tracing::warn!(error = ?error, "publishing step failed; will look again");
                    break Utc::now() + INTERNAL_BACKOFF;
                }
            }
        };
        heartbeat.abort();
        if let Err(error) = self.due.release(&job_id, release_at).await {
            tracing::warn!(error = %error, "could not release the job lease; it expires by itself");
        }
    }

    async fn execute(
        &self,
        job_id: &JobId,
        command: PublishingJobCommand,
    ) -> Result<(), cqrs_es::AggregateError<PublishingJobError>> {
        self.jobs
            .execute(
                &job_id.to_string(),
                command,
                &CommandMetadata::actor("publisher"),
            )
            .await
    }

    async fn step(&self, job_id: &JobId) -> StepResult {
        let job = self.jobs.load(&job_id.to_string()).await?;
        let now = Utc::now();
        // We hold the lease, so an attempt in `Publishing` belongs to a worker that is gone.
        match job.next_step(now, false) {
            NextStep::Nothing => Ok(Continue::ReleaseUntil(now + SETTLE)),
            NextStep::WaitUntil(at) => Ok(Continue::ReleaseUntil(at)),
            NextStep::DeclareOutcomeUnknown { attempt_id } => {
                self.execute(
                    job_id,
                    PublishingJobCommand::RecordOutcomeUnknown {
                        attempt_id,
                        reason:
                            "the worker running this attempt stopped before recording its outcome"
                                .into(),
                        at: now,
                    },
                )
                .await?;
                Ok(Continue::Again)
            }
            NextStep::Reconcile {
                attempt_id,
                part_index,
            } => self.reconcile(job_id, &job, attempt_id, part_index).await,
            NextStep::StartAttempt {
                refresh_token_first,
            } => {
                let attempt_id = AttemptId::new();
                match self
                    .execute(
                        job_id,
                        PublishingJobCommand::StartAttempt {
                            attempt_id,
                            at: now,
                        },
                    )
                    .await
                {
                    Ok(()) => {}
                    Err(cqrs_es::AggregateError::UserError(PublishingJobError::NotDueYet {
                        due_at,
                    })) => return Ok(Continue::ReleaseUntil(due_at)),
                    Err(error) => return Err(error.into()),
                }
                metrics::counter!("herald_publish_attempts_total", "platform" => platform_label(&job))
                    .increment(1);
                if let Some(due_at) = job.due_at {
                    // How late the attempt starts after the job was due (the claim's delay).
                    let late = (now - due_at).num_milliseconds().max(0) as f64 / 1000.0;
                    metrics::histogram!("herald_scheduler_delay_seconds").record(late);
                }
                let job = self.jobs.load(&job_id.to_string()).await?;
                self.attempt(job_id, &job, attempt_id, refresh_token_first)
                    .await
            }
        }
    }

    fn adapter_for(
        &self,
        job: &PublishingJob,
    ) -> Result<Arc<dyn PlatformAdapter>, PlatformFailure> {
        let platform = job.platform.ok_or_else(|| {
            PlatformFailure::new(
                ErrorClass::Permanent,
                "job_incomplete",
                "the job has no platform",
            )
        })?;
        self.adapters.get(platform)
    }

    /// The account the job publishes as (its connection's) and that account's shared limits.
    async fn account_and_limits(
        &self,
        job: &PublishingJob,
    ) -> anyhow::Result<(AccountProfile, SharedRateLimits)> {
        let connection_id = job
            .connection_id
            .ok_or_else(|| anyhow::anyhow!("job has no connection"))?;
        let connection = self
            .connections
            .load_recent(&connection_id.to_string(), CONNECTION_STATE_AGE)
            .await?;
        let account = connection.account.unwrap_or_default();
        let platform = job
            .platform
            .ok_or_else(|| anyhow::anyhow!("job has no platform"))?;
        let limits = SharedRateLimits::new(self.db.clone(), platform, &account.account_id);
        Ok((account, limits))
    }

    fn draft(job: &PublishingJob, account: &AccountProfile, part_index: usize) -> PostDraft {
        let content = job.content.clone().unwrap_or_default();
        let first = part_index == 0;
        PostDraft {
            account: account.clone(),
            text: content.parts.get(part_index).cloned().unwrap_or_default(),
            title: content.title,
            link: if first { content.link } else { None },
            media_ids: if first {
                job.uploaded_media.values().cloned().collect()
            } else {
                vec![]
            },
            media: if first { content.media } else { vec![] },
            poll: if first { content.poll } else { None },
            reply_to: part_index
                .checked_sub(1)
                .and_then(|i| job.posted_parts.get(i).cloned()),
            options: *content.options,
        }
    }

    /// Where an earlier attempt left the upload of media item `media_index`, if it opened a
    /// resumable session. A session that cannot be opened (another vault key) starts afresh.
    fn resume_for(&self, job: &PublishingJob, media_index: usize) -> Option<UploadResume> {
        let session = job.upload_sessions.get(&media_index)?;
        let job_id = job.job_id?;
        match self
            .sealer
            .open_string(job_id.to_string().as_bytes(), &session.sealed_session)
        {
            Ok(handle) => Some(UploadResume {
                session: Secret::new(handle),
                bytes_confirmed: session.bytes_confirmed,
            }),
            Err(error) => {
                tracing::warn!(error = %error, media_index, "cannot open the upload session; starting a new upload");
                None
            }
        }
    }

    async fn fail_attempt(
        &self,
        job_id: &JobId,
        job: &PublishingJob,
        attempt_id: AttemptId,
        failure: PlatformFailure,
    ) -> StepResult {
        tracing::info!(class = failure.class.as_str(), code = %failure.code, "attempt failed");
        metrics::counter!(
            "herald_publish_attempt_failures_total",
            "platform" => platform_label(job),
            "error_class" => failure.class.as_str()
        )
        .increment(1);
        self.execute(
            job_id,
            PublishingJobCommand::RecordAttemptFailure {
                attempt_id,
                failure,
                at: Utc::now(),
                jitter: rand::random::<f64>(),
            },
        )
        .await?;
        Ok(Continue::Again)
    }

    async fn attempt(
        &self,
        job_id: &JobId,
        job: &PublishingJob,
        attempt_id: AttemptId,
        refresh_first: bool,
    ) -> StepResult {
        let (adapter, (account, limits)) = match self.adapter_for(job) {
            Ok(adapter) => (adapter, self.account_and_limits(job).await?),
            Err(failure) => return self.fail_attempt(job_id, job, attempt_id, failure).await,
        };
        let connection_id = job.connection_id.expect("a scheduled job has a connection");
        let mut token = match self.token(&connection_id, refresh_first).await {
            Ok(token) => token,
            Err(failure) => return self.fail_attempt(job_id, job, attempt_id, failure).await,
        };
        let post = Self::draft(job, &account, 0);
        for (media_index, item) in post.media.iter().enumerate() {
            if job.uploaded_media.contains_key(&media_index) {
                continue;
            }
            let progress = ProgressRecorder {
                publisher: self,
                job_id: *job_id,
                attempt_id,
                media_index,
            };
            let resume = self.resume_for(job, media_index);
            let upload = MediaUpload {
                item,
                index: media_index,
                count: post.media.len(),
                post: &PostDraft {
                    media_ids: vec![],
                    ..post.clone()
                },
                resume: resume.as_ref(),
            };
            match adapter
                .upload_media(&token, &upload, &limits, &progress)
                .await
            {
                Ok(platform_media_id) => {
                    self.execute(
                        job_id,
                        PublishingJobCommand::RecordUploadCompleted {
                            attempt_id,
                            media_index,
                            platform_media_id,
                            at: Utc::now(),
                        },
                    )
                    .await?;
                }
                Err(failure) => return self.fail_attempt(job_id, job, attempt_id, failure).await,
            }
        }
        let mut job = self.jobs.load(&job_id.to_string()).await?;
        for part_index in job.next_part_index()..job.part_count() {
            let draft = Self::draft(&job, &account, part_index);
            let mut result = adapter.create_post(&token, &draft, &limits).await;
            // One refresh on a 401, then one more try with the new token.
            if let Err(PostError::Failed(failure)) = &result {
                if failure.class == ErrorClass::Auth {
                    match self.tokens.access_token(&connection_id, Some(&token)).await {
                        Ok(fresh) => {
                            token = fresh;
                            result = adapter.create_post(&token, &draft, &limits).await;
                        }
                        Err(refresh_failure) => {
                            return self
                                .fail_attempt(job_id, &job, attempt_id, refresh_failure)
                                .await
                        }
                    }
                }
            }
            match result {
                Ok(post) => {
                    tracing::info!(part_index, post_id = %post.post_id, "post created");
                    metrics::counter!("herald_posts_created_total", "platform" => platform_label(&job))
                        .increment(1);
                    self.execute(
                        job_id,
                        PublishingJobCommand::RecordPostCreated {
                            attempt_id,
                            part_index,
                            post_id: post.post_id,
                            url: post.url,
                            at: Utc::now(),
                        },
                    )
                    .await?;
                    job = self.jobs.load(&job_id.to_string()).await?;
                }
                Err(PostError::OutcomeUnknown(reason)) => {
                    tracing::warn!(%reason, part_index, "post outcome unknown; reconciling");
                    self.execute(
                        job_id,
                        PublishingJobCommand::RecordOutcomeUnknown {
                            attempt_id,
                            reason,
                            at: Utc::now(),
                        },
                    )
                    .await?;
                    return Ok(Continue::Again);
                }
                // A platform may create the post and still answer 5xx; then the retry is refused
                // as a duplicate. Ask the platform instead of failing the job.
                Err(PostError::Failed(failure))
                    if failure.is_duplicate_post()
                        && job.last_failure == Some(ErrorClass::Retryable) =>
                {
                    self.execute(
                        job_id,
                        PublishingJobCommand::RecordOutcomeUnknown {
                            attempt_id,
                            reason: "refused as a duplicate after an ambiguous failure".into(),
                            at: Utc::now(),
                        },
                    )
                    .await?;
                    return Ok(Continue::Again);
                }
                Err(PostError::Failed(failure)) => {
                    return self.fail_attempt(job_id, &job, attempt_id, failure).await;
                }
            }
        }
        Ok(Continue::Again)
    }

    async fn token(
        &self,
        connection_id: &herald_domain::ConnectionId,
        refresh_first: bool,
    ) -> Result<Secret, PlatformFailure> {
        if refresh_first {
            // The platform already refused the token once: a refusal now needs the user.
            return self
                .tokens
                .refresh(connection_id, RefreshWhen::Always)
                .await
                .map(|g| g.access_token)
                .map_err(|failure| {
                    if failure.class == ErrorClass::Retryable {
                        failure
                    } else {
                        PlatformFailure {
                            class: ErrorClass::ReauthorizationRequired,
                            ..failure
                        }
                    }
                });
        }
        self.tokens.access_token(connection_id, None).await
    }

    async fn reconcile(
        &self,
        job_id: &JobId,
        job: &PublishingJob,
        attempt_id: AttemptId,
        part_index: usize,
    ) -> StepResult {
        let adapter = match self.adapter_for(job) {
            Ok(adapter) => adapter,
            Err(failure) => anyhow::bail!("cannot reconcile: {failure}"),
        };
        let (account, limits) = self.account_and_limits(job).await?;
        let connection_id = job.connection_id.expect("a scheduled job has a connection");
        let since = self
            .attempt_started_at(job_id, attempt_id)
            .await?
            .unwrap_or_else(Utc::now);
        let token = match self.tokens.access_token(&connection_id, None).await {
            Ok(token) => token,
            Err(failure) => {
                tracing::warn!(%failure, "no token to reconcile with; will try again");
                return self
                    .reconciliation_failed(job_id, attempt_id, failure)
                    .await;
            }
        };
        let draft = Self::draft(job, &account, part_index);
        match adapter.find_post(&token, since, &draft, &limits).await {
            Ok(found) => {
                self.execute(
                    job_id,
                    PublishingJobCommand::RecordReconciliation {
                        attempt_id,
                        found: found.map(|post| FoundPost {
                            post_id: post.post_id,
                            url: post.url,
                        }),
                        at: Utc::now(),
                    },
                )
                .await?;
                Ok(Continue::Again)
            }
            Err(failure) => {
                tracing::warn!(%failure, "reconciliation failed; will try again");
                self.reconciliation_failed(job_id, attempt_id, failure)
                    .await
            }
        }
    }

    /// Nothing may be sent before the platform answers: the job records why it could not
    /// look, and looks again when its backoff says (the job's next step).
    async fn reconciliation_failed(
        &self,
        job_id: &JobId,
        attempt_id: AttemptId,
        failure: PlatformFailure,
    ) -> StepResult {
        self.execute(
            job_id,
            PublishingJobCommand::RecordReconciliationFailure {
                attempt_id,
                failure,
                at: Utc::now(),
                jitter: rand::random::<f64>(),
            },
        )
        .await?;
        Ok(Continue::Again)
    }

    async fn attempt_started_at(
        &self,
        job_id: &JobId,
        attempt_id: AttemptId,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let events = self.jobs.events(&job_id.to_string()).await?;
        Ok(events
            .into_iter()
            .find_map(|envelope| match envelope.payload {
                herald_domain::publishing_job::PublishingJobEvent::AttemptStarted {
                    attempt_id: id,
                    at,
                    ..
                } if id == attempt_id => Some(at),
                _ => None,
            }))
    }
}

/// Turns adapter progress callbacks into `UploadStarted` / `UploadChunked` events.
struct ProgressRecorder<'a> {
    publisher: &'a Publisher,
    job_id: JobId,
    attempt_id: AttemptId,
    media_index: usize,
}

#[async_trait::async_trait]
impl UploadProgress for ProgressRecorder<'_> {
    async fn started(&self, total_bytes: u64) {
        let command = PublishingJobCommand::RecordUploadStarted {
            attempt_id: self.attempt_id,
            media_index: self.media_index,
            total_bytes,
            at: Utc::now(),
        };
        if let Err(error) = self.publisher.execute(&self.job_id, command).await {
            tracing::warn!(error = %error, "could not record upload start");
        }
    }

    async fn session_opened(&self, session: &Secret) {
        let sealed_session = self
            .publisher
            .sealer
            .seal_to_string(self.job_id.to_string().as_bytes(), session.expose());
        let command = PublishingJobCommand::RecordUploadSessionOpened {
            attempt_id: self.attempt_id,
            media_index: self.media_index,
            sealed_session,
            at: Utc::now(),
        };
        if let Err(error) = self.publisher.execute(&self.job_id, command).await {
            tracing::warn!(error = %error, "could not record the upload session");
        }
    }

    async fn chunk_sent(&self, bytes_sent: u64, total_bytes: u64) {
        let command = PublishingJobCommand::RecordUploadProgress {
            attempt_id: self.attempt_id,
            media_index: self.media_index,
            bytes_sent,
            total_bytes,
        };
        if let Err(error) = self.publisher.execute(&self.job_id, command).await {
            tracing::warn!(error = %error, "could not record upload progress");
        }
    }
}

/// The job's platform as a metric label (a fixed set of eight names).
fn platform_label(job: &PublishingJob) -> &'static str {
    job.platform.map_or("unknown", |p| p.as_str())
}
