//! Chunked media upload through X's dedicated v2 endpoints: initialize → append (one multipart
//! segment per chunk) → finalize → poll STATUS while X processes a video or GIF.
//!
//! The media is streamed from its URL: at most one chunk is held in memory at a time.
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use herald_domain::{ErrorClass, MediaItem, MediaKind, PlatformFailure};
use rand::distributions::{Alphanumeric, DistString};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use super::errors::CallContext;
use super::{Envelope, XAdapter};
use crate::platforms::http;
use crate::platforms::media_not_taken;
use crate::platforms::{RateLimitGate, UploadProgress};
use crate::secret::Secret;

/// X accepts `segment_index` 0..=999.
pub(super) const MAX_SEGMENTS: u64 = 1000;
/// Bounds on X's `check_after_secs`, so a missing or absurd value neither spins nor stalls.
const MIN_CHECK_AFTER: Duration = Duration::from_secs(1);
const MAX_CHECK_AFTER: Duration = Duration::from_secs(60);

/// X's `media_category` for a kind of media posted in a tweet.
pub(super) fn media_category(kind: MediaKind) -> Result<&'static str, PlatformFailure> {
    match kind {
        MediaKind::Image => Ok("tweet_image"),
        MediaKind::Gif => Ok("tweet_gif"),
        MediaKind::Video => Ok("tweet_video"),
        MediaKind::Document => Err(media_not_taken("X", "documents", "share it as a link")),
    }
}

fn kind_word(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image",
        MediaKind::Gif => "GIF",
        MediaKind::Video => "video",
        MediaKind::Document => "document",
    }
}

/// How many APPEND segments `total` bytes take in chunks of `chunk` bytes, or why X cannot
/// take them.
pub(super) fn segment_count(total: u64, chunk: u64) -> Result<u64, PlatformFailure> {
    if total == 0 {
        return Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "media_empty",
            "the media file is empty: check the media URL",
        ));
    }
    let chunk = chunk.max(1);
    let segments = total.div_ceil(chunk);
    if segments > MAX_SEGMENTS {
        return Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "media_too_many_segments",
            format!(
                "the media is {total} bytes, which needs {segments} segments of {chunk} bytes; X accepts at most {MAX_SEGMENTS}: raise media_chunk_bytes or use a smaller file"
            ),
        ));
    }
    Ok(segments)
}

#[derive(Debug, Serialize)]
struct InitializeBody<'a> {
    media_type: &'a str,
    total_bytes: u64,
    media_category: &'static str,
}

#[derive(Debug, Deserialize)]
struct InitializeData {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ProcessedData {
    processing_info: Option<ProcessingInfo>,
}

/// `processing_info` of FINALIZE and STATUS.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ProcessingInfo {
    state: String,
    check_after_secs: Option<u64>,
    error: Option<ProcessingError>,
}

#[derive(Debug, Clone, Deserialize)]
struct ProcessingError {
    name: Option<String>,
    message: Option<String>,
}

/// Streams `item` from its URL to X and returns the media id once X can attach it to a post.
pub(super) async fn upload(
    x: &XAdapter,
    token: &Secret,
    item: &MediaItem,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    let kind = kind_word(item.kind);
    let media_category = media_category(item.kind)?;
    let ctx = CallContext::media(kind);
    let mut source = x.media_source.open(&item.url, 0).await?;
    let total = source.require_total()?;
    let chunk = x.config.media_chunk_bytes.max(1);
    segment_count(total, chunk as u64)?;

    let init = x
        .api
        .post(x.config.api_url("2/media/upload/initialize"))
        .bearer_auth(token.expose())
        .json(&InitializeBody {
            media_type: &item.mime_type,
            total_bytes: total,
            media_category,
        });
    let init: Envelope<InitializeData> =
        http::call_json(x, "media_initialize", limits, init, ctx).await?;
    let media_id = init.data.id;
    progress.started(total).await;

    let mut buffer = BytesMut::with_capacity(chunk.min(usize::try_from(total).unwrap_or(chunk)));
    let mut sent = 0u64;
    let mut segment = 0u64;
    while let Some(mut piece) = source.chunk().await? {
        while !piece.is_empty() {
            let take = (chunk - buffer.len()).min(piece.len());
            buffer.extend_from_slice(&piece.split_to(take));
            if buffer.len() == chunk {
                sent += append(
                    x,
                    token,
                    &media_id,
                    segment,
                    buffer.split().freeze(),
                    limits,
                    ctx,
                )
                .await?;
                segment += 1;
                progress.chunk_sent(sent, total).await;
            }
        }
    }
    if !buffer.is_empty() {
        sent += append(
            x,
            token,
            &media_id,
            segment,
            buffer.split().freeze(),
            limits,
            ctx,
        )
        .await?;
        progress.chunk_sent(sent, total).await;
    }
    if sent != total {
        return Err(PlatformFailure::new(
            ErrorClass::Retryable,
            "media_source_truncated",
            format!("the media URL announced {total} bytes but sent {sent}; Herald will try again"),
        ));
    }

    let finalize = x
        .api
        .post(
            x.config
                .api_url(&format!("2/media/upload/{media_id}/finalize")),
        )
        .bearer_auth(token.expose());
    let finalized: Envelope<ProcessedData> =
        http::call_json(x, "media_finalize", limits, finalize, ctx).await?;
    await_processing(
        x,
        token,
        &media_id,
        finalized.data.processing_info,
        kind,
        limits,
    )
    .await?;
    Ok(media_id)
}

/// Sends one segment as `multipart/form-data`; returns its length.
async fn append(
    x: &XAdapter,
    token: &Secret,
    media_id: &str,
    segment: u64,
    data: Bytes,
    limits: &dyn RateLimitGate,
    ctx: CallContext,
) -> Result<u64, PlatformFailure> {
    let len = data.len() as u64;
    let boundary = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    let (body, body_len) = multipart_segment(&boundary, segment, data);
    let request = x
        .api
        .post(
            x.config
                .api_url(&format!("2/media/upload/{media_id}/append")),
        )
        .bearer_auth(token.expose())
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        // Known length, so the streamed body is not sent chunked.
        .header(CONTENT_LENGTH, body_len)
        .body(body);
    http::call(x, "media_append", limits, request, ctx).await?;
    Ok(len)
}

/// The multipart body for one segment, streamed so the chunk is not copied.
fn multipart_segment(boundary: &str, segment: u64, data: Bytes) -> (reqwest::Body, u64) {
    let (head, tail) = multipart_frame(boundary, segment);
    let len = (head.len() + data.len() + tail.len()) as u64;
    let parts = [Bytes::from(head), data, Bytes::from(tail)];
    let stream = futures::stream::iter(parts.map(Ok::<Bytes, std::io::Error>));
    (reqwest::Body::wrap_stream(stream), len)
}

/// Everything around the segment's bytes: the `segment_index` part and the `media` part's
/// headers, then the closing boundary.
fn multipart_frame(boundary: &str, segment: u64) -> (String, String) {
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"segment_index\"\r\n\r\n{segment}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"media\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    (head, format!("\r\n--{boundary}--\r\n"))
}

/// Polls STATUS, as often as X's `check_after_secs` says, until processing ends.
async fn await_processing(
    x: &XAdapter,
    token: &Secret,
    media_id: &str,
    mut info: Option<ProcessingInfo>,
    kind: &'static str,
    limits: &dyn RateLimitGate,
) -> Result<(), PlatformFailure> {
    let ctx = CallContext::media(kind);
    let deadline = tokio::time::Instant::now() + x.config.status_poll_max_wait;
    loop {
        // No processing_info: the media is ready (images).
        let Some(current) = info.take() else {
            return Ok(());
        };
        match current.state.as_str() {
            "succeeded" => return Ok(()),
            "failed" => return Err(processing_failed(kind, current.error.as_ref())),
            _ => {}
        }
        let wait = Duration::from_secs(current.check_after_secs.unwrap_or(1))
            .clamp(MIN_CHECK_AFTER, MAX_CHECK_AFTER);
        if tokio::time::Instant::now() + wait > deadline {
            return Err(PlatformFailure::new(
                ErrorClass::Retryable,
                "media_processing_timeout",
                format!(
                    "X was still processing the {kind} after {} s; Herald will upload it again later",
                    x.config.status_poll_max_wait.as_secs()
                ),
            ));
        }
        tokio::time::sleep(wait).await;
        let request = x
            .api
            .get(x.config.api_url("2/media/upload"))
            .query(&[("command", "STATUS"), ("media_id", media_id)])
            .bearer_auth(token.expose());
        let status: Envelope<ProcessedData> =
            http::call_json(x, "media_status", limits, request, ctx).await?;
        info = status.data.processing_info;
    }
}

fn processing_failed(kind: &str, error: Option<&ProcessingError>) -> PlatformFailure {
    let reason = error
        .and_then(|e| e.message.clone().or_else(|| e.name.clone()))
        .unwrap_or_else(|| "no reason given".to_owned());
    let code = error
        .and_then(|e| e.name.clone())
        .unwrap_or_else(|| "media_processing_failed".to_owned());
    PlatformFailure::new(
        ErrorClass::Permanent,
        code,
        format!(
            "X could not process the {kind}: {reason}; check its format against X's limits (images up to 5 MB; GIFs up to 15 MB and 1280x1080; videos MP4/MOV with H.264 and AAC-LC, 0.5 to 140 s, up to 1280x1024, 60 fps and 512 MB)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_up_and_respect_x_limits() {
        let mib = 1024 * 1024;
        assert_eq!(segment_count(1, 4 * mib).unwrap(), 1);
        assert_eq!(segment_count(4 * mib, 4 * mib).unwrap(), 1);
        assert_eq!(segment_count(4 * mib + 1, 4 * mib).unwrap(), 2);
        assert_eq!(segment_count(512 * mib, 4 * mib).unwrap(), 128);
        assert_eq!(segment_count(1000, 1).unwrap(), 1000);
        let too_many = segment_count(1001, 1).unwrap_err();
        assert_eq!(too_many.class, ErrorClass::Permanent);
        assert_eq!(segment_count(0, 10).unwrap_err().code, "media_empty");
    }

    #[test]
    fn categories_follow_the_media_kind() {
        assert_eq!(media_category(MediaKind::Image), Ok("tweet_image"));
        assert_eq!(media_category(MediaKind::Gif), Ok("tweet_gif"));
        assert_eq!(media_category(MediaKind::Video), Ok("tweet_video"));
        assert_eq!(
            media_category(MediaKind::Document).unwrap_err().code,
            "unsupported_media"
        );
    }

    #[test]
    fn multipart_frame_is_well_formed() {
        let (head, tail) = multipart_frame("B0und", 7);
        let body = format!("{head}DATA{tail}");
        assert_eq!(
            body,
            "--B0und\r\nContent-Disposition: form-data; name=\"segment_index\"\r\n\r\n7\r\n\
             --B0und\r\nContent-Disposition: form-data; name=\"media\"; filename=\"media\"\r\n\
             Content-Type: application/octet-stream\r\n\r\nDATA\r\n--B0und--\r\n"
        );
        let (_, len) = multipart_segment("B0und", 7, Bytes::from_static(b"DATA"));
        assert_eq!(len, body.len() as u64);
    }

    #[test]
    fn failed_processing_says_what_to_check() {
        let err = ProcessingError {
            name: Some("InvalidMedia".into()),
            message: Some("Invalid or Unsupported media, Reason: UnsupportedMedia.".into()),
        };
        let f = processing_failed("video", Some(&err));
        assert_eq!(f.class, ErrorClass::Permanent);
        assert_eq!(f.code, "InvalidMedia");
        assert!(f
            .message
            .starts_with("X could not process the video: Invalid or Unsupported media"));
        assert!(f.message.contains("check its format against X's limits"));
    }
}
