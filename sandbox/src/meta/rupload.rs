//! `rupload.facebook.com`, the host that takes the bytes of Meta's resumable uploads:
//! - `POST /ig-api-upload/{v}/{container-id}`: a resumable Instagram container (platform-facts
//!   §4.2); success is `{"success": true, "message": "Upload successful. ..."}`;
//! - `POST /video-upload/{v}/{video-id}`: a Facebook Page reel opened by `POST
//!   /{page-id}/video_reels` with `upload_phase=start` (Reels Publishing API,
//!   developers.facebook.com/docs/video-api/guides/reels-publishing); success is
//!   `{"success": true}`.
//!
//! Both take `Authorization: OAuth <token>`, an `offset` and the `file_size` headers and the raw
//! bytes as the body. The twin takes a file in several requests: each continues at an `offset`
//! no later than what it holds (bytes it already holds are ignored, so a chunk sent again does
//! no harm); a later offset is refused. Meta documents no error shapes for rupload, so refusals
//! use the Graph error envelope. The body is streamed and counted, and every request is recorded
//! with its offset, the bytes that arrived and the answer, so tests can prove that a resumed
//! upload did not send a range twice. Once every byte is in, an Instagram container processes
//! like one made from a URL, and a reel waits for `upload_phase=finish`.
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde_json::json;

use super::graph::{graph_error, invalid_parameter, no_object};
use super::instagram::{
    account_for, ig_error, BASIC, MAX_REEL_BYTES, MAX_STORY_VIDEO_BYTES, PUBLISH,
};
use super::state::ResumableUpload;
use super::{
    finish, guard, require_page_token, MetaEndpoint, MetaIgUploadRecord, MetaReelUploadRecord,
    MetaState, Usage,
};
use crate::faults::{self, Fault};
use crate::tiktok::{fnv1a, FNV_OFFSET};

fn header_u64(req: &HttpRequest, name: &str) -> Option<u64> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads and discards the rest of the body; returns how many bytes came.
async fn drain(payload: &mut web::Payload) -> u64 {
    let mut n = 0;
    while let Some(Ok(chunk)) = payload.next().await {
        n += chunk.len() as u64;
    }
    n
}

/// Where an upload stands when a request starts.
struct Start {
    /// Bytes the upload holds.
    held: u64,
    checksum: u64,
    file_size: u64,
    offset: u64,
}

/// Checks the request against the container; `Err` is the answer.
fn check(
    state: &MetaState,
    container_id: &str,
    offset: Option<u64>,
    file_size: Option<u64>,
) -> Result<Start, HttpResponse> {
    let inner = state.lock();
    let Some(container) = inner.containers.get(container_id) else {
        return Err(no_object(container_id));
    };
    let Some(upload) = &container.upload else {
        return Err(invalid_parameter(
            "This media container was not created with upload_type=resumable.",
            None,
        ));
    };
    if container.published_id.is_some() {
        return Err(invalid_parameter(
            "The media container has already been published.",
            None,
        ));
    }
    if Instant::now() >= container.expires_at {
        return Err(ig_error(
            -2,
            2_207_020,
            "The media you are trying to access has expired. Please try to upload again.",
        ));
    }
    check_offsets(upload, offset, file_size)
}

/// The offset and file_size headers against what `upload` holds (the rules both uploads share).
fn check_offsets(
    upload: &ResumableUpload,
    offset: Option<u64>,
    file_size: Option<u64>,
) -> Result<Start, HttpResponse> {
    let (Some(offset), Some(file_size)) = (offset, file_size) else {
        return Err(invalid_parameter(
            "The offset and file_size headers are required.",
            None,
        ));
    };
    if upload
        .file_size
        .is_some_and(|announced| announced != file_size)
        || file_size == 0
    {
        return Err(invalid_parameter(
            &format!(
                "The file_size header ({file_size}) is not the size this upload started with ({}).",
                upload.file_size.unwrap_or_default()
            ),
            None,
        ));
    }
    if offset > upload.received {
        return Err(invalid_parameter(
            &format!(
                "The offset {offset} is past the {} bytes received; continue from there.",
                upload.received
            ),
            None,
        ));
    }
    Ok(Start {
        held: upload.received,
        checksum: if upload.received == 0 {
            FNV_OFFSET
        } else {
            upload.checksum
        },
        file_size,
        offset,
    })
}

/// The rupload endpoint of Instagram containers.
pub(crate) async fn upload(
    state: web::Data<MetaState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let container_id = req
        .match_info()
        .get("container")
        .unwrap_or_default()
        .to_owned();
    let (offset, file_size) = (header_u64(&req, "offset"), header_u64(&req, "file_size"));
    let seq = {
        let mut inner = state.lock();
        inner.ig_uploads.push(MetaIgUploadRecord {
            container_id: container_id.clone(),
            offset,
            file_size,
            bytes_received: 0,
            status: None,
            accepted: false,
        });
        inner.ig_uploads.len() - 1
    };
    let record = |bytes: u64, resp: HttpResponse| {
        let accepted = resp.status().is_success();
        if let Some(r) = state.lock().ig_uploads.get_mut(seq) {
            r.bytes_received = bytes;
            r.status = Some(resp.status().as_u16());
            r.accepted = accepted;
        }
        resp
    };
    let owner = state
        .lock()
        .containers
        .get(&container_id)
        .map(|c| c.ig_id.clone())
        .unwrap_or_default();
    let usage_owner = owner.clone();
    let ctx = match guard(&state, &req, &[], MetaEndpoint::IgUpload, move |_| {
        Usage::Instagram(usage_owner)
    })
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => {
            let bytes = drain(&mut payload).await;
            return record(bytes, resp);
        }
    };
    if let Err(resp) = account_for(&state, &ctx.caller, &owner, &[BASIC, PUBLISH]) {
        let bytes = drain(&mut payload).await;
        return record(bytes, resp);
    }
    let start = match check(&state, &container_id, offset, file_size) {
        Ok(start) => start,
        Err(resp) => {
            let bytes = drain(&mut payload).await;
            return record(bytes, resp);
        }
    };
    slow_receiver(ctx.fault.as_ref()).await;
    let arrived = match receive(&mut payload, &start, |received| {
        if let Some(r) = state.lock().ig_uploads.get_mut(seq) {
            r.bytes_received = received;
        }
    })
    .await
    {
        Ok(arrived) => arrived,
        Err(resp) => return resp,
    };
    let received = arrived.bytes;
    if let Err(resp) = past_the_end(&start, &arrived) {
        return record(received, resp);
    }
    let (held, complete) = {
        let mut inner = state.lock();
        let Some(container) = inner.containers.get_mut(&container_id) else {
            return record(received, no_object(&container_id));
        };
        let Some(upload) = container.upload.as_mut() else {
            return record(received, no_object(&container_id));
        };
        let complete = match commit(upload, &start, arrived) {
            Ok(complete) => complete,
            Err(resp) => {
                drop(inner);
                return record(received, resp);
            }
        };
        if complete && container.error.is_none() {
            let max = if container.media_type == "STORIES" {
                MAX_STORY_VIDEO_BYTES
            } else {
                MAX_REEL_BYTES
            };
            if upload.head.get(4..8) != Some(b"ftyp".as_slice()) {
                container.error = Some((
                    2_207_026,
                    "The video format is not supported. Use MOV or MP4.".to_owned(),
                ));
            } else if start.file_size > max {
                container.error = Some((
                    2_207_026,
                    format!("The video is larger than {} MB.", max / (1024 * 1024)),
                ));
            }
        }
        if complete {
            container.ready_at = Instant::now() + upload.processing;
        }
        (upload.received, complete)
    };
    let message = if complete {
        "Upload successful. The video is being processed.".to_owned()
    } else {
        format!(
            "Upload successful. {held} of {} bytes received.",
            start.file_size
        )
    };
    let resp = record(
        received,
        HttpResponse::Ok().json(json!({"success": true, "message": message})),
    );
    finish(ctx, resp).await
}

/// A slow receiver (the `slow_processing` fault): the chunk sits in the client's send buffer
/// meanwhile.
async fn slow_receiver(fault: Option<&Fault>) {
    if let Some(Fault::SlowProcessing { secs }) = fault {
        tokio::time::sleep(faults::secs(*secs)).await;
    }
}

/// What one request brought, counted as it streamed.
struct Arrived {
    /// The offset after the last byte of the request.
    position: u64,
    /// FNV-1a of the bytes held, extended with the new ones.
    checksum: u64,
    /// New bytes among the file's first 8.
    head: Vec<u8>,
    /// Bytes the request carried (new or not).
    bytes: u64,
}

/// Streams the body from `start`: bytes before `start.held` are already here and only counted;
/// the rest extends the file. `progress` hears the running count. `Err` when the client went
/// away mid-request: nothing of it counts.
async fn receive(
    payload: &mut web::Payload,
    start: &Start,
    progress: impl Fn(u64),
) -> Result<Arrived, HttpResponse> {
    let mut arrived = Arrived {
        position: start.offset,
        checksum: start.checksum,
        head: Vec::new(),
        bytes: 0,
    };
    while let Some(item) = payload.next().await {
        match item {
            Ok(chunk) => {
                arrived.bytes += chunk.len() as u64;
                let skip = start
                    .held
                    .saturating_sub(arrived.position)
                    .min(chunk.len() as u64) as usize;
                let new = &chunk[skip..];
                if arrived.position + (skip as u64) < 8 {
                    let from = (arrived.position + skip as u64) as usize;
                    arrived
                        .head
                        .extend_from_slice(&new[..new.len().min(8 - from)]);
                }
                arrived.checksum = fnv1a(arrived.checksum, new);
                arrived.position += chunk.len() as u64;
                progress(arrived.bytes);
            }
            Err(e) => {
                tracing::info!(error = %e, received = arrived.bytes, "meta sandbox: upload cut off");
                return Err(HttpResponse::BadRequest().finish());
            }
        }
    }
    Ok(arrived)
}

/// Refuses bytes past the announced `file_size`.
fn past_the_end(start: &Start, arrived: &Arrived) -> Result<(), HttpResponse> {
    if arrived.position > start.file_size {
        return Err(invalid_parameter(
            &format!(
                "The bytes run past the file_size of {} (offset {} plus {}).",
                start.file_size, start.offset, arrived.bytes
            ),
            None,
        ));
    }
    Ok(())
}

/// Adds what arrived to `upload`, unless another request uploaded meanwhile; returns whether
/// every byte is in.
fn commit(
    upload: &mut ResumableUpload,
    start: &Start,
    arrived: Arrived,
) -> Result<bool, HttpResponse> {
    if upload.received != start.held {
        return Err(graph_error(
            StatusCode::CONFLICT,
            &format!(
                "Another request uploaded to this file meanwhile; it holds {} bytes.",
                upload.received
            ),
            "OAuthException",
            100,
            None,
        ));
    }
    if arrived.position > upload.received {
        upload.received = arrived.position;
        upload.checksum = arrived.checksum;
        let missing = 8usize.saturating_sub(upload.head.len());
        upload.head.extend(arrived.head.iter().take(missing));
    }
    upload.file_size = Some(start.file_size);
    Ok(upload.complete())
}

/// Checks a reel upload request against its video; `Err` is the answer.
fn check_reel(
    state: &MetaState,
    video_id: &str,
    caller: &super::state::Caller,
    offset: Option<u64>,
    file_size: Option<u64>,
) -> Result<Start, HttpResponse> {
    let inner = state.lock();
    let Some(video) = inner.videos.iter().find(|v| v.id == video_id) else {
        return Err(no_object(video_id));
    };
    let Some(upload) = video.upload.as_ref().filter(|_| video.reel) else {
        return Err(invalid_parameter(
            "This video was not opened with POST /{page-id}/video_reels upload_phase=start.",
            None,
        ));
    };
    require_page_token(caller, &video.page_id)?;
    if video.post_id.is_some() {
        return Err(invalid_parameter(
            "The reel has already been published.",
            None,
        ));
    }
    check_offsets(upload, offset, file_size)
}

/// `POST /video-upload/{v}/{video-id}`: the bytes of a Facebook Page reel.
pub(crate) async fn video_upload(
    state: web::Data<MetaState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let video_id = req.match_info().get("video").unwrap_or_default().to_owned();
    let (offset, file_size) = (header_u64(&req, "offset"), header_u64(&req, "file_size"));
    let seq = {
        let mut inner = state.lock();
        inner.reel_uploads.push(MetaReelUploadRecord {
            video_id: video_id.clone(),
            offset,
            file_size,
            bytes_received: 0,
            status: None,
            accepted: false,
        });
        inner.reel_uploads.len() - 1
    };
    let record = |bytes: u64, resp: HttpResponse| {
        let accepted = resp.status().is_success();
        if let Some(r) = state.lock().reel_uploads.get_mut(seq) {
            r.bytes_received = bytes;
            r.status = Some(resp.status().as_u16());
            r.accepted = accepted;
        }
        resp
    };
    let ctx = match guard(&state, &req, &[], MetaEndpoint::ReelUpload, Usage::of).await {
        Ok(ctx) => ctx,
        Err(resp) => {
            let bytes = drain(&mut payload).await;
            return record(bytes, resp);
        }
    };
    let start = match check_reel(&state, &video_id, &ctx.caller, offset, file_size) {
        Ok(start) => start,
        Err(resp) => {
            let bytes = drain(&mut payload).await;
            return record(bytes, resp);
        }
    };
    slow_receiver(ctx.fault.as_ref()).await;
    let arrived = match receive(&mut payload, &start, |received| {
        if let Some(r) = state.lock().reel_uploads.get_mut(seq) {
            r.bytes_received = received;
        }
    })
    .await
    {
        Ok(arrived) => arrived,
        Err(resp) => return resp,
    };
    let received = arrived.bytes;
    if let Err(resp) = past_the_end(&start, &arrived) {
        return record(received, resp);
    }
    {
        let mut inner = state.lock();
        let Some(video) = inner.videos.iter_mut().find(|v| v.id == video_id) else {
            return record(received, no_object(&video_id));
        };
        let Some(upload) = video.upload.as_mut() else {
            return record(received, no_object(&video_id));
        };
        let complete = match commit(upload, &start, arrived) {
            Ok(complete) => complete,
            Err(resp) => {
                drop(inner);
                return record(received, resp);
            }
        };
        video.received = upload.received;
        video.file_size = start.file_size;
        if complete && upload.head.get(4..8) != Some(b"ftyp".as_slice()) {
            // Processing fails once the reel is finished, as Meta's would.
            video.reject = true;
        }
    }
    let resp = record(received, HttpResponse::Ok().json(json!({"success": true})));
    finish(ctx, resp).await
}
