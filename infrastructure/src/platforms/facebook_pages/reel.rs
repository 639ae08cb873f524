//! A Page reel, through Meta's Reels Publishing API
//! (developers.facebook.com/docs/video-api/guides/reels-publishing):
//! 1. `POST /{page-id}/video_reels` with `upload_phase=start` answers `{video_id, upload_url}`;
//! 2. the bytes go to `rupload.facebook.com/video-upload/{version}/{video-id}` with
//!    `Authorization: OAuth <page token>`, `offset` and `file_size` headers (`{"success": true}`),
//!    streamed from the media URL one chunk per request, so at most one chunk is in memory;
//! 3. `upload_phase=finish` with `video_id`, `video_state=PUBLISHED` and `description`
//!    publishes it — the irreversible call, made by `create_post`;
//! 4. `GET /{video-id}?fields=status` until `status.video_status` is `ready` (or `published`):
//!    `uploading_phase`, `processing_phase` and `publishing_phase` each say `complete` or
//!    `error` (with `errors`).
//!
//! `upload_media` does 1–2 and returns `reel:{page-id}:{video-id}`. The session (Page, video
//! and size) is handed to the publisher before the first byte, with the same machinery as Page
//! videos (see [`super::video`]); a resumed upload continues from the bytes Meta says it holds
//! (`uploading_phase.bytes_transfered`, Meta's spelling) or, when it does not say, from what
//! Meta confirmed to Herald. Herald sends the token only to its configured rupload base,
//! whatever `upload_url` names.
//!
//! Meta allows 30 API-published reels per Page in a moving 24 hours, enforced on
//! `/video_reels` when publishing, and recommends that apps enforce it too. Meta reports no
//! count, so Herald counts its own: every finish takes a reservation from the shared gate
//! ([`PublishingQuota`], key `facebook_reels_quota`) across every worker process, and a Page
//! whose reels are used up waits until the oldest leaves the window. Reels published by other
//! apps are not seen; Meta's refusal then holds the job back like any rate limit.
use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, MediaKind, PlatformFailure};
use serde::{Deserialize, Serialize};

use super::video::{resumed, Source, VideoStatus};
use super::{FacebookPagesAdapter, REEL_FINISH, REEL_START, REEL_UPLOAD};
use crate::platforms::http::{self, PlatformApi, SendError};
use crate::platforms::meta::graph;
use crate::platforms::meta::quota::PublishingQuota;
use crate::platforms::x::join;
use crate::platforms::{
    CreatedPost, MediaUpload, PostDraft, PostError, PublishReservation, PublishSettled,
    QuotaReading, RateLimitGate, UploadProgress,
};
use crate::secret::Secret;

/// Rate-limit keys: the Graph calls, the uploads, and the reels-per-24-hours reservation.
const REELS: &str = "facebook_reels";
const REELS_UPLOAD: &str = "facebook_reels_upload";
pub(super) const QUOTA_KEY: &str = "facebook_reels_quota";
/// What to check when Meta cannot use the video.
const REEL_SPEC: &str = "a reel is one MP4 video, 9:16, at least 540x960 pixels, 3 to 90 seconds";

/// What the publisher keeps (sealed) to resume an upload. A Page video's session (which has
/// more fields) is never read as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Session {
    page_id: String,
    video_id: String,
    file_size: u64,
}

#[derive(Debug, Deserialize)]
struct StartBody {
    video_id: String,
}

#[derive(Debug, Default, Deserialize)]
struct SuccessBody {
    #[serde(default)]
    success: bool,
}

/// The media reference of an uploaded reel: `reel:{page-id}:{video-id}`.
pub(super) fn reference(page_id: &str, video_id: &str) -> String {
    format!("reel:{page_id}:{video_id}")
}

/// The Page's reel quota, as configured.
pub(super) fn quota(fb: &FacebookPagesAdapter) -> PublishingQuota {
    PublishingQuota {
        key: QUOTA_KEY,
        platform: "Facebook",
        owner: "Page",
        items: "reels",
        fallback: fb.config.reels_per_day,
        cap: None,
    }
}

/// Meta reports no count of a Page's reels: the reading knows of none, so every reel Herald
/// published in the window counts.
fn reading(quota: &PublishingQuota) -> QuotaReading {
    quota.reading(None, DateTime::<Utc>::UNIX_EPOCH)
}

/// Takes one of the Page's reels of the window, across every worker. Refused, it tells the
/// gate (so other workers refuse at once) and the job when the oldest of Herald's reels leaves
/// the window. Every reel counted is Herald's own: none is "in flight" on top of Meta's count.
async fn take_reel(
    quota: &PublishingQuota,
    limits: &dyn RateLimitGate,
) -> Result<PublishReservation, PlatformFailure> {
    quota.known_free(limits).await?;
    let reading = reading(quota);
    match limits.reserve_publish(QUOTA_KEY, reading).await {
        Ok(reservation) => Ok(reservation),
        Err(full) => {
            // No reel of Herald's is in the window (a limit of 0): look again in an hour.
            let free_at = full
                .frees_at
                .unwrap_or_else(|| Utc::now() + TimeDelta::hours(1));
            limits.observe(QUOTA_KEY, Some(0), Some(free_at)).await;
            Err(quota.used_up(reading.total, 0, free_at))
        }
    }
}

/// Refuses before anything is uploaded when the Page has no reel left in the window: a reel
/// taken and given back at once says so.
async fn room_left(
    fb: &FacebookPagesAdapter,
    limits: &dyn RateLimitGate,
) -> Result<(), PlatformFailure> {
    let reservation = take_reel(&quota(fb), limits).await?;
    limits
        .settle_publish(QUOTA_KEY, &reservation, PublishSettled::NotPublished)
        .await;
    Ok(())
}

/// Uploads the reel's video (resuming `upload.resume`); returns its media reference.
pub(super) async fn upload(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    if upload.count != 1 || upload.item.kind != MediaKind::Video {
        return Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "reel_not_one_video",
            format!("{REEL_SPEC} and nothing else; publish the photos as a feed post"),
        ));
    }
    room_left(fb, limits).await?;
    if let Some((session, recorded)) = resumed::<Session>(upload) {
        progress.started(session.file_size).await;
        let held = held_by_meta(fb, token, &session, limits)
            .await?
            .unwrap_or(recorded);
        if held < session.file_size {
            let mut source = Source::open(&fb.media_source, &upload.item.url, held).await?;
            send(fb, token, &session, &mut source, held, limits, progress).await?;
        }
        return Ok(reference(&session.page_id, &session.video_id));
    }
    let mut source = Source::open(&fb.media_source, &upload.item.url, 0).await?;
    let file_size = source.total()?;
    if file_size == 0 {
        return Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "media_empty",
            "the video at its URL is empty; check the URL",
        ));
    }
    let page_id = &upload.post.account.account_id;
    let request = fb
        .login
        .http()
        .post(fb.url(&format!("{page_id}/video_reels")))
        .bearer_auth(token.expose())
        .form(&[("upload_phase", "start")]);
    let started: StartBody = http::call_json(fb, REELS, limits, request, REEL_START).await?;
    let session = Session {
        page_id: page_id.clone(),
        video_id: started.video_id,
        file_size,
    };
    progress.started(file_size).await;
    let handle = serde_json::to_string(&session).expect("the session serializes");
    progress.session_opened(&Secret::new(handle)).await;
    tracing::debug!(video = %session.video_id, file_size, "facebook reel upload session opened");
    send(fb, token, &session, &mut source, 0, limits, progress).await?;
    Ok(reference(&session.page_id, &session.video_id))
}

/// The bytes Meta says it holds of the reel (`None`: it does not say).
async fn held_by_meta(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    session: &Session,
    limits: &dyn RateLimitGate,
) -> Result<Option<u64>, PlatformFailure> {
    let status = fb.video_status(token, &session.video_id, limits).await?;
    let Some(detail) = status.status else {
        return Ok(None);
    };
    let uploading = detail.uploading_phase.as_ref();
    if uploading.and_then(|p| p.status.as_deref()) == Some("complete") {
        return Ok(Some(session.file_size));
    }
    Ok(uploading.and_then(|p| p.bytes_transfered.map(|o| o.0)))
}

/// Sends the bytes from `offset` to the end, one confirmed chunk per request.
async fn send(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    session: &Session,
    source: &mut Source<'_>,
    mut offset: u64,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<(), PlatformFailure> {
    let url = join(&fb.config.reel_upload_base, &session.video_id);
    let chunk_bytes = fb.config.reel_chunk_bytes.max(1);
    while offset < session.file_size {
        source.seek(offset).await?;
        let len = chunk_bytes.min(session.file_size - offset);
        let chunk = source.take(len as usize).await?;
        if (chunk.len() as u64) < len {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "media_shorter_than_announced",
                format!(
                    "the video at its URL ended after {} bytes although it announced {}; check the file",
                    offset + chunk.len() as u64,
                    session.file_size
                ),
            ));
        }
        let request = graph::rupload_chunk(
            fb.login.http(),
            url.clone(),
            token,
            offset,
            session.file_size,
            fb.config.graph.request_timeout,
            chunk,
        );
        let sent: SuccessBody =
            http::call_json(fb, REELS_UPLOAD, limits, request, REEL_UPLOAD).await?;
        if !sent.success {
            return Err(PlatformFailure::new(
                ErrorClass::Retryable,
                "reel_upload_unconfirmed",
                "Facebook did not confirm a part of the reel; Herald asks what it holds and sends the rest",
            ));
        }
        offset += len;
        progress.chunk_sent(offset, session.file_size).await;
    }
    Ok(())
}

/// Publishes the uploaded reel once (reserving one of the Page's reels of 24 hours) and waits
/// until Facebook has processed it.
pub(super) async fn publish(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    draft: &PostDraft,
    page_id: &str,
    video_id: &str,
    limits: &dyn RateLimitGate,
) -> Result<CreatedPost, PostError> {
    let status = fb.video_status(token, video_id, limits).await?;
    // An earlier attempt may have finished it already: finishing again would count twice.
    if !finished(&status) {
        let quota = quota(fb);
        let reservation = take_reel(&quota, limits).await?;
        let outcome = finish(fb, token, draft, page_id, video_id, limits).await;
        quota.settle(&reservation, &outcome, limits).await;
        outcome?;
    }
    let status = wait_until_published(fb, token, video_id, limits).await?;
    Ok(created(fb, page_id, video_id, &status))
}

/// The reel as a post: `{page-id}_{video-id}` (as for Page videos) and its reel address.
fn created(
    fb: &FacebookPagesAdapter,
    page_id: &str,
    video_id: &str,
    status: &VideoStatus,
) -> CreatedPost {
    CreatedPost {
        post_id: format!("{page_id}_{video_id}"),
        url: status.permalink_url.as_deref().map_or_else(
            || fb.config.graph.web_url(&format!("/reel/{video_id}/")),
            |link| fb.config.graph.web_url(link),
        ),
    }
}

/// Whether `upload_phase=finish` has reached Meta: publishing has started, ended or failed.
fn finished(status: &VideoStatus) -> bool {
    let Some(detail) = &status.status else {
        return false;
    };
    let publishing = detail
        .publishing_phase
        .as_ref()
        .and_then(|p| p.status.as_deref());
    matches!(publishing, Some(s) if s != "not_started")
        || matches!(detail.video_status.as_deref(), Some("ready" | "published"))
}

/// `upload_phase=finish`: the irreversible call.
async fn finish(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    draft: &PostDraft,
    page_id: &str,
    video_id: &str,
    limits: &dyn RateLimitGate,
) -> Result<(), PostError> {
    let mut form = vec![
        ("upload_phase", "finish"),
        ("video_id", video_id),
        ("video_state", "PUBLISHED"),
    ];
    if !draft.text.is_empty() {
        form.push(("description", &draft.text));
    }
    let request = fb
        .login
        .http()
        .post(fb.url(&format!("{page_id}/video_reels")))
        .bearer_auth(token.expose())
        .form(&form);
    let response = match http::send(fb, REELS, limits, request).await {
        Ok(response) => response,
        Err(SendError::Limited(failure)) => return Err(PostError::Failed(failure)),
        Err(SendError::Transport(e)) => {
            return Err(graph::publish_transport_error("Facebook", &e, REEL_FINISH))
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(_) if status.is_success() => {
            return Err(PostError::OutcomeUnknown(format!(
                "Facebook answered the reel's publish (HTTP {status}) but its answer was cut off; the reel may be published"
            )))
        }
        Err(_) => Default::default(),
    };
    if !status.is_success() {
        return Err(PostError::Failed(fb.classify(
            status,
            &headers,
            &body,
            REEL_FINISH,
            Utc::now(),
        )));
    }
    match serde_json::from_slice::<SuccessBody>(&body) {
        Ok(SuccessBody { success: true }) => Ok(()),
        _ => Err(PostError::OutcomeUnknown(format!(
            "Facebook answered the reel's publish with HTTP {status} but did not confirm it; the reel may be published"
        ))),
    }
}

/// Polls the reel's status until it is published; an error in any phase is final.
async fn wait_until_published(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    video_id: &str,
    limits: &dyn RateLimitGate,
) -> Result<VideoStatus, PlatformFailure> {
    let deadline = tokio::time::Instant::now() + fb.config.status_poll_max_wait;
    loop {
        let status = fb.video_status(token, video_id, limits).await?;
        if let Some(detail) = &status.status {
            if let Some(reason) = detail.failure() {
                return Err(PlatformFailure::new(
                    ErrorClass::Permanent,
                    "reel_processing_failed",
                    format!("Facebook could not publish the reel: {reason}; check that {REEL_SPEC}, then publish again"),
                ));
            }
            let published = detail
                .publishing_phase
                .as_ref()
                .is_some_and(|p| p.status.as_deref() == Some("complete"));
            if published || matches!(detail.video_status.as_deref(), Some("ready" | "published")) {
                return Ok(status);
            }
        }
        if tokio::time::Instant::now() + fb.config.status_poll_interval > deadline {
            return Err(PlatformFailure::new(
                ErrorClass::Retryable,
                "reel_processing",
                format!(
                    "Facebook was still processing the reel after {} s; Herald checks again later without publishing it twice",
                    fb.config.status_poll_max_wait.as_secs()
                ),
            ));
        }
        tokio::time::sleep(fb.config.status_poll_interval).await;
    }
}

/// The reel of an attempt whose outcome is unknown, if its publish reached Meta.
pub(super) async fn find(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    page_id: &str,
    video_id: &str,
    limits: &dyn RateLimitGate,
) -> Result<Option<CreatedPost>, PlatformFailure> {
    let status = fb.video_status(token, video_id, limits).await?;
    Ok(finished(&status).then(|| created(fb, page_id, video_id, &status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: &str) -> VideoStatus {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn sessions_and_references() {
        let session = Session {
            page_id: "1".into(),
            video_id: "2".into(),
            file_size: 42,
        };
        let sealed = serde_json::to_string(&session).unwrap();
        assert_eq!(serde_json::from_str::<Session>(&sealed).unwrap(), session);
        assert_eq!(reference("1", "2"), "reel:1:2");
    }

    #[test]
    fn a_reel_counts_as_finished_once_publishing_has_started() {
        let uploaded = status(
            r#"{"status":{"video_status":"processing","uploading_phase":{"status":"complete"},"processing_phase":{"status":"not_started"},"publishing_phase":{"status":"not_started"}}}"#,
        );
        assert!(!finished(&uploaded));
        let publishing = status(
            r#"{"status":{"video_status":"processing","processing_phase":{"status":"in_progress"},"publishing_phase":{"status":"in_progress"}}}"#,
        );
        assert!(finished(&publishing));
        assert!(finished(&status(r#"{"status":{"video_status":"ready"}}"#)));
        assert!(!finished(&status(r#"{}"#)));
    }

    #[test]
    fn the_bytes_meta_holds_read_in_either_spelling() {
        for field in ["bytes_transfered", "bytes_transferred"] {
            let s = status(&format!(
                r#"{{"status":{{"video_status":"uploading","uploading_phase":{{"status":"in_progress","{field}":"5000"}}}}}}"#
            ));
            let held = s.status.unwrap().uploading_phase.unwrap().bytes_transfered;
            assert_eq!(held.map(|o| o.0), Some(5000), "{field}");
        }
    }
}
