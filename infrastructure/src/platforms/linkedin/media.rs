//! Image, document and video upload through LinkedIn's Images, Documents and Videos APIs
//! (platform-facts §8.3).
//!
//! Images and documents: `initializeUpload` → one `PUT` of the whole file, streamed from its
//! URL → wait until it is `AVAILABLE`. Documents (PDF, PPT(X), DOC(X)) may weigh 100 MB and run
//! to 300 pages ("The file size cannot exceed 100MB and 300 pages", Documents API,
//! https://learn.microsoft.com/en-us/linkedin/marketing/community-management/shares/documents-api);
//! the size is checked before anything is sent, the pages only LinkedIn can count. Videos: `initializeUpload` with `fileSizeBytes` → one `PUT` per
//! upload instruction, exactly its `firstByte..=lastByte` range, holding at most one part in
//! memory → `finalizeUpload` with every part's `ETag` in order → wait until `AVAILABLE`.
//!
//! A video upload can resume: the session handle (video URN, upload token, instructions and the
//! ETags so far) is given to `UploadProgress::session_opened` before the first byte and again
//! after each part, so an attempt that dies mid-upload continues with the next part.
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use herald_domain::{ErrorClass, MediaKind, PlatformFailure};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::errors::CallContext;
use super::LinkedInAdapter;
use crate::media_source::Download;
use crate::platforms::{MediaUpload, RateLimitGate, UploadProgress};
use crate::secret::Secret;

#[derive(Debug, Deserialize)]
struct Wrapped<T> {
    value: T,
}

/// The answer to an image's or a document's `initializeUpload`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WholeFileUpload {
    upload_url: String,
    /// `value.image` or `value.document`: the URN the post attaches.
    #[serde(alias = "image", alias = "document")]
    urn: String,
}

/// A file LinkedIn takes in one `PUT`.
struct WholeFile {
    /// The REST resource (`images`, `documents`), also naming its gate key.
    resource: &'static str,
    gate_key: &'static str,
    /// How messages name it.
    kind: &'static str,
    init: CallContext,
    /// Largest file LinkedIn takes, where Herald knows it.
    max_bytes: Option<u64>,
}

const IMAGE: WholeFile = WholeFile {
    resource: "images",
    gate_key: "linkedin_images",
    kind: "image",
    init: CallContext::INIT_IMAGE,
    max_bytes: None,
};

const DOCUMENT: WholeFile = WholeFile {
    resource: "documents",
    gate_key: "linkedin_documents",
    kind: "document",
    init: CallContext::INIT_DOCUMENT,
    max_bytes: Some(100 * 1024 * 1024),
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoUpload {
    video: String,
    #[serde(default)]
    upload_token: String,
    upload_instructions: Vec<Instruction>,
    upload_urls_expire_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Instruction {
    upload_url: String,
    first_byte: u64,
    last_byte: u64,
}

impl Instruction {
    fn len(&self) -> u64 {
        self.last_byte - self.first_byte + 1
    }
}

/// Where a video upload stands; sealed into the job's events as the session handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct VideoSession {
    video: String,
    upload_token: String,
    total: u64,
    parts: Vec<Instruction>,
    /// ETags of the parts uploaded so far, in order.
    etags: Vec<String>,
    /// When the upload URLs stop working (epoch ms), if LinkedIn said.
    expires_at_ms: Option<i64>,
}

impl VideoSession {
    fn handle(&self) -> Secret {
        Secret::new(serde_json::to_string(self).unwrap_or_default())
    }

    /// The session in `handle`, if it can still be continued.
    fn resume(handle: &Secret) -> Option<Self> {
        let session: Self = serde_json::from_str(handle.expose()).ok()?;
        let alive = session
            .expires_at_ms
            .is_none_or(|at| at > Utc::now().timestamp_millis() + 60_000);
        (alive && session.etags.len() <= session.parts.len()).then_some(session)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaStatus {
    status: Option<String>,
    processing_failure_reason: Option<String>,
}

/// Uploads one media item; returns its URN once LinkedIn can attach it to a post.
pub(super) async fn upload(
    li: &LinkedInAdapter,
    token: &str,
    author: &str,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    match upload.item.kind {
        MediaKind::Image | MediaKind::Gif => {
            upload_whole(li, token, author, upload, limits, progress, &IMAGE).await
        }
        MediaKind::Document => {
            upload_whole(li, token, author, upload, limits, progress, &DOCUMENT).await
        }
        MediaKind::Video => upload_video(li, token, author, upload, limits, progress).await,
    }
}

async fn upload_whole(
    li: &LinkedInAdapter,
    token: &str,
    author: &str,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
    file: &WholeFile,
) -> Result<String, PlatformFailure> {
    let source = li.media_source.open(&upload.item.url, 0).await?;
    let total = source.total;
    if let (Some(total), Some(max)) = (total, file.max_bytes) {
        if total > max {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "media_too_large",
                format!(
                    "the {} weighs {} MB; LinkedIn takes at most {} MB",
                    file.kind,
                    total.div_ceil(1024 * 1024),
                    max / (1024 * 1024)
                ),
            ));
        }
    }
    let init = li
        .rest(
            Method::POST,
            li.config.action_url(file.resource, "initializeUpload"),
            token,
        )
        .json(&json!({"initializeUploadRequest": {"owner": author}}));
    let init: Wrapped<WholeFileUpload> =
        li.call_json(file.gate_key, limits, init, file.init).await?;
    progress.started(total.unwrap_or(0)).await;
    let body = reqwest::Body::wrap_stream(chunks(source));
    let mut put = li
        .uploads
        .put(&init.value.upload_url)
        .bearer_auth(token)
        .header(CONTENT_TYPE, upload.item.mime_type.as_str())
        .body(body);
    if let Some(total) = total {
        put = put.header(CONTENT_LENGTH, total);
    }
    li.call("linkedin_upload", limits, put, CallContext::UPLOAD)
        .await?;
    if let Some(total) = total {
        progress.chunk_sent(total, total).await;
    }
    wait_until_available(li, token, file.resource, &init.value.urn, file.kind, limits).await?;
    Ok(init.value.urn)
}

async fn upload_video(
    li: &LinkedInAdapter,
    token: &str,
    author: &str,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    let resumed = upload.resume.and_then(|r| VideoSession::resume(&r.session));
    let mut session = match resumed {
        Some(session) => session,
        None => start_video(li, token, author, upload, limits).await?,
    };
    progress.started(session.total).await;
    if session.etags.is_empty() {
        progress.session_opened(&session.handle()).await;
    }
    let next = session.etags.len();
    if next < session.parts.len() {
        let from = session.parts[next].first_byte;
        let mut source = Source {
            download: li.media_source.open(&upload.item.url, from).await?,
            leftover: Bytes::new(),
        };
        for index in next..session.parts.len() {
            let part = session.parts[index].clone();
            let data = source.take(part.len()).await?;
            let etag = put_part(li, &part, data, limits).await?;
            session.etags.push(etag);
            // The new handle first (it resets the confirmed count), then the count.
            progress.session_opened(&session.handle()).await;
            progress.chunk_sent(part.last_byte + 1, session.total).await;
        }
    }
    let status = if resumed_past_finalize(&session) {
        media_status(li, token, "videos", &session.video, limits)
            .await
            .ok()
            .and_then(|s| s.status)
    } else {
        None
    };
    if matches!(status.as_deref(), None | Some("WAITING_UPLOAD")) {
        let finalize = li
            .rest(
                Method::POST,
                li.config.action_url("videos", "finalizeUpload"),
                token,
            )
            .json(&json!({"finalizeUploadRequest": {
                "video": session.video,
                "uploadToken": session.upload_token,
                "uploadedPartIds": session.etags,
            }}));
        li.call(
            "linkedin_videos",
            limits,
            finalize,
            CallContext::FINALIZE_VIDEO,
        )
        .await?;
    }
    wait_until_available(li, token, "videos", &session.video, "video", limits).await?;
    Ok(session.video)
}

/// A resumed session whose parts were all sent may already be finalized.
fn resumed_past_finalize(session: &VideoSession) -> bool {
    session.etags.len() == session.parts.len()
}

async fn start_video(
    li: &LinkedInAdapter,
    token: &str,
    author: &str,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
) -> Result<VideoSession, PlatformFailure> {
    // LinkedIn needs the size before the upload starts.
    let total = li
        .media_source
        .open(&upload.item.url, 0)
        .await?
        .require_total()?;
    let init = li
        .rest(
            Method::POST,
            li.config.action_url("videos", "initializeUpload"),
            token,
        )
        .json(&json!({"initializeUploadRequest": {
            "owner": author,
            "fileSizeBytes": total,
            "uploadCaptions": false,
            "uploadThumbnail": false,
        }}));
    let init: Wrapped<VideoUpload> = li
        .call_json("linkedin_videos", limits, init, CallContext::INIT_VIDEO)
        .await?;
    let mut parts = init.value.upload_instructions;
    parts.sort_by_key(|p| p.first_byte);
    let contiguous = parts
        .iter()
        .try_fold(0u64, |next, p| {
            (p.first_byte == next && p.last_byte >= p.first_byte).then_some(p.last_byte + 1)
        })
        .is_some_and(|end| end == total);
    if !contiguous {
        return Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "unexpected_upload_instructions",
            format!("LinkedIn's upload instructions do not cover the {total}-byte video from the first byte to the last; Herald cannot upload it"),
        ));
    }
    Ok(VideoSession {
        video: init.value.video,
        upload_token: init.value.upload_token,
        total,
        parts,
        etags: vec![],
        expires_at_ms: init.value.upload_urls_expire_at,
    })
}

/// Sends one byte range; returns the part's `ETag`.
async fn put_part(
    li: &LinkedInAdapter,
    part: &Instruction,
    data: Bytes,
    limits: &dyn RateLimitGate,
) -> Result<String, PlatformFailure> {
    let put = li
        .uploads
        .put(&part.upload_url)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(data);
    let reply = li
        .call("linkedin_upload", limits, put, CallContext::UPLOAD)
        .await?;
    reply
        .headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            PlatformFailure::new(
                ErrorClass::Retryable,
                "upload_etag_missing",
                "LinkedIn accepted a video part without an ETag, which finishing the upload needs; Herald will try again",
            )
        })
}

async fn media_status(
    li: &LinkedInAdapter,
    token: &str,
    resource: &str,
    urn: &str,
    limits: &dyn RateLimitGate,
) -> Result<MediaStatus, PlatformFailure> {
    let request = li.rest(Method::GET, li.config.entity_url(resource, urn), token);
    li.call_json("linkedin_media", limits, request, CallContext::MEDIA_STATUS)
        .await
}

/// Polls the image, document or video until it is `AVAILABLE`, within `status_poll_max_wait`.
async fn wait_until_available(
    li: &LinkedInAdapter,
    token: &str,
    resource: &str,
    urn: &str,
    kind: &str,
    limits: &dyn RateLimitGate,
) -> Result<(), PlatformFailure> {
    let deadline = tokio::time::Instant::now() + li.config.status_poll_max_wait;
    loop {
        let status = media_status(li, token, resource, urn, limits).await?;
        match status.status.as_deref() {
            Some("AVAILABLE") => return Ok(()),
            Some("PROCESSING_FAILED") => {
                let reason = status
                    .processing_failure_reason
                    .unwrap_or_else(|| "no reason given".into());
                let advice = match kind {
                    "video" => {
                        "check that it is an MP4 of 3 seconds to 30 minutes and 75 KB to 500 MB"
                    }
                    "document" => {
                        "check that it is a PDF, PPT(X) or DOC(X) of at most 100 MB and 300 pages"
                    }
                    _ => "check that it is a JPEG, PNG or GIF LinkedIn can read",
                };
                return Err(PlatformFailure::new(
                    ErrorClass::Permanent,
                    "processing_failed",
                    format!("LinkedIn could not process the {kind} ({reason}); {advice}"),
                ));
            }
            _ => {}
        }
        if tokio::time::Instant::now() + li.config.status_poll_interval > deadline {
            return Err(PlatformFailure::new(
                ErrorClass::Retryable,
                "processing_in_progress",
                format!(
                    "LinkedIn was still processing the {kind} after {} s; Herald will try again",
                    li.config.status_poll_max_wait.as_secs()
                ),
            ));
        }
        tokio::time::sleep(li.config.status_poll_interval).await;
    }
}

/// The media download from a byte offset, read one upload part at a time.
struct Source {
    download: Download,
    leftover: Bytes,
}

impl Source {
    /// Reads exactly `n` bytes (one part); at most one part and one network chunk are held.
    async fn take(&mut self, n: u64) -> Result<Bytes, PlatformFailure> {
        let want = usize::try_from(n).unwrap_or(usize::MAX);
        let mut buffer = BytesMut::with_capacity(want.min(64 * 1024 * 1024));
        while buffer.len() < want {
            if self.leftover.is_empty() {
                match self.download.chunk().await? {
                    Some(chunk) => self.leftover = chunk,
                    None => return Err(PlatformFailure::new(
                        ErrorClass::Retryable,
                        "media_source_truncated",
                        "the media URL sent fewer bytes than it announced; Herald will try again",
                    )),
                }
            }
            let take = (want - buffer.len()).min(self.leftover.len());
            buffer.extend_from_slice(&self.leftover.split_to(take));
        }
        Ok(buffer.freeze())
    }
}

/// The rest of a download as a stream, for a streamed request body.
fn chunks(
    download: Download,
) -> impl futures::Stream<Item = Result<Bytes, PlatformFailure>> + Send + 'static {
    futures::stream::unfold(download, |mut download| async move {
        download
            .chunk()
            .await
            .transpose()
            .map(|chunk| (chunk, download))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_resumes_only_while_its_urls_work() {
        let session = VideoSession {
            video: "urn:li:video:1".into(),
            upload_token: "t".into(),
            total: 10,
            parts: vec![Instruction {
                upload_url: "http://u/1".into(),
                first_byte: 0,
                last_byte: 9,
            }],
            etags: vec![],
            expires_at_ms: Some(Utc::now().timestamp_millis() + 3_600_000),
        };
        assert_eq!(
            VideoSession::resume(&session.handle()),
            Some(session.clone())
        );
        let expired = VideoSession {
            expires_at_ms: Some(0),
            ..session
        };
        assert_eq!(VideoSession::resume(&expired.handle()), None);
        assert_eq!(VideoSession::resume(&Secret::new("garbage")), None);
    }
}
