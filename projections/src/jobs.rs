//! The jobs read model: what `GET /jobs` and `GET /jobs/{id}` return.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use herald_domain::publishing_job::PublishingJobEvent;
use herald_domain::ErrorClass;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::{from_millis, millis, Projection};

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
    /// Bytes sent and total per media item of the current attempt.
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
    /// Upload progress of the current attempt in percent, if it uploads media.
    pub fn upload_percent(&self) -> Option<u8> {
        let (sent, total) = self
            .uploads
            .values()
            .fold((0u64, 0u64), |(s, t), (sent, total)| (s + sent, t + total));
        (total > 0).then(|| ((sent.min(total) * 100) / total) as u8)
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
        sqlx::query(
            "INSERT INTO job_views (job_id, user_id, connection_id, platform, status, text_preview, part_count,
                media_count, publish_at_ms, attempts, max_attempts, uploads, post_id, post_url, post_ids,
                last_error_class, last_error_code, last_error_message, retry_at_ms, created_at_ms, updated_at_ms,
                published_at_ms, limit_waits)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
             ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, publish_at_ms = excluded.publish_at_ms,
                attempts = excluded.attempts, max_attempts = excluded.max_attempts, uploads = excluded.uploads,
                post_id = excluded.post_id, post_url = excluded.post_url, post_ids = excluded.post_ids,
                last_error_class = excluded.last_error_class, last_error_code = excluded.last_error_code,
                last_error_message = excluded.last_error_message, retry_at_ms = excluded.retry_at_ms,
                updated_at_ms = excluded.updated_at_ms, published_at_ms = excluded.published_at_ms,
                limit_waits = excluded.limit_waits",
        )
        .bind(&self.job_id)
        .bind(&self.user_id)
        .bind(&self.connection_id)
        .bind(&self.platform)
        .bind(&self.status)
        .bind(&self.text_preview)
        .bind(self.part_count as i32)
        .bind(self.media_count as i32)
        .bind(self.publish_at.map(millis))
        .bind(self.attempts as i32)
        .bind(self.max_attempts as i32)
        .bind(serde_json::to_string(&self.uploads)?)
        .bind(&self.post_id)
        .bind(&self.post_url)
        .bind(serde_json::to_string(&self.post_ids)?)
        .bind(&self.last_error_class)
        .bind(&self.last_error_code)
        .bind(&self.last_error_message)
        .bind(self.retry_at.map(millis))
        .bind(millis(self.created_at))
        .bind(millis(self.updated_at))
        .bind(self.published_at.map(millis))
        .bind(self.limit_waits as i32)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
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
        use PublishingJobEvent as E;
        if let E::JobScheduled {
            user_id,
            connection_id,
            platform,
            content,
            publish_at,
            max_attempts,
            at,
            ..
        } = event
        {
            let first = content.parts.first().cloned().unwrap_or_default();
            let view = JobView {
                job_id: aggregate_id.to_string(),
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
            };
            return view.save(tx).await;
        }
        let Some(mut view) = load(tx, aggregate_id).await? else {
            anyhow::bail!("job {aggregate_id} has events but no JobScheduled was applied");
        };
        if let Some(at) = event.occurred_at() {
            view.updated_at = at;
        }
        match event {
            E::JobScheduled { .. } | E::UploadSessionOpened { .. } => {}
            E::AttemptStarted { attempt_number, .. } => {
                view.status = "publishing".into();
                view.attempts = *attempt_number as i64;
                view.uploads.clear();
                view.retry_at = None;
            }
            E::UploadStarted {
                media_index,
                total_bytes,
                ..
            } => {
                view.uploads.insert(*media_index, (0, *total_bytes));
            }
            E::UploadChunked {
                media_index,
                bytes_sent,
                total_bytes,
                ..
            } => {
                view.uploads
                    .insert(*media_index, (*bytes_sent, *total_bytes));
            }
            E::UploadCompleted { media_index, .. } => {
                if let Some(progress) = view.uploads.get_mut(media_index) {
                    progress.0 = progress.1;
                }
            }
            E::ThreadPartPublished { post_id, url, .. } => {
                view.post_ids.push(post_id.clone());
                view.post_url.get_or_insert_with(|| url.clone());
            }
            E::Published {
                post_id,
                url,
                post_ids,
                at,
                ..
            } => {
                view.status = "published".into();
                view.post_id = Some(post_id.clone());
                view.post_url = Some(url.clone());
                view.post_ids = post_ids.clone();
                view.published_at = Some(*at);
                view.retry_at = None;
            }
            E::AttemptFailed {
                class,
                code,
                message,
                retry_at,
                ..
            } => {
                if *class == ErrorClass::RateLimited {
                    view.limit_waits += 1;
                }
                view.last_error_class = Some(class.as_str().to_string());
                view.last_error_code = Some(code.clone());
                view.last_error_message = Some(message.clone());
                view.retry_at = *retry_at;
            }
            E::RetryScheduled { retry_at, .. } => {
                view.status = "retry_scheduled".into();
                view.retry_at = Some(*retry_at);
            }
            E::Failed {
                class,
                code,
                message,
                ..
            } => {
                view.status = "failed".into();
                view.last_error_class = Some(class.as_str().to_string());
                view.last_error_code = Some(code.clone());
                view.last_error_message = Some(message.clone());
                view.retry_at = None;
            }
            E::Cancelled { .. } => view.status = "cancelled".into(),
            E::Rescheduled { publish_at, .. } => view.publish_at = Some(*publish_at),
            E::OutcomeUnknown { .. } => view.status = "outcome_unknown".into(),
            E::Reconciled { .. } => {}
            E::RetryRequested { max_attempts, at } => {
                view.status = "retry_scheduled".into();
                view.max_attempts = *max_attempts as i64;
                view.retry_at = Some(*at);
            }
        }
        view.save(tx).await
    }
}
