//! A Page video, uploaded in chunks (`upload_phase=start → transfer → finish` on
//! `graph-video.facebook.com`) while it streams from its URL: at most one chunk is in memory.
//! The upload session is handed to the publisher before the first byte, so an attempt that
//! dies mid-upload continues where Facebook stopped; `finish` publishes the video with the
//! post's title and text, and a retried attempt checks the video before finishing again.
use bytes::{Bytes, BytesMut};
use herald_domain::{ErrorClass, PlatformFailure};
use rand::distributions::{Alphanumeric, DistString};
use reqwest::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{FacebookPagesAdapter, VIDEO_FINISH, VIDEO_START, VIDEO_TRANSFER};
use crate::media_source::{Download, MediaSource};
use crate::platforms::http;
use crate::platforms::http::PlatformApi;
use crate::platforms::meta::graph::GraphErrorBody;
use crate::platforms::{MediaUpload, RateLimitGate, UploadProgress};
use crate::secret::Secret;

/// Facebook's "start again at this offset" subcode on a transfer (offsets in `error_data`).
const OFFSET_CORRECTION: i64 = 1_363_037;
/// Offset corrections accepted in a row before the attempt gives up.
const MAX_CORRECTIONS: u32 = 3;

/// What the publisher keeps (sealed) to resume an upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    page_id: String,
    video_id: String,
    upload_session_id: String,
    file_size: u64,
    /// The range length Facebook asked for first: later ranges follow its answers, a resumed
    /// upload starts with this.
    chunk_size: u64,
}

#[derive(Debug, Deserialize)]
struct StartBody {
    video_id: String,
    upload_session_id: String,
    start_offset: Offset,
    end_offset: Offset,
}

#[derive(Debug, Deserialize)]
struct TransferBody {
    start_offset: Offset,
    end_offset: Offset,
}

/// Facebook sends offsets as strings (`"1048576"`), sometimes as numbers.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub(super) struct Offset(pub u64);

impl TryFrom<serde_json::Value> for Offset {
    type Error = String;
    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
            .map(Offset)
            .ok_or_else(|| format!("{value} is not an offset"))
    }
}

#[derive(Debug, Deserialize)]
struct FinishBody {
    #[serde(default)]
    success: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct VideoStatus {
    pub status: Option<VideoStatusDetail>,
    pub permalink_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct VideoStatusDetail {
    pub video_status: Option<String>,
    #[serde(default)]
    pub uploading_phase: Option<Phase>,
    #[serde(default)]
    pub processing_phase: Option<Phase>,
    #[serde(default)]
    pub publishing_phase: Option<Phase>,
}

impl VideoStatusDetail {
    /// Why the video failed, when it did (`video_status` or a phase says `error`).
    pub fn failure(&self) -> Option<String> {
        let phases = [
            &self.uploading_phase,
            &self.processing_phase,
            &self.publishing_phase,
        ];
        let failed = phases
            .iter()
            .copied()
            .flatten()
            .find(|p| p.status.as_deref() == Some("error"));
        if failed.is_none() && self.video_status.as_deref() != Some("error") {
            return None;
        }
        let reason = phases
            .iter()
            .copied()
            .flatten()
            .flat_map(|p| p.errors.iter())
            .find_map(|e| e.message.clone());
        Some(reason.unwrap_or_else(|| "no reason given".into()))
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Phase {
    /// `not_started`, `in_progress`, `complete` or `error`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub errors: Vec<PhaseError>,
    /// Bytes Meta holds while uploading (Meta spells it `bytes_transfered`).
    #[serde(default, alias = "bytes_transferred")]
    pub bytes_transfered: Option<Offset>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PhaseError {
    pub message: Option<String>,
}

/// The media reference of an uploaded video: `video:{page-id}:{video-id}`.
pub(super) fn reference(page_id: &str, video_id: &str) -> String {
    format!("video:{page_id}:{video_id}")
}

/// The session an earlier attempt handed to the publisher, with the bytes it confirmed; `None`
/// when there is none (or it is not a session of this kind).
pub(super) fn resumed<S: DeserializeOwned>(upload: &MediaUpload<'_>) -> Option<(S, u64)> {
    upload.resume.and_then(|r| {
        serde_json::from_str::<S>(r.session.expose())
            .ok()
            .map(|s| (s, r.bytes_confirmed))
    })
}

/// The media, streamed from its URL (through the SSRF-guarded `MediaSource`) with its position
/// known; moving to another offset asks the server for that range.
pub(super) struct Source<'a> {
    media: &'a MediaSource,
    url: &'a str,
    download: Option<Download>,
    /// Offset of the next byte `take` returns.
    position: u64,
    /// Read but not yet taken.
    pending: Bytes,
}

impl<'a> Source<'a> {
    /// Opens `url` at `offset`.
    pub(super) async fn open(
        media: &'a MediaSource,
        url: &'a str,
        offset: u64,
    ) -> Result<Self, PlatformFailure> {
        let mut source = Self {
            media,
            url,
            download: None,
            position: 0,
            pending: Bytes::new(),
        };
        source.open_at(offset).await?;
        Ok(source)
    }

    async fn open_at(&mut self, offset: u64) -> Result<(), PlatformFailure> {
        self.download = Some(self.media.open(self.url, offset).await?);
        self.position = offset;
        self.pending = Bytes::new();
        Ok(())
    }

    /// The whole file's size, as the server said.
    pub(super) fn total(&self) -> Result<u64, PlatformFailure> {
        match &self.download {
            Some(download) => download.require_total(),
            None => Err(PlatformFailure::new(
                ErrorClass::Retryable,
                "media_download",
                "the video download was not open; Herald will try again",
            )),
        }
    }

    /// Up to `max` bytes from the current position (fewer only at the end).
    pub(super) async fn take(&mut self, max: usize) -> Result<Bytes, PlatformFailure> {
        let mut out = BytesMut::with_capacity(max.min(8 * 1024 * 1024));
        while out.len() < max {
            if self.pending.is_empty() {
                let Some(download) = self.download.as_mut() else {
                    break;
                };
                match download.chunk().await? {
                    Some(bytes) => self.pending = bytes,
                    None => break,
                }
                continue;
            }
            let n = (max - out.len()).min(self.pending.len());
            out.extend_from_slice(&self.pending.split_to(n));
        }
        self.position += out.len() as u64;
        Ok(out.freeze())
    }

    /// Moves to `offset` (a range request when it is not where the stream is).
    pub(super) async fn seek(&mut self, offset: u64) -> Result<(), PlatformFailure> {
        if offset != self.position {
            self.open_at(offset).await?;
        }
        Ok(())
    }
}

/// One transfer's multipart body, built around the chunk without copying it.
fn multipart(boundary: &str, fields: &[(&str, &str)], chunk: Bytes) -> (reqwest::Body, u64) {
    let mut head = String::new();
    for (name, value) in fields {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"video_file_chunk\"; filename=\"chunk\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    ));
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = (head.len() + chunk.len() + tail.len()) as u64;
    let parts: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from(head)), Ok(chunk), Ok(Bytes::from(tail))];
    (
        reqwest::Body::wrap_stream(futures::stream::iter(parts)),
        length,
    )
}

/// Uploads and publishes the video; returns its media reference.
pub(super) async fn upload(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    let resumed = resumed::<Session>(upload);
    if let Some((session, _)) = &resumed {
        // An earlier attempt may have finished the upload without learning it.
        if let Some(reference) = already_finished(fb, token, session, limits).await? {
            return Ok(reference);
        }
    }
    let offset = resumed.as_ref().map_or(0, |(_, confirmed)| *confirmed);
    let mut source = Source::open(&fb.media_source, &upload.item.url, offset).await?;
    let (session, confirmed) = match resumed {
        Some((session, confirmed)) => (session, confirmed),
        None => {
            let total = source.total()?;
            if total == 0 {
                return Err(PlatformFailure::new(
                    ErrorClass::Permanent,
                    "media_empty",
                    "the video at its URL is empty; check the URL",
                ));
            }
            (
                start(fb, token, &upload.post.account.account_id, total, limits).await?,
                0,
            )
        }
    };
    progress.started(session.file_size).await;
    if upload.resume.is_none() {
        let handle = serde_json::to_string(&session).expect("the session serializes");
        progress.session_opened(&Secret::new(handle)).await;
    }
    transfer_all(
        fb,
        token,
        &session,
        &mut source,
        confirmed,
        limits,
        progress,
    )
    .await?;
    finish(fb, token, &session, upload, limits).await?;
    Ok(reference(&session.page_id, &session.video_id))
}

/// The reference of a video whose upload was already finished, or `None` to carry on.
async fn already_finished(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    session: &Session,
    limits: &dyn RateLimitGate,
) -> Result<Option<String>, PlatformFailure> {
    let status = fb.video_status(token, &session.video_id, limits).await?;
    let state = status
        .status
        .as_ref()
        .and_then(|s| s.video_status.as_deref())
        .unwrap_or_default()
        .to_owned();
    match state.as_str() {
        "processing" | "ready" | "error" => {
            Ok(Some(reference(&session.page_id, &session.video_id)))
        }
        _ => Ok(None),
    }
}

/// Opens an upload session on `page_id` (the connection's Page).
async fn start(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    page_id: &str,
    total: u64,
    limits: &dyn RateLimitGate,
) -> Result<Session, PlatformFailure> {
    let request = fb
        .login
        .http()
        .post(fb.config.graph.video_url(&format!("{page_id}/videos")))
        .bearer_auth(token.expose())
        .form(&[("upload_phase", "start"), ("file_size", &total.to_string())]);
    let started: StartBody =
        http::call_json(fb, "facebook_videos", limits, request, VIDEO_START).await?;
    tracing::debug!(
        start = started.start_offset.0,
        end = started.end_offset.0,
        "facebook video upload session opened"
    );
    let chunk_size = started
        .end_offset
        .0
        .saturating_sub(started.start_offset.0)
        .max(1);
    Ok(Session {
        page_id: page_id.to_owned(),
        video_id: started.video_id,
        upload_session_id: started.upload_session_id,
        file_size: total,
        chunk_size,
    })
}

/// Sends the bytes from `offset` to the end, chunk by chunk, following Facebook's offsets.
async fn transfer_all(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    session: &Session,
    source: &mut Source<'_>,
    offset: u64,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<(), PlatformFailure> {
    let max_chunk = fb.config.max_chunk_bytes.max(1);
    let mut start = offset.min(session.file_size);
    let mut end = (start + session.chunk_size.min(max_chunk)).min(session.file_size);
    let mut corrections = 0;
    while start < session.file_size {
        source.seek(start).await?;
        let len = (end.saturating_sub(start)).clamp(1, max_chunk) as usize;
        let chunk = source.take(len).await?;
        if chunk.is_empty() {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "media_shorter_than_announced",
                format!(
                    "the video at its URL ended after {start} bytes although it announced {}; check the file",
                    session.file_size
                ),
            ));
        }
        let boundary = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
        let (body, length) = multipart(
            &boundary,
            &[
                ("upload_phase", "transfer"),
                ("upload_session_id", &session.upload_session_id),
                ("start_offset", &start.to_string()),
            ],
            chunk,
        );
        let request = fb
            .login
            .http()
            .post(
                fb.config
                    .graph
                    .video_url(&format!("{}/videos", session.page_id)),
            )
            .bearer_auth(token.expose())
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        match send_chunk(fb, request, limits).await? {
            Sent::Next(next) => {
                start = next.start_offset.0;
                end = next.end_offset.0;
                corrections = 0;
                progress.chunk_sent(start, session.file_size).await;
            }
            Sent::Elsewhere(expected_start, expected_end, failure) => {
                corrections += 1;
                if corrections > MAX_CORRECTIONS {
                    return Err(failure);
                }
                tracing::info!(expected_start, "facebook asked for another video offset");
                start = expected_start;
                end = expected_end.max(start + 1);
            }
        }
    }
    Ok(())
}

/// What a transfer did.
enum Sent {
    /// Facebook took the chunk and names the next range.
    Next(TransferBody),
    /// Facebook wants another range (subcode 1363037 with `error_data`).
    Elsewhere(u64, u64, PlatformFailure),
}

/// Sends one chunk; an offset correction is returned, any other refusal classified.
async fn send_chunk(
    fb: &FacebookPagesAdapter,
    request: reqwest::RequestBuilder,
    limits: &dyn RateLimitGate,
) -> Result<Sent, PlatformFailure> {
    let response = match http::send(fb, "facebook_videos", limits, request).await {
        Ok(response) => response,
        Err(http::SendError::Limited(failure)) => return Err(failure),
        Err(http::SendError::Transport(e)) => return Err(fb.transport_failure(&e, VIDEO_TRANSFER)),
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| fb.transport_failure(&e, VIDEO_TRANSFER))?;
    if status.is_success() {
        let reply = http::Reply {
            status,
            headers,
            body,
        };
        return reply.json(fb, VIDEO_TRANSFER).map(Sent::Next);
    }
    let failure = fb.classify(status, &headers, &body, VIDEO_TRANSFER, chrono::Utc::now());
    match correction(&body) {
        Some((start, end)) => Ok(Sent::Elsewhere(start, end, failure)),
        None => Err(failure),
    }
}

/// The range Facebook asks for in an offset-correction error body.
fn correction(body: &[u8]) -> Option<(u64, u64)> {
    let parsed = GraphErrorBody::parse(body);
    if parsed.error.error_subcode != Some(OFFSET_CORRECTION) {
        return None;
    }
    let data = parsed.error.error_data?;
    let start: Offset = serde_json::from_value(data.get("start_offset")?.clone()).ok()?;
    let end: Offset = serde_json::from_value(data.get("end_offset")?.clone()).ok()?;
    Some((start.0, end.0))
}

/// `upload_phase=finish`: Facebook publishes the video with the post's title and text.
async fn finish(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    session: &Session,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
) -> Result<(), PlatformFailure> {
    let mut form = vec![
        ("upload_phase", "finish"),
        ("upload_session_id", session.upload_session_id.as_str()),
    ];
    if let Some(title) = &upload.post.title {
        form.push(("title", title));
    }
    if !upload.post.text.is_empty() {
        form.push(("description", &upload.post.text));
    }
    let request = fb
        .login
        .http()
        .post(
            fb.config
                .graph
                .video_url(&format!("{}/videos", session.page_id)),
        )
        .bearer_auth(token.expose())
        .form(&form);
    match http::call_json::<_, FinishBody>(fb, "facebook_videos", limits, request, VIDEO_FINISH)
        .await
    {
        Ok(FinishBody { success: true }) => Ok(()),
        Ok(_) => Err(PlatformFailure::new(
            ErrorClass::Retryable,
            "video_finish_unconfirmed",
            "Facebook did not confirm finishing the video upload; Herald checks the video and tries again",
        )),
        // The video may be published already: the next attempt looks before finishing again.
        Err(failure) if failure.class == ErrorClass::Retryable => Err(PlatformFailure {
            message: format!(
                "{}; Facebook may have received the whole video, so Herald checks it before finishing again",
                failure.message
            ),
            ..failure
        }),
        Err(failure) => Err(failure),
    }
}

/// Waits until Facebook has processed the video; returns its permalink.
pub(super) async fn wait_until_ready(
    fb: &FacebookPagesAdapter,
    token: &Secret,
    video_id: &str,
    limits: &dyn RateLimitGate,
) -> Result<Option<String>, PlatformFailure> {
    let deadline = tokio::time::Instant::now() + fb.config.status_poll_max_wait;
    loop {
        let status = fb.video_status(token, video_id, limits).await?;
        let detail = status.status.as_ref();
        match detail.and_then(|s| s.video_status.as_deref()) {
            Some("ready") => return Ok(status.permalink_url),
            Some("error") => {
                let reason = detail
                    .and_then(|d| d.processing_phase.as_ref())
                    .and_then(|p| p.errors.first())
                    .and_then(|e| e.message.clone())
                    .unwrap_or_else(|| "no reason given".into());
                return Err(PlatformFailure::new(
                    ErrorClass::Permanent,
                    "video_processing_failed",
                    format!("Facebook could not process the video: {reason}; check that it is an MP4 or MOV file Facebook supports"),
                ));
            }
            _ => {}
        }
        if tokio::time::Instant::now() + fb.config.status_poll_interval > deadline {
            return Err(PlatformFailure::new(
                ErrorClass::Retryable,
                "video_processing",
                format!(
                    "Facebook was still processing the video after {} s; Herald checks again later",
                    fb.config.status_poll_max_wait.as_secs()
                ),
            ));
        }
        tokio::time::sleep(fb.config.status_poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_read_as_strings_or_numbers() {
        let body: TransferBody =
            serde_json::from_str(r#"{"start_offset":"1000","end_offset":2000}"#).unwrap();
        assert_eq!((body.start_offset.0, body.end_offset.0), (1000, 2000));
        assert!(
            serde_json::from_str::<TransferBody>(r#"{"start_offset":"x","end_offset":1}"#).is_err()
        );
    }

    #[test]
    fn offset_corrections_are_read_from_the_error() {
        let body = br#"{"error":{"code":6000,"error_subcode":1363037,"error_data":{"start_offset":"5","end_offset":9}}}"#;
        assert_eq!(correction(body), Some((5, 9)));
        assert_eq!(correction(br#"{"error":{"code":1}}"#), None);
        assert_eq!(correction(b"nope"), None);
    }

    #[test]
    fn references_and_multipart_bodies() {
        assert_eq!(reference("1", "2"), "video:1:2");
        let (_, length) = multipart("B", &[("a", "1")], Bytes::from_static(b"DATA"));
        let expected = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n".len()
            + "--B\r\nContent-Disposition: form-data; name=\"video_file_chunk\"; filename=\"chunk\"\r\nContent-Type: application/octet-stream\r\n\r\n".len()
            + 4
            + "\r\n--B--\r\n".len();
        assert_eq!(length, expected as u64);
    }
}
