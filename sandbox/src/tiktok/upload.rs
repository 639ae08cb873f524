//! `PUT {upload_url}`: one chunk of a FILE_UPLOAD (platform-facts §2.4).
//!
//! The body is streamed, hashed and counted, never held whole. Every PUT is recorded with its
//! declared range, the bytes that arrived and the answer, so tests can prove that a resumed
//! upload did not send a range twice.

use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;

use super::state::Inner;
use super::{envelope_error, fnv1a, TiktokEndpoint, TiktokState, TiktokUploadRecord};
use crate::faults::{self, Fault};
use crate::twin::Twin as _;

const VIDEO_TYPES: &[&str] = &["video/mp4", "video/quicktime", "video/webm"];

/// `bytes {first}-{last}/{total}` → `(first, last, total)`.
fn parse_content_range(raw: &str) -> Option<(u64, u64, u64)> {
    let rest = raw.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total) = (
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

fn header(req: &HttpRequest, name: impl actix_web::http::header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The upload's progress header: `Content-Range: bytes 0-{last uploaded byte}/{total}`.
fn with_progress(mut resp: HttpResponse, uploaded: u64, total: u64) -> HttpResponse {
    let value = if uploaded == 0 {
        format!("bytes */{total}")
    } else {
        format!("bytes 0-{}/{total}", uploaded - 1)
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut()
            .insert(HeaderName::from_static("content-range"), v);
    }
    resp
}

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    envelope_error(status, code, message)
}

/// Reads and discards the rest of the body; returns how many bytes came.
async fn drain(payload: &mut web::Payload) -> u64 {
    let mut n = 0;
    while let Some(Ok(chunk)) = payload.next().await {
        n += chunk.len() as u64;
    }
    n
}

/// What the request declared, checked against the publish before any byte is read.
struct Declared {
    publish: usize,
    first: u64,
    last: u64,
    total: u64,
    hash: u64,
}

/// Finds the upload task and checks the headers; `Err` is the answer (after draining).
fn check(
    inner: &mut Inner,
    req: &HttpRequest,
    upload_id: &str,
    token: &str,
) -> Result<Declared, HttpResponse> {
    let Some(index) = inner
        .publishes
        .iter()
        .position(|p| p.upload_id.as_deref() == Some(upload_id))
    else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "invalid_params",
            "There is no upload task for this upload_id.",
        ));
    };
    let p = &inner.publishes[index];
    if p.upload_token.as_deref() != Some(token) || Instant::now() >= p.upload_expires_at {
        return Err(error(
            StatusCode::FORBIDDEN,
            "access_token_invalid",
            "The upload_url has expired or its upload_token is wrong.",
        ));
    }
    if p.cancelled {
        return Err(error(
            StatusCode::NOT_FOUND,
            "invalid_params",
            "The upload task no longer exists.",
        ));
    }
    let content_type = header(req, CONTENT_TYPE).unwrap_or_default();
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    if !VIDEO_TYPES.contains(&mime) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_file_upload",
            "Content-Type must be video/mp4, video/quicktime or video/webm.",
        ));
    }
    let Some((first, last, total)) = header(req, "content-range").and_then(parse_content_range)
    else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_file_upload",
            "Content-Range must be bytes {FIRST_BYTE}-{LAST_BYTE}/{TOTAL_BYTE_LENGTH}.",
        ));
    };
    let (video_size, chunk_size, chunks) = (
        p.video_size.unwrap_or_default(),
        p.chunk_size.unwrap_or(1).max(1),
        p.total_chunk_count.unwrap_or(1).max(1),
    );
    if total != video_size {
        return Err(error(StatusCode::BAD_REQUEST, "invalid_file_upload", &format!("The total in Content-Range ({total}) is not the video_size given at init ({video_size}).")));
    }
    let length = last - first + 1;
    if header(req, CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok()) != Some(length) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_file_upload",
            "Content-Length must equal the size of the Content-Range.",
        ));
    }
    if first != p.uploaded_bytes || p.uploaded_bytes == video_size {
        return Err(with_progress(
            error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid_file_upload",
                &format!(
                    "Content-Range starts at byte {first}; the upload has {} bytes.",
                    p.uploaded_bytes
                ),
            ),
            p.uploaded_bytes,
            video_size,
        ));
    }
    // `first` is a chunk boundary (progress always is); the chunk must have its planned size.
    let index_of_chunk = first / chunk_size;
    let expected = if index_of_chunk + 1 >= chunks {
        video_size - (chunks - 1) * chunk_size
    } else {
        chunk_size
    };
    if length != expected {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_file_upload",
            &format!(
                "Chunk {} must be {expected} bytes; got {length}.",
                index_of_chunk + 1
            ),
        ));
    }
    Ok(Declared {
        publish: index,
        first,
        last,
        total,
        hash: p.checksum,
    })
}

/// `PUT /upload/video/?upload_id=&upload_token=`.
pub(crate) async fn put_chunk(
    state: web::Data<TiktokState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let q: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let get = |name: &str| {
        q.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (upload_id, token) = (get("upload_id"), get("upload_token"));
    let range = header(&req, "content-range").and_then(parse_content_range);
    let (seq, checked) = {
        let mut inner = state.lock();
        let publish_id = inner
            .publishes
            .iter()
            .find(|p| p.upload_id.as_deref() == Some(upload_id.as_str()))
            .map(|p| p.publish_id.clone());
        let seq = inner.record_upload(TiktokUploadRecord {
            upload_id: upload_id.clone(),
            publish_id,
            first_byte: range.map(|r| r.0),
            last_byte: range.map(|r| r.1),
            bytes_received: 0,
            status: None,
            accepted: false,
        });
        (seq, check(&mut inner, &req, &upload_id, &token))
    };
    let finish = |bytes: u64, resp: HttpResponse| {
        let accepted = matches!(resp.status().as_u16(), 201 | 206);
        if let Some(r) = state.lock().upload_record(seq) {
            r.bytes_received = bytes;
            r.status = Some(resp.status().as_u16());
            r.accepted = accepted;
        }
        resp
    };
    let declared = match checked {
        Ok(d) => d,
        Err(resp) => {
            let bytes = drain(&mut payload).await;
            return finish(bytes, resp);
        }
    };
    if let Some(injected) = state.take_error(TiktokEndpoint::Upload) {
        let bytes = drain(&mut payload).await;
        return finish(
            bytes,
            error(injected.status, &injected.code, &injected.message),
        );
    }
    let fault = state.take_fault(TiktokEndpoint::Upload);
    if let Some(fault) = &fault {
        tracing::info!(?fault, "tiktok sandbox applying upload fault");
        match fault {
            // A slow receiver: the chunk sits in the client's send buffer meanwhile.
            Fault::SlowProcessing { secs } => tokio::time::sleep(faults::secs(*secs)).await,
            Fault::RateLimited { .. } | Fault::ServerError { .. } | Fault::Timeout { .. } => {
                let bytes = drain(&mut payload).await;
                let resp = super::blocking_fault_response(fault)
                    .await
                    .unwrap_or_else(|| {
                        error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal_error",
                            "Retry the chunk.",
                        )
                    });
                return finish(bytes, resp);
            }
            _ => {}
        }
    }
    let length = declared.last - declared.first + 1;
    let mut hash = declared.hash;
    let mut received = 0u64;
    while let Some(item) = payload.next().await {
        match item {
            Ok(chunk) => {
                received += chunk.len() as u64;
                hash = fnv1a(hash, &chunk);
                if let Some(r) = state.lock().upload_record(seq) {
                    r.bytes_received = received;
                }
            }
            Err(e) => {
                // The client went away mid-chunk: nothing of it counts.
                tracing::info!(error = %e, received, "tiktok sandbox: upload chunk cut off");
                return HttpResponse::BadRequest().finish();
            }
        }
    }
    if received != length {
        return finish(
            received,
            error(
                StatusCode::BAD_REQUEST,
                "invalid_file_upload",
                "The body is not as long as Content-Length.",
            ),
        );
    }
    let (uploaded, done) = {
        let mut inner = state.lock();
        let p = &mut inner.publishes[declared.publish];
        if p.uploaded_bytes != declared.first {
            let uploaded = p.uploaded_bytes;
            drop(inner);
            return finish(
                received,
                with_progress(
                    error(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "invalid_file_upload",
                        "Another request uploaded this range meanwhile.",
                    ),
                    uploaded,
                    declared.total,
                ),
            );
        }
        p.uploaded_bytes = declared.last + 1;
        p.checksum = hash;
        let done = p.uploaded_bytes == declared.total;
        if done {
            p.media_in_at = Some(Instant::now());
        }
        if matches!(fault, Some(Fault::RejectMedia)) {
            p.fail_reason = Some("file_format_check_failed".into());
        }
        if matches!(fault, Some(Fault::ContentRejected { .. })) {
            p.fail_reason = Some("spam_risk_text".into());
        }
        (p.uploaded_bytes, done)
    };
    let status = if done {
        StatusCode::CREATED
    } else {
        StatusCode::PARTIAL_CONTENT
    };
    let resp = finish(
        received,
        with_progress(
            HttpResponse::build(status).finish(),
            uploaded,
            declared.total,
        ),
    );
    if let Some(Fault::TimeoutAfterSuccess { secs }) = &fault {
        tokio::time::sleep(faults::secs(*secs)).await;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, 10)));
        assert_eq!(
            parse_content_range("bytes 40000000-50000122/50000123"),
            Some((40_000_000, 50_000_122, 50_000_123))
        );
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        assert_eq!(parse_content_range("0-9/10"), None);
    }
}
