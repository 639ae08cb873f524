//! `POST /ig-api-upload/{v}/{container-id}`: the bytes of a resumable Instagram container, as
//! `rupload.facebook.com` takes them (platform-facts §4.2): `Authorization: OAuth <token>`, an
//! `offset` and the `file_size` headers, the raw bytes as the body; success is
//! `{"success": true, "message": "Upload successful. ..."}`.
//!
//! The twin takes a file in several requests: each continues at an `offset` no later than what
//! it holds (bytes it already holds are ignored, so a chunk sent again does no harm); a later
//! offset is refused. Facts give no error shapes for rupload, so refusals use the Graph error
//! envelope. The body is streamed and counted, and every request is recorded with its offset,
//! the bytes that arrived and the answer, so tests can prove that a resumed upload did not send
//! a range twice. Once every byte is in, the container processes like one made from a URL.
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde_json::json;

use super::instagram::{
    account_for, ig_error, BASIC, MAX_REEL_BYTES, MAX_STORY_VIDEO_BYTES, PUBLISH,
};
use super::{finish, guard, MetaEndpoint, MetaIgUploadRecord, MetaState, Usage};
use crate::faults::{self, Fault};
use crate::meta_graph::{graph_error, invalid_parameter, no_object};
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

/// Where the upload of a container stands when a request starts.
struct Start {
    /// Bytes the container holds.
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

/// The rupload endpoint.
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
    if let Some(Fault::SlowProcessing { secs }) = &ctx.fault {
        // A slow receiver: the chunk sits in the client's send buffer meanwhile.
        tokio::time::sleep(faults::secs(*secs)).await;
    }
    // Bytes before `held` are already here; the rest extends the file.
    let mut position = start.offset;
    let mut checksum = start.checksum;
    let mut head = Vec::new();
    let mut received = 0u64;
    while let Some(item) = payload.next().await {
        match item {
            Ok(chunk) => {
                received += chunk.len() as u64;
                let skip = start.held.saturating_sub(position).min(chunk.len() as u64) as usize;
                let new = &chunk[skip..];
                if position + (skip as u64) < 8 {
                    let from = (position + skip as u64) as usize;
                    head.extend_from_slice(&new[..new.len().min(8 - from)]);
                }
                checksum = fnv1a(checksum, new);
                position += chunk.len() as u64;
                if let Some(r) = state.lock().ig_uploads.get_mut(seq) {
                    r.bytes_received = received;
                }
            }
            Err(e) => {
                // The client went away mid-request: nothing of it counts.
                tracing::info!(error = %e, received, "meta sandbox: upload cut off");
                return HttpResponse::BadRequest().finish();
            }
        }
    }
    if position > start.file_size {
        return record(
            received,
            invalid_parameter(
                &format!(
                    "The bytes run past the file_size of {} (offset {} plus {received}).",
                    start.file_size, start.offset
                ),
                None,
            ),
        );
    }
    let (held, complete) = {
        let mut inner = state.lock();
        let Some(container) = inner.containers.get_mut(&container_id) else {
            return record(received, no_object(&container_id));
        };
        let Some(upload) = container.upload.as_mut() else {
            return record(received, no_object(&container_id));
        };
        if upload.received != start.held {
            let held = upload.received;
            drop(inner);
            return record(
                received,
                graph_error(
                    StatusCode::CONFLICT,
                    &format!("Another request uploaded to this container meanwhile; it holds {held} bytes."),
                    "OAuthException",
                    100,
                    None,
                ),
            );
        }
        if position > upload.received {
            upload.received = position;
            upload.checksum = checksum;
            let missing = 8usize.saturating_sub(upload.head.len());
            upload.head.extend(head.iter().take(missing));
        }
        upload.file_size = Some(start.file_size);
        let complete = upload.complete();
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
