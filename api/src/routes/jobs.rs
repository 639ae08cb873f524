//! Publishing, scheduling and following jobs.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use herald_domain::publishing_job::{
    PublishingJobCommand, PublishingJobEvent, SchedulePublish, DEFAULT_MAX_ATTEMPTS,
};
use herald_domain::{
    ConnectionId, Content, ContentOverride, ErrorClass, JobId, MediaKind, Platform, PublishingJob,
    VideoProbe,
};
use herald_infrastructure::store::CommandMetadata;
use herald_projections::jobs::{JobFilter, JobView};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{AuthUser, RequestId};
use crate::problem::ApiError;
use crate::routes::connections::parse_platform;
use crate::runtime::Herald;

const MAX_TARGETS: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Connections to publish to: one job each.
    connection_ids: Vec<String>,
    content: Content,
    /// What some targets publish differently, keyed by platform (`"reddit"`) or connection id;
    /// a connection's entry applies over its platform's.
    #[serde(default)]
    overrides: BTreeMap<String, ContentOverride>,
    /// Attempts allowed per job (1-20).
    max_attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    connection_ids: Vec<String>,
    content: Content,
    #[serde(default)]
    overrides: BTreeMap<String, ContentOverride>,
    max_attempts: Option<u32>,
    /// RFC 3339 with an offset, e.g. `2026-12-01T09:00:00+01:00`.
    publish_at: String,
}

/// What a request asks to publish, whether now or later.
struct Submission {
    connection_ids: Vec<String>,
    content: Content,
    overrides: BTreeMap<String, ContentOverride>,
    max_attempts: Option<u32>,
    publish_at: Option<DateTime<Utc>>,
}

/// RFC 3339 with an offset; a time without one is refused rather than guessed. `field` names
/// the parameter in the error.
pub(crate) fn parse_time(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(
                "validation-error",
                format!("{field} '{raw}' must be RFC 3339 with an offset, e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00"),
            )
        })
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request(
                "validation-error",
                "Idempotency-Key must be 1-255 visible characters",
            )
        })?;
    Ok(Some(key.to_string()))
}

/// A checked publish target with the content it publishes.
struct Target {
    connection_id: ConnectionId,
    platform: Platform,
    content: Content,
}

/// The user's usable connections named in the request, in order.
async fn load_targets(
    herald: &Herald,
    user: &AuthUser,
    raw_ids: &[String],
) -> Result<Vec<(String, ConnectionId, Platform)>, ApiError> {
    if raw_ids.is_empty() {
        return Err(ApiError::bad_request(
            "validation-error",
            "connection_ids must name at least one connection",
        ));
    }
    if raw_ids.len() > MAX_TARGETS {
        return Err(ApiError::bad_request(
            "validation-error",
            format!("at most {MAX_TARGETS} connections per request"),
        ));
    }
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for raw in raw_ids {
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("connection {raw} does not exist for this user"),
            )
        };
        let connection_id = ConnectionId::parse(raw).map_err(|_| not_found())?;
        if !seen.insert(connection_id) {
            return Err(ApiError::bad_request(
                "validation-error",
                format!("connection {raw} is listed twice"),
            ));
        }
        // Ownership never changes and the publisher checks the status again, so a state up to
        // a second old is enough here.
        let connection = herald
            .connections
            .load_recent(&connection_id.to_string(), Duration::from_secs(1))
            .await?;
        if connection.user_id.as_ref() != Some(&user.0) {
            return Err(not_found());
        }
        let platform = connection.platform.ok_or_else(not_found)?;
        if !connection.is_usable() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "token-expired",
                format!(
                    "connection {raw} is {}: connect the {platform} account again",
                    connection.status.as_str()
                ),
            ));
        }
        targets.push((raw.clone(), connection_id, platform));
    }
    Ok(targets)
}

/// Each target's content: the shared content, then its platform's override, then its
/// connection's. An override that matches no target is refused rather than silently unused.
fn target_contents(
    targets: Vec<(String, ConnectionId, Platform)>,
    content: &Content,
    overrides: &BTreeMap<String, ContentOverride>,
) -> Result<Vec<Target>, ApiError> {
    for key in overrides.keys() {
        let matches = targets.iter().any(|(raw, connection_id, platform)| {
            key == raw || *key == connection_id.to_string() || key == platform.as_str()
        });
        if !matches {
            return Err(ApiError::bad_request(
                "validation-error",
                format!(
                    "overrides.{key} names neither a platform nor a connection of this request"
                ),
            ));
        }
    }
    Ok(targets
        .into_iter()
        .map(|(raw, connection_id, platform)| {
            let by_platform = overrides.get(platform.as_str());
            let by_connection = overrides
                .get(&raw)
                .or_else(|| overrides.get(&connection_id.to_string()));
            let content = by_platform
                .into_iter()
                .chain(by_connection)
                .fold(content.clone(), |content, changes| {
                    content.overridden(changes)
                });
            Target {
                connection_id,
                platform,
                content,
            }
        })
        .collect())
}

/// Distinct media URLs (images, videos, thumbnails) one request may name. Each is resolved and
/// each video's header read before the job is accepted, so this bounds the outbound work a
/// request causes; 50 targets of a 20-image gallery each is already more than any real request.
const MAX_MEDIA_URLS: usize = 100;
/// Distinct videos one request may have probed.
const MAX_VIDEO_PROBES: usize = 25;
/// URL checks or probes of one request running at once.
const MEDIA_CHECK_CONCURRENCY: usize = 4;
/// Every URL check and probe of one request ends within this, however slow the hosts.
const MEDIA_CHECK_DEADLINE: Duration = Duration::from_secs(20);

/// A media URL with the index of the item naming it (for messages).
type NamedUrl = (usize, String);

/// A request's distinct media URLs in order, each with its index in the first target naming
/// it; and, apart, its distinct videos. Refused before any network use when there are more
/// than one request may have checked.
fn distinct_media(targets: &[Target]) -> Result<(Vec<NamedUrl>, Vec<NamedUrl>), ApiError> {
    let mut urls = Vec::new();
    let mut videos = Vec::new();
    let (mut seen, mut seen_videos) = (HashSet::new(), HashSet::new());
    for content in targets.iter().map(|t| &t.content) {
        let thumbnail = content.options.youtube.thumbnail_url.iter();
        for (index, url) in content
            .media
            .iter()
            .map(|m| &m.url)
            .chain(thumbnail)
            .enumerate()
        {
            if seen.insert(url.as_str()) {
                urls.push((index, url.clone()));
            }
        }
        for (index, item) in content.media.iter().enumerate() {
            if item.kind == MediaKind::Video && seen_videos.insert(item.url.as_str()) {
                videos.push((index, item.url.clone()));
            }
        }
    }
    if urls.len() > MAX_MEDIA_URLS {
        return Err(ApiError::bad_request(
            "validation-error",
            format!(
                "a request may name at most {MAX_MEDIA_URLS} different media URLs, and this one names {}: publish in several requests",
                urls.len()
            ),
        ));
    }
    if videos.len() > MAX_VIDEO_PROBES {
        return Err(ApiError::bad_request(
            "validation-error",
            format!(
                "a request may carry at most {MAX_VIDEO_PROBES} different videos, and this one carries {}: publish in several requests",
                videos.len()
            ),
        ));
    }
    Ok((urls, videos))
}

/// Media URLs must not reach Herald's own network (SSRF); checked before anything is stored,
/// and again by the resolver when the media is downloaded. Then each video's header is read,
/// so the platforms' duration, size and frame limits are checked now rather than after upload.
/// A URL several targets share is checked and read once; the request's checks run a few at a
/// time and end within `MEDIA_CHECK_DEADLINE`.
async fn check_media(herald: &Herald, targets: &mut [Target]) -> Result<(), ApiError> {
    use futures::{StreamExt, TryStreamExt};
    let (urls, videos) = distinct_media(targets)?;
    let checks = async {
        futures::stream::iter(urls)
            .map(|(index, url)| async move {
                herald.media.policy().check(&url).await.map_err(|refused| {
                    ApiError::unprocessable(
                        "media-url-refused",
                        format!("media item {index}: {refused}"),
                    )
                })
            })
            .buffer_unordered(MEDIA_CHECK_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        futures::stream::iter(videos)
            .map(|(index, url)| async move {
                let probe = match herald.media.probe_video(&url).await {
                    Ok(probe) => probe,
                    Err(failure) if failure.class == ErrorClass::Permanent => {
                        return Err(ApiError::unprocessable(
                            "media-unreadable",
                            format!("media item {index}: {}", failure.message),
                        ))
                    }
                    // The source may be back by publishing time; the platform will judge it.
                    Err(failure) => {
                        tracing::info!(index, %failure, "video not probed");
                        None
                    }
                };
                Ok((url, probe))
            })
            .buffer_unordered(MEDIA_CHECK_CONCURRENCY)
            .try_collect::<HashMap<String, Option<VideoProbe>>>()
            .await
    };
    let probes = tokio::time::timeout(MEDIA_CHECK_DEADLINE, checks)
        .await
        .map_err(|_| {
            ApiError::unprocessable(
                "media-check-timeout",
                format!(
                    "checking the media URLs did not finish within {} s: make sure their hosts answer promptly, then send the request again",
                    MEDIA_CHECK_DEADLINE.as_secs()
                ),
            )
        })??;
    for item in targets.iter_mut().flat_map(|t| t.content.media.iter_mut()) {
        item.probe = probes.get(&item.url).copied().flatten();
    }
    Ok(())
}

/// Only Herald's own reading of a video counts, never a probe sent in the request.
fn forget_request_probes(targets: &mut [Target]) {
    for item in targets.iter_mut().flat_map(|t| t.content.media.iter_mut()) {
        item.probe = None;
    }
}

/// A user has at most `max_pending_jobs_per_user` jobs not ended at once. Counted from the jobs
/// read model, so requests arriving together may pass it by what the projection has not seen.
async fn check_pending_limit(
    herald: &Herald,
    user: &AuthUser,
    adding: usize,
) -> Result<(), ApiError> {
    let limit = i64::from(herald.config.max_pending_jobs_per_user);
    if limit == 0 {
        return Ok(());
    }
    let pending = herald.job_queries.count_pending(user.0.as_str()).await?;
    if pending + adding as i64 > limit {
        return Err(ApiError::limit_reached(
            format!(
                "you have {pending} jobs scheduled or in flight and may have at most {limit}: wait for some to finish, or cancel some"
            ),
            "HERALD_MAX_PENDING_JOBS_PER_USER",
        ));
    }
    Ok(())
}

/// Every target's content against its platform's rules, so a refusal names the connection and
/// nothing is stored for any.
fn check_rules(herald: &Herald, targets: &[Target]) -> Result<(), ApiError> {
    for target in targets {
        herald
            .rules
            .rules_for(target.platform)
            .prepare(&target.content)
            .map_err(|e| {
                ApiError::unprocessable(
                    "content-invalid",
                    format!(
                        "for connection {} ({}): {e}",
                        target.connection_id, target.platform
                    ),
                )
            })?;
    }
    Ok(())
}

async fn accept(
    herald: &Herald,
    user: AuthUser,
    request_id: RequestId,
    req: &HttpRequest,
    submission: Submission,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(req)?;
    let Submission {
        connection_ids,
        content,
        overrides,
        max_attempts,
        publish_at,
    } = submission;
    let requested_at = Utc::now();
    if let Some(at) = publish_at.filter(|at| *at < requested_at) {
        return Err(ApiError::bad_request(
            "validation-error",
            format!("publish_at {at} is in the past"),
        ));
    }
    let targets = load_targets(herald, &user, &connection_ids).await?;
    check_pending_limit(herald, &user, targets.len()).await?;
    let mut targets = target_contents(targets, &content, &overrides)?;
    forget_request_probes(&mut targets);
    // Counts, sizes and text first, with nothing fetched; then the media; then the rules again
    // with what the videos' headers say.
    check_rules(herald, &targets)?;
    check_media(herald, &mut targets).await?;
    check_rules(herald, &targets)?;
    let metadata = CommandMetadata::actor(user.0.as_str()).correlated(request_id.0);
    let mut jobs = Vec::new();
    for target in targets {
        let job_id = match &key {
            Some(key) => JobId::for_idempotency_key(&user.0, key, &target.connection_id),
            None => JobId::new(),
        };
        let command = PublishingJobCommand::SchedulePublish(SchedulePublish {
            job_id,
            user_id: user.0.clone(),
            connection_id: target.connection_id,
            platform: target.platform,
            content: target.content,
            publish_at,
            max_attempts: max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            requested_at,
            rules: Box::new(herald.rules.override_for(target.platform)),
        });
        herald
            .jobs
            .create(&job_id.to_string(), command, &metadata)
            .await?;
        // A replayed Idempotency-Key may name a job that has moved on: report its real state.
        let (status, due_at) = if key.is_some() {
            let job = herald.jobs.load(&job_id.to_string()).await?;
            (job.status.as_str(), job.due_at)
        } else {
            ("scheduled", Some(publish_at.unwrap_or(requested_at)))
        };
        jobs.push(json!({
            "job_id": job_id,
            "connection_id": target.connection_id,
            "platform": target.platform,
            "status": status,
            "publish_at": due_at,
        }));
    }
    Ok(HttpResponse::Accepted().json(json!({ "jobs": jobs })))
}

/// `POST /publish`: one content (with per-target overrides) to many connections, now.
pub async fn publish(
    herald: web::Data<Herald>,
    user: AuthUser,
    request_id: RequestId,
    req: HttpRequest,
    body: web::Json<PublishRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let submission = Submission {
        connection_ids: body.connection_ids,
        content: body.content,
        overrides: body.overrides,
        max_attempts: body.max_attempts,
        publish_at: None,
    };
    accept(&herald, user, request_id, &req, submission).await
}

/// `POST /schedule`: one content to many connections, at a time.
pub async fn schedule(
    herald: web::Data<Herald>,
    user: AuthUser,
    request_id: RequestId,
    req: HttpRequest,
    body: web::Json<ScheduleRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let submission = Submission {
        publish_at: Some(parse_time("publish_at", &body.publish_at)?),
        connection_ids: body.connection_ids,
        content: body.content,
        overrides: body.overrides,
        max_attempts: body.max_attempts,
    };
    accept(&herald, user, request_id, &req, submission).await
}

fn job_json(view: &JobView) -> Value {
    json!({
        "job_id": view.job_id,
        "connection_id": view.connection_id,
        "platform": view.platform,
        "status": view.status,
        "text_preview": view.text_preview,
        "parts": view.part_count,
        "media_count": view.media_count,
        "publish_at": view.publish_at,
        "attempts": view.attempts,
        "max_attempts": view.max_attempts,
        "limit_waits": view.limit_waits,
        "upload_progress_percent": view.upload_percent(),
        "post_id": view.post_id,
        "post_url": view.post_url,
        "post_ids": view.post_ids,
        "last_error": view.last_error_class.as_ref().map(|class| json!({
            "class": class,
            "code": view.last_error_code,
            "message": view.last_error_message,
        })),
        "retry_at": view.retry_at,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
        "published_at": view.published_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    platform: Option<String>,
    limit: Option<i64>,
}

const STATUSES: [&str; 7] = [
    "scheduled",
    "publishing",
    "retry_scheduled",
    "outcome_unknown",
    "published",
    "failed",
    "cancelled",
];

/// `GET /jobs?status=&platform=&limit=`.
pub async fn list(
    herald: web::Data<Herald>,
    user: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(status) = query.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::bad_request(
            "validation-error",
            format!("unknown status '{status}'; one of {}", STATUSES.join(", ")),
        ));
    }
    let platform = query.platform.as_deref().map(parse_platform).transpose()?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "validation-error",
            "limit must be 1-500",
        ));
    }
    let filter = JobFilter {
        status: query.status.clone(),
        platform: platform.map(|p| p.as_str().to_string()),
        limit,
    };
    let jobs = herald.job_queries.list(user.0.as_str(), &filter).await?;
    Ok(HttpResponse::Ok().json(json!({ "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    /// RFC 3339 with an offset: the job as it stood then.
    as_of: Option<String>,
}

/// `GET /jobs/{id}?as_of=`: the job from the jobs read model; or, with `as_of`, the job as it
/// stood then, folded from its events up to that time (see [`events_until`]).
///
/// Read-your-writes: the read model lags a 202 by the log's delay (most on Kafka). For a job it
/// does not hold yet but the event store does, the answer waits for the read model up to
/// `READ_YOUR_WRITES_WAIT`, then is folded from the job's events the same way the read model
/// folds them; so a client never sees 404 for a job it was just told about.
pub async fn get(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let as_of = query
        .as_of
        .as_deref()
        .map(|raw| parse_time("as_of", raw))
        .transpose()?;
    if as_of.is_none() {
        if let Some(view) = herald.job_queries.get(user.0.as_str(), &path).await? {
            return Ok(HttpResponse::Ok().json(job_json(&view)));
        }
    }
    let (job_id, events) = owned_job_events(&herald, &user, &path).await?;
    let events = match as_of {
        Some(as_of) => events_until(&events, as_of),
        None => {
            if let Some(view) = projected_soon(&herald, &user, &job_id).await? {
                return Ok(HttpResponse::Ok().json(job_json(&view)));
            }
            &events[..]
        }
    };
    // Before its `JobScheduled`, the job did not exist yet.
    let view = JobView::folded(&job_id.to_string(), events.iter().map(|e| &e.payload))
        .ok_or_else(|| ApiError::not_found("job"))?;
    Ok(HttpResponse::Ok().json(job_json(&view)))
}

/// How long a read of a job the event store holds waits for the jobs read model to show it.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(2);

/// The job from the read model once it shows it, or `None` after `READ_YOUR_WRITES_WAIT`.
async fn projected_soon(
    herald: &Herald,
    user: &AuthUser,
    job_id: &JobId,
) -> Result<Option<JobView>, ApiError> {
    let deadline = std::time::Instant::now() + READ_YOUR_WRITES_WAIT;
    loop {
        let view = herald
            .job_queries
            .get(user.0.as_str(), &job_id.to_string())
            .await?;
        if view.is_some() || std::time::Instant::now() >= deadline {
            return Ok(view);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type JobEvents = Vec<EventEnvelope<PublishingJob>>;

/// The user's job's events, upcast to their latest shape by the event store, or 404 (also for
/// someone else's job, and for an id with no events).
async fn owned_job_events(
    herald: &Herald,
    user: &AuthUser,
    raw: &str,
) -> Result<(JobId, JobEvents), ApiError> {
    let job_id = JobId::parse(raw).map_err(|_| ApiError::not_found("job"))?;
    let events = herald.jobs.events(&job_id.to_string()).await?;
    let owner = events.iter().find_map(|e| match &e.payload {
        PublishingJobEvent::JobScheduled { user_id, .. } => Some(user_id),
        _ => None,
    });
    if owner != Some(&user.0) {
        return Err(ApiError::not_found("job"));
    }
    Ok((job_id, events))
}

/// The job's events that count as having happened at or before `until`: its stream up to (not
/// including) the first event that occurred after `until`. An event without a time of its own
/// (upload progress, `UploadChunked`) goes with the event before it. Cutting at the first later
/// event instead of filtering keeps the answer a prefix of the stream, so folding it gives a
/// state the job really was in, even when two workers' clocks disagree by a little.
fn events_until(
    events: &[EventEnvelope<PublishingJob>],
    until: DateTime<Utc>,
) -> &[EventEnvelope<PublishingJob>] {
    let end = events
        .iter()
        .position(|e| e.payload.occurred_at().is_some_and(|at| at > until))
        .unwrap_or(events.len());
    &events[..end]
}

/// The user's job from the event store, or 404 (also for someone else's job).
async fn owned_job(
    herald: &Herald,
    user: &AuthUser,
    raw: &str,
) -> Result<(JobId, PublishingJob), ApiError> {
    let job_id = JobId::parse(raw).map_err(|_| ApiError::not_found("job"))?;
    let job = herald.jobs.load(&job_id.to_string()).await?;
    if job.user_id.as_ref() != Some(&user.0) {
        return Err(ApiError::not_found("job"));
    }
    Ok((job_id, job))
}

/// Runs a user's command on their own job.
async fn command_own_job(
    herald: &Herald,
    user: &AuthUser,
    request_id: RequestId,
    raw_id: &str,
    command: PublishingJobCommand,
) -> Result<JobId, ApiError> {
    let (job_id, _) = owned_job(herald, user, raw_id).await?;
    let metadata = CommandMetadata::actor(user.0.as_str()).correlated(request_id.0);
    herald
        .jobs
        .execute(&job_id.to_string(), command, &metadata)
        .await?;
    Ok(job_id)
}

/// `POST /jobs/{id}/retry`: try a failed job again.
pub async fn retry(
    herald: web::Data<Herald>,
    user: AuthUser,
    request_id: RequestId,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = PublishingJobCommand::Retry { at: Utc::now() };
    let job_id = command_own_job(&herald, &user, request_id, &path, command).await?;
    Ok(HttpResponse::Accepted().json(json!({"job_id": job_id, "status": "retry_scheduled"})))
}

/// `DELETE /jobs/{id}`: cancel a job that has not started publishing.
pub async fn cancel(
    herald: web::Data<Herald>,
    user: AuthUser,
    request_id: RequestId,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let command = PublishingJobCommand::Cancel { at: Utc::now() };
    let job_id = command_own_job(&herald, &user, request_id, &path, command).await?;
    Ok(HttpResponse::Ok().json(json!({"job_id": job_id, "status": "cancelled"})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// RFC 3339 with an offset: only the events up to then.
    until: Option<String>,
}

/// `GET /jobs/{id}/history?until=`: every event of the job in order — the audit trail — or
/// those up to `until` (see [`events_until`]).
pub async fn history(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let until = query
        .until
        .as_deref()
        .map(|raw| parse_time("until", raw))
        .transpose()?;
    let (job_id, events) = owned_job_events(&herald, &user, &path).await?;
    let events = match until {
        Some(until) => events_until(&events, until),
        None => &events[..],
    };
    let events: Vec<Value> = events
        .iter()
        .map(|envelope| {
            use cqrs_es::DomainEvent;
            json!({
                "sequence": envelope.sequence,
                "event_type": envelope.payload.event_type(),
                "event_version": envelope.payload.event_version(),
                "occurred_at": envelope.payload.occurred_at(),
                "data": shown_event(&envelope.payload),
                "metadata": envelope.metadata,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "job_id": job_id, "events": events })))
}

/// A job event as its history shows it: as stored, except an upload session, which is sealed
/// with the vault key and means nothing to anyone but the publisher (ciphertext stays out of
/// responses too).
fn shown_event(event: &PublishingJobEvent) -> Value {
    let mut shown = json!(event);
    if let Some(opened) = shown
        .get_mut("UploadSessionOpened")
        .and_then(Value::as_object_mut)
    {
        opened.remove("sealed_session");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(media: &[(&str, &str)]) -> Target {
        let media: Vec<Value> = media
            .iter()
            .map(|(url, kind)| json!({"url": url, "kind": kind, "mime_type": "video/mp4"}))
            .collect();
        Target {
            connection_id: ConnectionId::new(),
            platform: Platform::X,
            content: serde_json::from_value(json!({"text": "t", "media": media})).unwrap(),
        }
    }

    fn envelope(sequence: usize, event: PublishingJobEvent) -> EventEnvelope<PublishingJob> {
        EventEnvelope {
            aggregate_id: "job".into(),
            sequence,
            payload: event,
            metadata: HashMap::new(),
        }
    }

    #[test]
    fn a_cut_keeps_the_prefix_up_to_the_first_later_event_with_untimed_events_going_with_their_predecessor(
    ) {
        let time = |seconds: i64| DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap();
        let attempt_id = herald_domain::AttemptId::from_uuid(uuid::Uuid::from_u128(1));
        let started = |at| PublishingJobEvent::AttemptStarted {
            attempt_id,
            attempt_number: 1,
            at,
        };
        let events = vec![
            envelope(1, started(time(10))),
            envelope(
                2,
                PublishingJobEvent::UploadChunked {
                    attempt_id,
                    media_index: 0,
                    bytes_sent: 1,
                    total_bytes: 2,
                },
            ),
            envelope(3, PublishingJobEvent::Cancelled { at: time(20) }),
            // A clock a little behind: still after the cut once an earlier event is.
            envelope(4, PublishingJobEvent::Cancelled { at: time(15) }),
        ];
        let cut_at = |seconds| events_until(&events, time(seconds)).len();
        assert_eq!(cut_at(9), 0, "before the first event");
        assert_eq!(cut_at(10), 2, "at an event: it and the progress after it");
        assert_eq!(cut_at(19), 2);
        assert_eq!(
            cut_at(20),
            4,
            "the late clock's event follows its predecessor"
        );
    }

    #[test]
    fn media_urls_are_counted_once_each_and_capped_per_request() {
        let shared = [
            ("https://cdn.example/a.mp4", "video"),
            ("https://cdn.example/b.png", "image"),
        ];
        let (urls, videos) = distinct_media(&[target(&shared), target(&shared)]).unwrap();
        assert_eq!((urls.len(), videos.len()), (2, 1));

        let images: Vec<String> = (0..=MAX_MEDIA_URLS)
            .map(|i| format!("https://cdn.example/{i}.png"))
            .collect();
        let many: Vec<Target> = images
            .chunks(20)
            .map(|chunk| {
                target(
                    &chunk
                        .iter()
                        .map(|u| (u.as_str(), "image"))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let refused = distinct_media(&many).unwrap_err();
        assert_eq!(refused.kind, "validation-error");
        assert!(
            refused.detail.contains(&format!("{}", MAX_MEDIA_URLS + 1)),
            "{refused}"
        );

        let clips: Vec<String> = (0..=MAX_VIDEO_PROBES)
            .map(|i| format!("https://cdn.example/{i}.mp4"))
            .collect();
        let many: Vec<Target> = clips
            .iter()
            .map(|u| target(&[(u.as_str(), "video")]))
            .collect();
        let refused = distinct_media(&many).unwrap_err();
        assert!(refused.detail.contains("different videos"), "{refused}");
    }
}
