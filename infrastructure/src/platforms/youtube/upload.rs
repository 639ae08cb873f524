//! `videos.insert` over Google's resumable upload protocol (platform-facts §7.3): open a
//! session (its URI in `Location`), report the URI before the first byte, send chunks of a
//! multiple of 256 KiB with `Content-Range`, follow `308 Resume Incomplete` + `Range`, and
//! resume — within an attempt after a 5xx or a lost connection, across attempts (and worker
//! crashes) from the session the publisher hands back — by asking `Content-Range: bytes */N`.
//! A session that is gone (404/410) is replaced by a new one.
//!
//! The media is streamed from its URL: at most one chunk (plus one network read) is held.
use bytes::{Bytes, BytesMut};
use herald_domain::{ErrorClass, MediaKind, PlatformFailure};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use super::errors::{transport_failure, CallContext};
use super::metadata::video_resource;
use super::quota::Cost;
use super::YouTubeAdapter;
use crate::media_source::Download;
use crate::platforms::http::{self, SendError};
use crate::platforms::{MediaUpload, RateLimitGate, UploadProgress};
use crate::secret::Secret;

/// Rate-limit keys of the upload calls.
const START_ENDPOINT: &str = "youtube_videos_insert";
const CHUNK_ENDPOINT: &str = "youtube_upload_chunk";

/// The video resource of a completed upload.
#[derive(Debug, Deserialize)]
struct UploadedVideo {
    id: String,
}

/// Where a session stands according to YouTube.
#[derive(Debug, PartialEq, Eq)]
enum SessionState {
    /// The upload is complete: the video exists.
    Complete(String),
    /// YouTube holds the first `n` bytes.
    Confirmed(u64),
    /// The session URI expired or is unknown (404/410): start a new session.
    Gone,
}

/// Why a session ended without a video.
enum SessionEnd {
    /// Start a new session from byte 0.
    Restart,
    Failed(PlatformFailure),
}

impl From<PlatformFailure> for SessionEnd {
    fn from(failure: PlatformFailure) -> Self {
        SessionEnd::Failed(failure)
    }
}

/// Uploads the post's video and returns its id. The upload itself creates the video.
pub(super) async fn upload(
    yt: &YouTubeAdapter,
    token: &Secret,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    if upload.item.kind != MediaKind::Video || upload.count != 1 {
        return Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "youtube_one_video",
            "a YouTube post is exactly one video: attach one video file and nothing else",
        ));
    }
    let mut resume = upload
        .resume
        .and_then(|r| Url::parse(r.session.expose()).ok());
    // At most one fresh session after the resumed one is gone, and one more if that one expires
    // too; anything beyond is left to the next attempt.
    for _ in 0..3 {
        match run_session(yt, token, upload, resume.take(), limits, progress).await {
            Ok(video_id) => {
                tracing::info!(%video_id, "YouTube upload complete");
                return Ok(video_id);
            }
            Err(SessionEnd::Restart) => {
                tracing::info!("the upload session is gone; starting a new one");
            }
            Err(SessionEnd::Failed(failure)) => return Err(failure),
        }
    }
    Err(PlatformFailure::new(
        ErrorClass::Retryable,
        "upload_session_lost",
        "YouTube kept discarding the upload session; Herald will try again",
    ))
}

/// One session: resumed when `session` is given, else opened; streams the rest of the file.
async fn run_session(
    yt: &YouTubeAdapter,
    token: &Secret,
    upload: &MediaUpload<'_>,
    session: Option<Url>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, SessionEnd> {
    // A resumed session downloads the media from the offset the job recorded, not from byte
    // 0: `MediaSource::open` asks for a Range (and, from a server that ignores it, reads and
    // drops the bytes before the offset instead).
    let recorded = match (&session, upload.resume) {
        (Some(_), Some(resume)) => resume.bytes_confirmed,
        _ => 0,
    };
    let mut source = yt.media_source.open(&upload.item.url, recorded).await?;
    let total = source.total.filter(|n| *n > 0).ok_or_else(|| {
        PlatformFailure::new(
            ErrorClass::Permanent,
            "media_length_unknown",
            "the media URL must send a non-zero Content-Length: YouTube needs the video's size before the upload starts; serve the file with a Content-Length header",
        )
    })?;
    let (session, confirmed) = match session {
        Some(session) => match status(yt, token, &session, total, limits).await? {
            SessionState::Complete(video_id) => return Ok(video_id),
            SessionState::Confirmed(n) => {
                tracing::info!(confirmed = n, total, "resuming the upload session");
                if n != recorded {
                    // YouTube holds more (or less) than the job recorded: download from there.
                    source = yt.media_source.open(&upload.item.url, n).await?;
                }
                (session, n)
            }
            SessionState::Gone => return Err(SessionEnd::Restart),
        },
        None => {
            let session = open_session(yt, token, upload, total, limits).await?;
            // Before the first byte: a crash from here on resumes this session.
            progress
                .session_opened(&Secret::new(session.as_str().to_owned()))
                .await;
            (session, 0)
        }
    };
    progress.started(total).await;
    if confirmed > 0 {
        progress.chunk_sent(confirmed, total).await;
    }
    send_chunks(
        yt,
        token,
        &session,
        &mut source,
        Position { confirmed, total },
        &upload.item.mime_type,
        limits,
        progress,
    )
    .await
}

/// `POST /upload/youtube/v3/videos?uploadType=resumable`: the session URI.
async fn open_session(
    yt: &YouTubeAdapter,
    token: &Secret,
    upload: &MediaUpload<'_>,
    total: u64,
    limits: &dyn RateLimitGate,
) -> Result<Url, PlatformFailure> {
    let ctx = CallContext::OPEN_UPLOAD;
    let mut url = yt.config.upload_url("videos");
    url.query_pairs_mut()
        .append_pair("uploadType", "resumable")
        .append_pair("part", "snippet,status");
    let mime = if upload.item.mime_type.is_empty() {
        "application/octet-stream"
    } else {
        upload.item.mime_type.as_str()
    };
    let request = yt
        .api
        .post(url)
        .bearer_auth(token.expose())
        .header("X-Upload-Content-Length", total.to_string())
        .header("X-Upload-Content-Type", mime)
        .json(&video_resource(upload.post));
    let reply = yt
        .call(START_ENDPOINT, limits, request, ctx, Cost::Insert)
        .await?;
    reply
        .headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Url::parse(v).ok())
        .ok_or_else(|| http::unreadable(yt, ctx, reply.status))
}

/// Bytes YouTube holds and the file's size.
#[derive(Debug, Clone, Copy)]
struct Position {
    confirmed: u64,
    total: u64,
}

/// The confirmed byte count in a 308's `Range: bytes=0-LAST` (none: nothing received).
fn confirmed_from(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let Some(range) = headers.get(RANGE) else {
        return Some(0);
    };
    let last: u64 = range
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?
        .split_once('-')?
        .1
        .trim()
        .parse()
        .ok()?;
    Some(last + 1)
}

/// What one session PUT answered.
enum PutOutcome {
    State(SessionState),
    /// Worth asking where the session stands and resuming (5xx, 429, lost connection).
    Interrupted(PlatformFailure),
}

/// Reads a session PUT's answer.
async fn put_outcome(
    yt: &YouTubeAdapter,
    response: Result<reqwest::Response, SendError>,
) -> Result<PutOutcome, PlatformFailure> {
    let ctx = CallContext::UPLOAD;
    let response = match response {
        Ok(r) => r,
        Err(SendError::Limited(failure)) => return Err(failure),
        Err(SendError::Transport(e)) => {
            return Ok(PutOutcome::Interrupted(transport_failure(&e, ctx)))
        }
    };
    let status = response.status();
    match status {
        StatusCode::PERMANENT_REDIRECT => {
            let confirmed = confirmed_from(response.headers())
                .ok_or_else(|| http::unreadable(yt, ctx, status))?;
            Ok(PutOutcome::State(SessionState::Confirmed(confirmed)))
        }
        StatusCode::OK | StatusCode::CREATED => {
            let body = match response.bytes().await {
                Ok(body) => body,
                Err(e) => return Ok(PutOutcome::Interrupted(transport_failure(&e, ctx))),
            };
            let video: UploadedVideo =
                serde_json::from_slice(&body).map_err(|_| http::unreadable(yt, ctx, status))?;
            Ok(PutOutcome::State(SessionState::Complete(video.id)))
        }
        StatusCode::NOT_FOUND | StatusCode::GONE => Ok(PutOutcome::State(SessionState::Gone)),
        _ => {
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            let failure = yt.classify_reply(status, &headers, &body, ctx);
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                Ok(PutOutcome::Interrupted(failure))
            } else {
                Err(failure)
            }
        }
    }
}

/// `PUT <session>` with `Content-Range: bytes */total`: where does the session stand?
async fn status(
    yt: &YouTubeAdapter,
    token: &Secret,
    session: &Url,
    total: u64,
    limits: &dyn RateLimitGate,
) -> Result<SessionState, PlatformFailure> {
    let request = yt
        .api
        .put(session.clone())
        .bearer_auth(token.expose())
        .header(CONTENT_RANGE, format!("bytes */{total}"))
        .header(CONTENT_LENGTH, 0)
        .body(Bytes::new());
    let response = http::send(yt, CHUNK_ENDPOINT, limits, request).await;
    match put_outcome(yt, response).await? {
        PutOutcome::State(state) => Ok(state),
        PutOutcome::Interrupted(failure) => Err(failure),
    }
}

/// Streams the file from `position.confirmed` on, chunk by chunk.
#[allow(clippy::too_many_arguments)]
async fn send_chunks(
    yt: &YouTubeAdapter,
    token: &Secret,
    session: &Url,
    source: &mut Download,
    position: Position,
    mime: &str,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, SessionEnd> {
    let Position { total, .. } = position;
    let chunk = yt.config.chunk_size();
    // The download starts at the confirmed offset (see `run_session`).
    let mut reader = SourceReader::new(source, position);
    // `buffer` holds bytes `start..start + buffer.len()` of the file.
    let mut start = position.confirmed;
    let mut buffer = BytesMut::with_capacity(chunk);
    let mut retries = 0u32;
    loop {
        reader.fill(&mut buffer, chunk).await?;
        if buffer.is_empty() {
            // Every byte was confirmed without a completion answer: ask.
            return match status(yt, token, session, total, limits).await? {
                SessionState::Complete(id) => Ok(id),
                SessionState::Gone => Err(SessionEnd::Restart),
                SessionState::Confirmed(_) => Err(SessionEnd::Failed(PlatformFailure::new(
                    ErrorClass::Retryable,
                    "upload_incomplete",
                    "YouTube holds every byte of the video but did not finish the upload; Herald will try again",
                ))),
            };
        }
        let data = buffer.clone().freeze();
        let last = start + data.len() as u64 - 1;
        let request = yt
            .api
            .put(session.clone())
            .timeout(yt.config.chunk_timeout)
            .bearer_auth(token.expose())
            .header(CONTENT_TYPE, mime)
            .header(CONTENT_RANGE, format!("bytes {start}-{last}/{total}"))
            .header(CONTENT_LENGTH, data.len())
            .body(data);
        let response = http::send(yt, CHUNK_ENDPOINT, limits, request).await;
        let state = match put_outcome(yt, response).await? {
            PutOutcome::State(state) => state,
            PutOutcome::Interrupted(failure) => {
                if retries >= yt.config.chunk_retries {
                    // The next attempt resumes the session.
                    return Err(SessionEnd::Failed(failure));
                }
                let backoff = yt.config.chunk_retry_backoff * 2u32.saturating_pow(retries);
                retries += 1;
                tracing::info!(error = %failure, retries, "upload chunk interrupted; asking where the session stands");
                tokio::time::sleep(backoff).await;
                match status(yt, token, session, total, limits).await {
                    Ok(state) => state,
                    Err(failure) if failure.class == ErrorClass::Retryable => continue,
                    Err(failure) => return Err(SessionEnd::Failed(failure)),
                }
            }
        };
        match state {
            SessionState::Complete(id) => {
                progress.chunk_sent(total, total).await;
                return Ok(id);
            }
            SessionState::Gone => return Err(SessionEnd::Restart),
            SessionState::Confirmed(confirmed) => {
                let held_until = start + buffer.len() as u64;
                if confirmed < start || confirmed > held_until {
                    // YouTube holds less than Herald already let go of (or more than it sent):
                    // the next attempt re-reads the file from YouTube's offset.
                    return Err(SessionEnd::Failed(PlatformFailure::new(
                        ErrorClass::Retryable,
                        "upload_offset_mismatch",
                        format!("YouTube confirmed {confirmed} bytes of the video, which does not match what Herald sent; the next attempt resumes from there"),
                    )));
                }
                if confirmed > start {
                    retries = 0;
                    progress.chunk_sent(confirmed, total).await;
                }
                let _ = buffer.split_to((confirmed - start) as usize);
                start = confirmed;
            }
        }
    }
}

/// Reads the media in pieces, carrying what did not fit the chunk.
struct SourceReader<'a> {
    source: &'a mut Download,
    carry: Bytes,
    /// The file offset reached: the download's start plus what it has given.
    read: u64,
    total: u64,
}

impl<'a> SourceReader<'a> {
    /// `source` gives the file from `position.confirmed` on.
    fn new(source: &'a mut Download, position: Position) -> Self {
        Self {
            source,
            carry: Bytes::new(),
            read: position.confirmed,
            total: position.total,
        }
    }

    async fn next(&mut self) -> Result<Option<Bytes>, PlatformFailure> {
        if !self.carry.is_empty() {
            return Ok(Some(std::mem::take(&mut self.carry)));
        }
        let piece = self.source.chunk().await?;
        if let Some(p) = &piece {
            self.read += p.len() as u64;
            if self.read > self.total {
                return Err(PlatformFailure::new(
                    ErrorClass::Retryable,
                    "media_source_length",
                    format!("the media URL sent more than the {} bytes it announced; Herald will try again", self.total),
                ));
            }
        }
        Ok(piece)
    }

    /// Tops `buffer` up to `chunk` bytes (fewer at the end of the file).
    async fn fill(&mut self, buffer: &mut BytesMut, chunk: usize) -> Result<(), PlatformFailure> {
        while buffer.len() < chunk {
            let Some(mut piece) = self.next().await? else {
                if self.read < self.total {
                    return Err(truncated(self.total, self.read));
                }
                return Ok(());
            };
            let take = (chunk - buffer.len()).min(piece.len());
            buffer.extend_from_slice(&piece.split_to(take));
            self.carry = piece;
        }
        Ok(())
    }
}

fn truncated(total: u64, read: u64) -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::Retryable,
        "media_source_truncated",
        format!("the media URL announced {total} bytes but sent {read}; Herald will try again"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn range_header_gives_the_confirmed_count() {
        let mut h = HeaderMap::new();
        assert_eq!(confirmed_from(&h), Some(0));
        h.insert(RANGE, HeaderValue::from_static("bytes=0-262143"));
        assert_eq!(confirmed_from(&h), Some(262_144));
        h.insert(RANGE, HeaderValue::from_static("items=0-1"));
        assert_eq!(confirmed_from(&h), None);
    }
}
