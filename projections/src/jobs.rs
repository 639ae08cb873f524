//! The jobs read model: what `GET /jobs` and `GET /jobs/{id}` return.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use herald_domain::publishing_job::PublishingJobEvent;
use herald_domain::ErrorClass;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::{from_millis, millis, rows_per_statement, values_list, Projection, StreamRun};

/// One job as users see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub job_id: String,
    pub user_id: String,
    pub connection_id: String,
    pub platform: String,
    pub status: String,
    pub text_preview: String,
    pub part_count: i64,
    pub media_count: i64,
    pub publish_at: Option<DateTime<Utc>>,
    /// Attempts started, waits for a limit included.
    pub attempts: i64,
    pub max_attempts: i64,
    /// Attempts that ended waiting for a rate limit or quota; they do not count against
    /// `max_attempts`.
    pub limit_waits: i64,
    /// Bytes the platform holds and total per media item: an upload resumed by a later attempt
    /// keeps its confirmed bytes, and media uploaded by an earlier attempt stays complete.
    pub uploads: BTreeMap<usize, (u64, u64)>,
    pub post_id: Option<String>,
    pub post_url: Option<String>,
    pub post_ids: Vec<String>,
    pub last_error_class: Option<String>,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

impl JobView {
    /// Upload progress in percent, if the job uploads media.
    pub fn upload_percent(&self) -> Option<u8> {
        let (sent, total) = self
            .uploads
            .values()
            .fold((0u64, 0u64), |(s, t), (sent, total)| (s + sent, t + total));
        (total > 0).then(|| ((sent.min(total) * 100) / total) as u8)
    }

    /// The view of a job as its `JobScheduled` event describes it (`None` for other events).
    pub fn scheduled(job_id: &str, event: &PublishingJobEvent) -> Option<JobView> {
        use PublishingJobEvent as E;
        let E::JobScheduled {
            user_id,
            connection_id,
            platform,
            content,
            publish_at,
            max_attempts,
            at,
            ..
        } = event
        else {
            return None;
        };
        let first = content.parts.first().cloned().unwrap_or_default();
        Some(JobView {
            job_id: job_id.to_string(),
            user_id: user_id.to_string(),
            connection_id: connection_id.to_string(),
            platform: platform.to_string(),
            status: "scheduled".into(),
            text_preview: first.chars().take(140).collect(),
            part_count: content.parts.len() as i64,
            media_count: content.media.len() as i64,
            publish_at: Some(*publish_at),
            attempts: 0,
            max_attempts: *max_attempts as i64,
            limit_waits: 0,
            uploads: BTreeMap::new(),
            post_id: None,
            post_url: None,
            post_ids: vec![],
            last_error_class: None,
            last_error_code: None,
            last_error_message: None,
            retry_at: None,
            created_at: *at,
            updated_at: *at,
            published_at: None,
        })
    }

    /// The view after `events`, read from the start of the job's stream: the fold the projection
    /// applies, for reading a job from the event store (its state at a past time, or before the
    /// projection has caught up). `None` when the events hold no `JobScheduled`.
    pub fn folded<'e>(
        job_id: &str,
        events: impl IntoIterator<Item = &'e PublishingJobEvent>,
    ) -> Option<JobView> {
        let mut view: Option<JobView> = None;
        for event in events {
            if let Some(scheduled) = JobView::scheduled(job_id, event) {
                view = Some(scheduled);
            } else if let Some(current) = view.as_mut() {
                current.record(event);
            }
        }
        view
    }

    /// Applies one later event of the job's stream.
    pub fn record(&mut self, event: &PublishingJobEvent) {
        use PublishingJobEvent as E;
        if let Some(at) = event.occurred_at() {
            self.updated_at = at;
        }
        match event {
            E::JobScheduled { .. } => {}
            E::AttemptStarted { attempt_number, .. } => {
                // Uploads are not cleared: an attempt reuses the media earlier ones completed
                // and resumes open sessions (each upload it starts says from where).
                self.status = "publishing".into();
                self.attempts = *attempt_number as i64;
                self.retry_at = None;
            }
            E::UploadStarted {
                media_index,
                total_bytes,
                resumed_from,
                ..
            } => {
                self.uploads
                    .insert(*media_index, (*resumed_from, *total_bytes));
            }
            E::UploadSessionOpened { media_index, .. } => {
                // A session starts with nothing confirmed (as in the aggregate).
                if let Some(progress) = self.uploads.get_mut(media_index) {
                    progress.0 = 0;
                }
            }
            E::UploadChunked {
                media_index,
                bytes_sent,
                total_bytes,
                ..
            } => {
                self.uploads
                    .insert(*media_index, (*bytes_sent, *total_bytes));
            }
            E::UploadCompleted { media_index, .. } => {
                if let Some(progress) = self.uploads.get_mut(media_index) {
                    progress.0 = progress.1;
                }
            }
            E::ThreadPartPublished { post_id, url, .. } => {
                self.post_ids.push(post_id.clone());
                self.post_url.get_or_insert_with(|| url.clone());
            }
            E::Published {
                post_ids,
                first_post_url,
                at,
                ..
            } => {
                self.status = "published".into();
                self.post_id = post_ids.first().cloned();
                self.post_url = Some(first_post_url.clone());
                self.post_ids = post_ids.clone();
                self.published_at = Some(*at);
                self.retry_at = None;
            }
            E::AttemptFailed {
                class,
                code,
                message,
                retry_at,
                ..
            } => {
                if *class == ErrorClass::RateLimited {
                    self.limit_waits += 1;
                }
                self.last_error_class = Some(class.as_str().to_string());
                self.last_error_code = Some(code.clone());
                self.last_error_message = Some(message.clone());
                self.retry_at = *retry_at;
            }
            E::RetryScheduled { retry_at, .. } => {
                self.status = "retry_scheduled".into();
                self.retry_at = Some(*retry_at);
            }
            E::Failed {
                class,
                code,
                message,
                ..
            } => {
                self.status = "failed".into();
                self.last_error_class = Some(class.as_str().to_string());
                self.last_error_code = Some(code.clone());
                self.last_error_message = Some(message.clone());
                self.retry_at = None;
            }
            E::Cancelled { .. } => self.status = "cancelled".into(),
            E::Rescheduled { publish_at, .. } => self.publish_at = Some(*publish_at),
            E::OutcomeUnknown { .. } => self.status = "outcome_unknown".into(),
            E::Reconciled { .. } => {}
            E::ReconciliationFailed {
                class,
                code,
                message,
                retry_at,
                ..
            } => {
                // Still unknown: the error says why Herald cannot tell yet, and when it looks again.
                self.last_error_class = Some(class.as_str().to_string());
                self.last_error_code = Some(code.clone());
                self.last_error_message = Some(format!(
                    "Herald cannot tell yet whether the post was created, so it sends nothing: {message}"
                ));
                self.retry_at = Some(*retry_at);
            }
            E::RetryRequested { max_attempts, at } => {
                // The job uploads everything again (its media ids and sessions may be stale).
                self.uploads.clear();
                self.status = "retry_scheduled".into();
                self.max_attempts = *max_attempts as i64;
                self.retry_at = Some(*at);
            }
        }
    }

    fn from_row(row: &AnyRow) -> anyhow::Result<Self> {
        let opt_time = |name: &str| -> anyhow::Result<Option<DateTime<Utc>>> {
            Ok(row.try_get::<Option<i64>, _>(name)?.map(from_millis))
        };
        Ok(JobView {
            job_id: row.try_get("job_id")?,
            user_id: row.try_get("user_id")?,
            connection_id: row.try_get("connection_id")?,
            platform: row.try_get("platform")?,
            status: row.try_get("status")?,
            text_preview: row.try_get("text_preview")?,
            part_count: row.try_get::<i32, _>("part_count")? as i64,
            media_count: row.try_get::<i32, _>("media_count")? as i64,
            publish_at: opt_time("publish_at_ms")?,
            attempts: row.try_get::<i32, _>("attempts")? as i64,
            max_attempts: row.try_get::<i32, _>("max_attempts")? as i64,
            limit_waits: row.try_get::<i32, _>("limit_waits")? as i64,
            uploads: serde_json::from_str(&row.try_get::<String, _>("uploads")?)?,
            post_id: row.try_get("post_id")?,
            post_url: row.try_get("post_url")?,
            post_ids: serde_json::from_str(&row.try_get::<String, _>("post_ids")?)?,
            last_error_class: row.try_get("last_error_class")?,
            last_error_code: row.try_get("last_error_code")?,
            last_error_message: row.try_get("last_error_message")?,
            retry_at: opt_time("retry_at_ms")?,
            created_at: from_millis(row.try_get("created_at_ms")?),
            updated_at: from_millis(row.try_get("updated_at_ms")?),
            published_at: opt_time("published_at_ms")?,
        })
    }

    async fn save(&self, tx: &mut Transaction<'static, Any>) -> anyhow::Result<()> {
        save_all(tx, std::slice::from_ref(self)).await
    }
}

/// Inserts or updates views, many per statement.
async fn save_all(tx: &mut Transaction<'static, Any>, views: &[JobView]) -> anyhow::Result<()> {
    const COLUMNS: usize = 23;
    for chunk in views.chunks(rows_per_statement(tx, COLUMNS)) {
        let sql = format!(
            "INSERT INTO job_views (job_id, user_id, connection_id, platform, status, text_preview, part_count,
                media_count, publish_at_ms, attempts, max_attempts, uploads, post_id, post_url, post_ids,
                last_error_class, last_error_code, last_error_message, retry_at_ms, created_at_ms, updated_at_ms,
                published_at_ms, limit_waits)
             VALUES {}
             ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, publish_at_ms = excluded.publish_at_ms,
                attempts = excluded.attempts, max_attempts = excluded.max_attempts, uploads = excluded.uploads,
                post_id = excluded.post_id, post_url = excluded.post_url, post_ids = excluded.post_ids,
                last_error_class = excluded.last_error_class, last_error_code = excluded.last_error_code,
                last_error_message = excluded.last_error_message, retry_at_ms = excluded.retry_at_ms,
                updated_at_ms = excluded.updated_at_ms, published_at_ms = excluded.published_at_ms,
                limit_waits = excluded.limit_waits",
            values_list(COLUMNS, chunk.len(), 1)
        );
        let mut query = sqlx::query(&sql).persistent(chunk.len() == 1);
        for view in chunk {
            query = query
                .bind(&view.job_id)
                .bind(&view.user_id)
                .bind(&view.connection_id)
                .bind(&view.platform)
                .bind(&view.status)
                .bind(&view.text_preview)
                .bind(view.part_count as i32)
                .bind(view.media_count as i32)
                .bind(view.publish_at.map(millis))
                .bind(view.attempts as i32)
                .bind(view.max_attempts as i32)
                .bind(serde_json::to_string(&view.uploads)?)
                .bind(&view.post_id)
                .bind(&view.post_url)
                .bind(serde_json::to_string(&view.post_ids)?)
                .bind(&view.last_error_class)
                .bind(&view.last_error_code)
                .bind(&view.last_error_message)
                .bind(view.retry_at.map(millis))
                .bind(millis(view.created_at))
                .bind(millis(view.updated_at))
                .bind(view.published_at.map(millis))
                .bind(view.limit_waits as i32);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

const SELECT_JOB: &str = "SELECT job_id, user_id, connection_id, platform, status, text_preview, part_count,
    media_count, publish_at_ms, attempts, max_attempts, uploads, post_id, post_url, post_ids,
    last_error_class, last_error_code, last_error_message, retry_at_ms, created_at_ms, updated_at_ms,
    published_at_ms, limit_waits FROM job_views";

/// Filters for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<String>,
    pub platform: Option<String>,
    pub limit: i64,
}

/// Queries over the jobs read model. Every query is scoped to one user.
#[derive(Debug, Clone)]
pub struct JobQueries {
    pool: AnyPool,
}

impl JobQueries {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// The user's job, or `None` if it does not exist or belongs to someone else.
    pub async fn get(&self, user_id: &str, job_id: &str) -> anyhow::Result<Option<JobView>> {
        let row = sqlx::query(&format!("{SELECT_JOB} WHERE job_id = $1 AND user_id = $2"))
            .bind(job_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(JobView::from_row).transpose()
    }

    /// How many of the user's jobs have not ended yet (scheduled, publishing, waiting to retry
    /// or to learn an outcome).
    pub async fn count_pending(&self, user_id: &str) -> anyhow::Result<i64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job_views WHERE user_id = $1
             AND status IN ('new', 'scheduled', 'publishing', 'retry_scheduled', 'outcome_unknown')",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// The user's jobs, newest first.
    pub async fn list(&self, user_id: &str, filter: &JobFilter) -> anyhow::Result<Vec<JobView>> {
        let rows = sqlx::query(&format!(
            "{SELECT_JOB} WHERE user_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR platform = $3)
             ORDER BY created_at_ms DESC, job_id LIMIT $4"
        ))
        .bind(user_id)
        .bind(filter.status.as_deref())
        .bind(filter.platform.as_deref())
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(JobView::from_row).collect()
    }
}

/// Builds `job_views`.
#[derive(Debug, Default)]
pub struct JobsProjection;

async fn load(tx: &mut Transaction<'static, Any>, job_id: &str) -> anyhow::Result<Option<JobView>> {
    let row = sqlx::query(&format!("{SELECT_JOB} WHERE job_id = $1"))
        .bind(job_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(JobView::from_row).transpose()
}

#[async_trait::async_trait]
impl Projection for JobsProjection {
    type Event = PublishingJobEvent;

    fn name(&self) -> &'static str {
        "jobs"
    }

    fn aggregate_type(&self) -> &'static str {
        "PublishingJob"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["job_views"]
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        aggregate_id: &str,
        _sequence: i64,
        event: &PublishingJobEvent,
    ) -> anyhow::Result<()> {
        folded(tx, aggregate_id, [event]).await?.save(tx).await
    }

    async fn apply_runs(
        &self,
        tx: &mut Transaction<'static, Any>,
        runs: &[StreamRun<PublishingJobEvent>],
    ) -> anyhow::Result<()> {
        let mut views = Vec::with_capacity(runs.len());
        for run in runs {
            let events: Vec<&PublishingJobEvent> = run.events.iter().map(|(_, e)| e).collect();
            views.push(folded(tx, &run.stream_id, events).await?);
        }
        save_all(tx, &views).await
    }
}

/// The job's view after `events`: built from its `JobScheduled`, or from the stored view when
/// the run starts later in the stream (read once, however many events follow).
async fn folded<'e>(
    tx: &mut Transaction<'static, Any>,
    job_id: &str,
    events: impl IntoIterator<Item = &'e PublishingJobEvent>,
) -> anyhow::Result<JobView> {
    let mut view: Option<JobView> = None;
    for event in events {
        if let Some(scheduled) = JobView::scheduled(job_id, event) {
            view = Some(scheduled);
            continue;
        }
        let current = match view.as_mut() {
            Some(current) => current,
            None => view.insert(load(tx, job_id).await?.ok_or_else(|| {
                anyhow::anyhow!("job {job_id} has events but no JobScheduled was applied")
            })?),
        };
        current.record(event);
    }
    view.ok_or_else(|| anyhow::anyhow!("no events to apply to job {job_id}"))
}

#[cfg(test)]
mod tests {
    use herald_domain::{
        AttemptId, ConnectionId, JobId, MediaItem, MediaKind, Platform, PreparedContent, UserId,
    };

    use super::*;

    const TOTAL: u64 = 1_000_000;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn attempt(n: u128) -> AttemptId {
        AttemptId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn video_scheduled() -> PublishingJobEvent {
        let user = UserId::parse("alice").unwrap();
        PublishingJobEvent::JobScheduled {
            job_id: JobId::from_uuid(uuid::Uuid::from_u128(7)),
            connection_id: ConnectionId::for_account(&user, Platform::Youtube, "channel"),
            user_id: user,
            platform: Platform::Youtube,
            content: PreparedContent {
                parts: vec!["a video".into()],
                media: vec![MediaItem {
                    url: "https://cdn.example.com/v.mp4".into(),
                    kind: MediaKind::Video,
                    mime_type: "video/mp4".into(),
                    probe: None,
                }],
                ..PreparedContent::default()
            },
            publish_at: at(),
            max_attempts: 3,
            at: at(),
        }
    }

    fn video_job() -> JobView {
        JobView::scheduled("job", &video_scheduled()).expect("a JobScheduled event makes a view")
    }

    fn record(view: &mut JobView, events: Vec<PublishingJobEvent>) {
        for event in events {
            view.record(&event);
        }
    }

    fn attempt_started(n: u32) -> PublishingJobEvent {
        PublishingJobEvent::AttemptStarted {
            attempt_id: attempt(n.into()),
            attempt_number: n,
            at: at(),
        }
    }

    fn upload_started(n: u32, resumed_from: u64) -> PublishingJobEvent {
        PublishingJobEvent::UploadStarted {
            attempt_id: attempt(n.into()),
            media_index: 0,
            total_bytes: TOTAL,
            resumed_from,
            at: at(),
        }
    }

    fn chunked(n: u32, bytes_sent: u64) -> PublishingJobEvent {
        PublishingJobEvent::UploadChunked {
            attempt_id: attempt(n.into()),
            media_index: 0,
            bytes_sent,
            total_bytes: TOTAL,
        }
    }

    fn session_opened(n: u32) -> PublishingJobEvent {
        PublishingJobEvent::UploadSessionOpened {
            attempt_id: attempt(n.into()),
            media_index: 0,
            sealed_session: "sealed".into(),
            at: at(),
        }
    }

    #[test]
    fn folding_from_the_stream_start_gives_what_the_projection_builds_event_by_event() {
        let mut by_event = video_job();
        let later = vec![
            attempt_started(1),
            upload_started(1, 0),
            chunked(1, 250_000),
        ];
        let scheduled = video_scheduled();
        assert_eq!(
            JobView::folded("job", later.iter()),
            None,
            "no JobScheduled yet"
        );
        let folded = JobView::folded("job", std::iter::once(&scheduled).chain(&later));
        record(&mut by_event, later);
        assert_eq!(folded, Some(by_event));
    }

    #[test]
    fn a_resumed_upload_shows_the_confirmed_bytes_instead_of_starting_at_zero() {
        let mut view = video_job();
        record(
            &mut view,
            vec![
                attempt_started(1),
                upload_started(1, 0),
                session_opened(1),
                chunked(1, 500_000),
                // The worker dies; the next attempt resumes the session.
                attempt_started(2),
            ],
        );
        assert_eq!(view.upload_percent(), Some(50));
        record(&mut view, vec![upload_started(2, 500_000)]);
        assert_eq!(view.upload_percent(), Some(50));
        record(&mut view, vec![chunked(2, 750_000)]);
        assert_eq!(view.upload_percent(), Some(75));
    }

    #[test]
    fn a_new_session_or_a_user_retry_starts_the_progress_again() {
        let mut view = video_job();
        record(
            &mut view,
            vec![
                attempt_started(1),
                session_opened(1),
                upload_started(1, 0),
                chunked(1, 500_000),
                attempt_started(2),
                // The platform lost the session: a new one holds nothing yet.
                session_opened(2),
            ],
        );
        assert_eq!(view.upload_percent(), Some(0));
        record(
            &mut view,
            vec![
                upload_started(2, 0),
                chunked(2, TOTAL),
                PublishingJobEvent::RetryRequested {
                    max_attempts: 3,
                    at: at(),
                },
            ],
        );
        assert_eq!(view.upload_percent(), None);
    }

    #[test]
    fn a_failed_lookup_shows_why_the_outcome_is_still_unknown_and_when_herald_looks_again() {
        let mut view = video_job();
        let retry_at = at() + chrono::TimeDelta::seconds(8);
        record(
            &mut view,
            vec![
                attempt_started(1),
                PublishingJobEvent::OutcomeUnknown {
                    attempt_id: attempt(1),
                    reason: "timeout".into(),
                    at: at(),
                },
                PublishingJobEvent::ReconciliationFailed {
                    attempt_id: attempt(1),
                    class: ErrorClass::ReauthorizationRequired,
                    code: "10".into(),
                    message: "reconnect the account".into(),
                    retry_at,
                    at: at(),
                },
            ],
        );
        assert_eq!(view.status, "outcome_unknown");
        assert_eq!(view.retry_at, Some(retry_at));
        assert_eq!(view.last_error_code.as_deref(), Some("10"));
        assert!(view
            .last_error_message
            .as_deref()
            .is_some_and(|m| m.contains("sends nothing") && m.ends_with("reconnect the account")));
    }
}
