//! `videos.insert` over Google's resumable upload protocol (facts §7.3).

use std::time::Instant;

use actix_web::http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::api::video_json;
use super::quota::Cost;
use super::state::{digest_hex, Metadata, Outcome, Session, Video};
use super::{
    bad_parameter, blocking_fault_response, finish, google_error, guard, param, parts, query_pairs,
    random_id, video_error, YouTubeByteRange, YouTubeEndpoint, YouTubeState, CHUNK_GRANULARITY,
    MAX_DESCRIPTION_BYTES, MAX_TAGS_CHARS, MAX_TITLE_CHARS,
};
use crate::faults::{self, Fault};
use crate::twin::Twin as _;

const INSERT_SCOPES: &[&str] = &[
    "youtube",
    "youtube.force-ssl",
    "youtube.upload",
    "youtubepartner",
];
/// Categories a video can be assigned to (`videoCategories.list` for US, assignable ones).
const CATEGORIES: &[&str] = &[
    "1", "2", "10", "15", "17", "19", "20", "22", "23", "24", "25", "26", "27", "28", "29",
];
const REJECTION_REASONS: &[&str] = &[
    "copyright",
    "inappropriate",
    "duplicate",
    "termsOfUse",
    "uploaderAccountSuspended",
    "length",
    "claim",
    "uploaderAccountClosed",
    "trademark",
    "legal",
];
/// Header Google's upload servers add to every response of a session.
const UPLOAD_ID_HEADER: &str = "x-guploader-uploadid";

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|h| h.to_str().ok())
}

/// The video metadata of the session-opening request, checked as YouTube checks it.
fn parse_metadata(body: &[u8], parts: Vec<String>) -> Result<Metadata, Box<HttpResponse>> {
    let video: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|_| {
            Box::new(google_error(
                StatusCode::BAD_REQUEST,
                "parseError",
                "global",
                "Parse Error",
            ))
        })?
    };
    let snippet = &video["snippet"];
    let status = &video["status"];
    let title = snippet["title"].as_str().unwrap_or_default().to_owned();
    if title.trim().is_empty()
        || title.chars().count() > MAX_TITLE_CHARS
        || title.contains(['<', '>'])
    {
        return Err(Box::new(video_error(
            "invalidTitle",
            "The request metadata specifies an invalid or empty video title.",
        )));
    }
    let description = snippet["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if description.len() > MAX_DESCRIPTION_BYTES || description.contains(['<', '>']) {
        return Err(Box::new(video_error(
            "invalidDescription",
            "The request metadata specifies an invalid video description.",
        )));
    }
    let tags: Vec<String> = snippet["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let tag_chars: usize = tags
        .iter()
        .map(|t| t.chars().count() + if t.contains(' ') { 2 } else { 0 })
        .sum::<usize>()
        + tags.len().saturating_sub(1);
    if tag_chars > MAX_TAGS_CHARS || tags.iter().any(|t| t.contains(['<', '>'])) {
        return Err(Box::new(video_error(
            "invalidTags",
            "The request metadata specifies invalid video keywords.",
        )));
    }
    let category_id = snippet["categoryId"].as_str().unwrap_or("22").to_owned();
    if !CATEGORIES.contains(&category_id.as_str()) {
        return Err(Box::new(video_error(
            "invalidCategoryId",
            "The snippet.categoryId property specifies an invalid category ID.",
        )));
    }
    let privacy_status = status["privacyStatus"]
        .as_str()
        .unwrap_or("public")
        .to_owned();
    if !matches!(privacy_status.as_str(), "public" | "unlisted" | "private") {
        return Err(Box::new(google_error(
            StatusCode::BAD_REQUEST,
            "invalidValue",
            "global",
            &format!("Invalid value '{privacy_status}'. Values must match one of: public, unlisted, private."),
        )));
    }
    let publish_at = status["publishAt"].as_str().map(str::to_owned);
    if let Some(at) = &publish_at {
        let future = chrono::DateTime::parse_from_rfc3339(at).is_ok_and(|t| t > chrono::Utc::now());
        if privacy_status != "private" || !future {
            return Err(Box::new(video_error(
                "invalidPublishAt",
                "The request metadata specifies an invalid scheduled publishing time.",
            )));
        }
    }
    let license = status["license"].as_str().unwrap_or("youtube").to_owned();
    if !matches!(license.as_str(), "youtube" | "creativeCommon") {
        return Err(Box::new(video_error(
            "invalidLicense",
            "The request metadata specifies an invalid license.",
        )));
    }
    Ok(Metadata {
        title,
        description,
        tags,
        category_id,
        privacy_status,
        publish_at,
        self_declared_made_for_kids: status["selfDeclaredMadeForKids"].as_bool(),
        embeddable: status["embeddable"].as_bool().unwrap_or(true),
        license,
        parts,
    })
}

/// `POST /upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`: opens a session
/// and answers 200 with its URI in `Location`.
pub(crate) async fn start_session(
    state: web::Data<YouTubeState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let q = query_pairs(&req);
    let ctx = match guard(
        &state,
        &req,
        &q,
        YouTubeEndpoint::InsertVideo,
        INSERT_SCOPES,
        Cost::Insert,
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    if param(&q, "uploadType") != Some("resumable") && !req.path().contains("/resumable/") {
        return bad_parameter(
            "invalidUploadType",
            "The sandbox accepts videos only with uploadType=resumable.",
        );
    }
    let parts = parts(&q);
    if parts.is_empty() {
        return bad_parameter(
            "missingRequiredParameter",
            "No filter selected. Expected one of: part",
        );
    }
    let total = match header(&req, "x-upload-content-length").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return bad_parameter(
                "badRequest",
                "X-Upload-Content-Length must be a byte count.",
            )
        }
    };
    if total == Some(0) {
        return video_error(
            "mediaBodyRequired",
            "The request does not include the video content.",
        );
    }
    if total.is_some_and(|n| n > state.config.max_video_bytes) {
        return google_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "uploadTooLarge",
            "global",
            "The video is larger than the largest upload YouTube accepts.",
        );
    }
    let content_type = header(&req, "x-upload-content-type")
        .unwrap_or("application/octet-stream")
        .to_owned();
    if !(content_type.starts_with("video/") || content_type == "application/octet-stream") {
        return google_error(
            StatusCode::BAD_REQUEST,
            "badContent",
            "global",
            &format!("Media type '{content_type}' is not supported. Valid media types: [video/*, application/octet-stream]"),
        );
    }
    let mut metadata = match parse_metadata(&body, parts) {
        Ok(m) => m,
        Err(resp) => return *resp,
    };
    if state.config.unverified_project {
        metadata.privacy_status = "private".to_owned();
    }
    let mut processing = state.config.processing_delay;
    let mut outcome = Outcome::Processed;
    match &ctx.fault {
        Some(Fault::SlowProcessing { secs }) => processing = faults::secs(*secs),
        Some(Fault::RejectMedia) => outcome = Outcome::Failed("codec".to_owned()),
        Some(Fault::ContentRejected { detail }) => {
            let reason = REJECTION_REASONS
                .iter()
                .find(|r| **r == detail.as_str())
                .unwrap_or(&"inappropriate");
            outcome = Outcome::Rejected((*reason).to_owned());
        }
        _ => {}
    }
    let upload_id = {
        let mut inner = state.lock();
        let Some(user) = inner.users.get(&ctx.caller.user_id).cloned() else {
            return super::auth_error();
        };
        let Some(channel) = user.channel else {
            return google_error(
                StatusCode::UNAUTHORIZED,
                "youtubeSignupRequired",
                "global",
                "The user has a Google Account but no YouTube channel.",
            );
        };
        let day_ago = Instant::now().checked_sub(std::time::Duration::from_secs(86_400));
        let recent = inner
            .videos
            .iter()
            .filter(|v| v.channel_id == channel.id && day_ago.is_none_or(|d| v.created >= d))
            .count();
        if recent >= state.config.channel_upload_limit as usize {
            return video_error(
                "uploadLimitExceeded",
                "The user has exceeded the number of videos they may upload.",
            );
        }
        let upload_id = format!("AD{}", random_id(62));
        inner.sessions.insert(
            upload_id.clone(),
            Session {
                upload_id: upload_id.clone(),
                user_id: user.id,
                channel_id: channel.id,
                metadata,
                content_type,
                total,
                confirmed: 0,
                hasher: Sha256::new(),
                expires_at: Instant::now() + state.config.session_lifetime,
                expired: false,
                processing,
                outcome,
                video_id: None,
                busy: false,
            },
        );
        inner.session_order.push(upload_id.clone());
        upload_id
    };
    let location = {
        let conn = req.connection_info();
        format!(
            "{}://{}{}?uploadType=resumable&upload_id={}",
            conn.scheme(),
            conn.host(),
            req.path(),
            upload_id
        )
    };
    let resp = HttpResponse::Ok()
        .insert_header((LOCATION, location))
        .insert_header((UPLOAD_ID_HEADER, upload_id))
        .insert_header((CONTENT_LENGTH, 0))
        .finish();
    finish(ctx.fault.as_ref(), resp).await
}

/// A parsed `Content-Range` of a session PUT.
#[derive(Debug, PartialEq)]
enum ContentRange {
    /// `bytes */N` (or `bytes */*`): where are we?
    Query { total: Option<u64> },
    /// `bytes a-b/N` (or `/*` while the length is unknown).
    Bytes {
        first: u64,
        last: u64,
        total: Option<u64>,
    },
}

fn parse_content_range(raw: &str) -> Option<ContentRange> {
    let rest = raw.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    if range.trim() == "*" {
        return Some(ContentRange::Query { total });
    }
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    (last >= first).then_some(ContentRange::Bytes { first, last, total })
}

/// `308 Resume Incomplete` with the confirmed range (no `Range` when nothing was confirmed).
fn resume_incomplete(upload_id: &str, confirmed: u64) -> HttpResponse {
    let mut resp = HttpResponse::build(StatusCode::PERMANENT_REDIRECT)
        .insert_header((UPLOAD_ID_HEADER, upload_id.to_owned()))
        .insert_header((CONTENT_LENGTH, 0))
        .finish();
    if confirmed > 0 {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes=0-{}", confirmed - 1)) {
            resp.headers_mut().insert(actix_web::http::header::RANGE, v);
        }
    }
    resp
}

fn session_gone() -> HttpResponse {
    google_error(
        StatusCode::NOT_FOUND,
        "notFound",
        "global",
        "The upload session was not found or has expired. Start a new upload.",
    )
}

/// The completed video as the session's final answer.
fn completed(state: &YouTubeState, video_id: &str, status: StatusCode) -> HttpResponse {
    let inner = state.lock();
    let Some(video) = inner.videos.iter().find(|v| v.id == video_id) else {
        return session_gone();
    };
    HttpResponse::build(status)
        .insert_header((UPLOAD_ID_HEADER, video.upload_id.clone()))
        .json(video_json(
            video,
            &video.metadata.parts,
            true,
            Instant::now(),
        ))
}

/// Where a chunk PUT starts reading, decided under the lock.
struct Plan {
    first: u64,
    last: u64,
    /// Bytes of the body before this absolute offset are already held (an overlap).
    confirmed: u64,
    hasher: Sha256,
    total: Option<u64>,
}

/// `PUT <session URI>`: a chunk (`Content-Range: bytes a-b/N`) or a status query
/// (`Content-Range: bytes */N`, empty body).
pub(crate) async fn put_chunk(
    state: web::Data<YouTubeState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let q = query_pairs(&req);
    let Some(upload_id) = param(&q, "upload_id").map(str::to_owned) else {
        return bad_parameter(
            "missingRequiredParameter",
            "upload_id is required on a session PUT.",
        );
    };
    let fault = state.take_fault(YouTubeEndpoint::UploadChunk);
    if let Some(f) = &fault {
        tracing::info!(fault = ?f, "youtube sandbox applying fault to an upload chunk");
        if let Some(resp) = blocking_fault_response(f).await {
            return resp;
        }
    }
    let body_length = header(&req, "content-length").and_then(|v| v.parse::<u64>().ok());
    let range = match header(&req, "content-range") {
        Some(raw) => match parse_content_range(raw) {
            Some(r) => r,
            None => {
                return bad_parameter(
                    "badRequest",
                    &format!("Invalid Content-Range header: {raw}"),
                )
            }
        },
        // A single request carrying the whole file.
        None => match body_length {
            Some(0) | None => ContentRange::Query { total: None },
            Some(n) => ContentRange::Bytes {
                first: 0,
                last: n - 1,
                total: Some(n),
            },
        },
    };

    let plan = {
        let mut inner = state.lock();
        let Some(session) = inner.sessions.get_mut(&upload_id) else {
            return session_gone();
        };
        if let Some(video_id) = session.video_id.clone() {
            drop(inner);
            return completed(&state, &video_id, StatusCode::OK);
        }
        if session.expired || Instant::now() >= session.expires_at {
            session.expired = true;
            return session_gone();
        }
        let (first, last, total) = match range {
            ContentRange::Query { total } => {
                if total.is_some() && session.total.is_some() && total != session.total {
                    return bad_parameter(
                        "badRequest",
                        "The total length in Content-Range does not match the upload's length.",
                    );
                }
                return resume_incomplete(&upload_id, session.confirmed);
            }
            ContentRange::Bytes { first, last, total } => (first, last, total),
        };
        if total.is_some() && session.total.is_some() && total != session.total {
            return bad_parameter(
                "badRequest",
                "The total length in Content-Range does not match X-Upload-Content-Length.",
            );
        }
        let total = total.or(session.total);
        if total.is_some_and(|t| last >= t) {
            return bad_parameter(
                "badRequest",
                "The Content-Range ends beyond the upload's length.",
            );
        }
        if last >= state.config.max_video_bytes {
            return google_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "uploadTooLarge",
                "global",
                "The video is larger than the largest upload YouTube accepts.",
            );
        }
        if first > session.confirmed {
            return bad_parameter(
                "badRequest",
                &format!(
                    "The chunk starts at byte {first} but only {} bytes have been received; resume from there.",
                    session.confirmed
                ),
            );
        }
        let size = last - first + 1;
        let is_final = total.is_some_and(|t| last + 1 == t);
        if !is_final && size % CHUNK_GRANULARITY != 0 {
            return bad_parameter(
                "badRequest",
                &format!("Invalid request. The number of bytes uploaded is required to be equal or greater than 262144, except for the final request (it's recommended to be the exact multiple of 262144). The received request contained {size} bytes, which does not meet this requirement."),
            );
        }
        if body_length.is_some_and(|n| n != size) {
            return bad_parameter(
                "badRequest",
                "Content-Length does not match the Content-Range.",
            );
        }
        if session.busy {
            return google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "backendError",
                "global",
                "Another request is writing to this upload session; retry shortly.",
            );
        }
        session.busy = true;
        if session.total.is_none() {
            session.total = total;
        }
        Plan {
            first,
            last,
            confirmed: session.confirmed,
            hasher: session.hasher.clone(),
            total,
        }
    };

    // Stream the body: bytes already held (an overlap) are skipped, new ones hashed; a
    // snapshot at every 256 KiB boundary is what survives a broken connection.
    let Plan {
        first,
        last,
        confirmed,
        mut hasher,
        total,
    } = plan;
    let expected = last - first + 1;
    let mut received: u64 = 0;
    let mut checkpoint = (confirmed, hasher.clone());
    let mut broken = false;
    while let Some(item) = payload.next().await {
        let Ok(bytes) = item else {
            broken = true;
            break;
        };
        let start = first + received;
        received += bytes.len() as u64;
        if received > expected {
            break;
        }
        let skip = confirmed.saturating_sub(start).min(bytes.len() as u64) as usize;
        let mut offset = start + skip as u64;
        // Split at granularity boundaries so checkpoints land exactly on them.
        let mut rest = &bytes[skip..];
        while !rest.is_empty() {
            let to_boundary =
                (CHUNK_GRANULARITY - offset % CHUNK_GRANULARITY).min(rest.len() as u64) as usize;
            hasher.update(&rest[..to_boundary]);
            offset += to_boundary as u64;
            rest = &rest[to_boundary..];
            if offset.is_multiple_of(CHUNK_GRANULARITY) {
                checkpoint = (offset, hasher.clone());
            }
        }
    }

    let resp = commit(
        &state,
        &upload_id,
        Received {
            first,
            last,
            received,
            broken,
            hasher,
            checkpoint,
            total,
        },
    );
    if matches!(
        resp.status(),
        StatusCode::CREATED | StatusCode::PERMANENT_REDIRECT
    ) {
        return finish(fault.as_ref(), resp).await;
    }
    resp
}

/// What one chunk PUT delivered.
struct Received {
    first: u64,
    last: u64,
    received: u64,
    broken: bool,
    /// SHA-256 of every confirmed byte plus this chunk's new ones.
    hasher: Sha256,
    /// The last 256 KiB boundary reached, with the digest up to it.
    checkpoint: (u64, Sha256),
    total: Option<u64>,
}

/// Records the chunk, moves the session's confirmed offset and, when the last byte has
/// arrived, creates the video.
fn commit(state: &YouTubeState, upload_id: &str, chunk: Received) -> HttpResponse {
    let Received {
        first,
        last,
        received,
        broken,
        hasher,
        checkpoint,
        total,
    } = chunk;
    let expected = last - first + 1;
    let mut inner = state.lock();
    if received > 0 {
        inner.received.push(YouTubeByteRange {
            upload_id: upload_id.to_owned(),
            first,
            last: first + received.min(expected) - 1,
            complete: !broken && received == expected,
        });
    }
    let Some(session) = inner.sessions.get_mut(upload_id) else {
        return session_gone();
    };
    session.busy = false;
    if broken || received != expected {
        // Keep what arrived up to the last 256 KiB boundary, as Google's servers persist data.
        if broken && checkpoint.0 > session.confirmed {
            session.confirmed = checkpoint.0;
            session.hasher = checkpoint.1;
        }
        let message = if broken {
            "The connection closed before the chunk arrived whole."
        } else {
            "The body length does not match the Content-Range."
        };
        return bad_parameter("badRequest", message);
    }
    if last + 1 > session.confirmed {
        session.confirmed = last + 1;
        session.hasher = hasher;
    }
    if total != Some(session.confirmed) {
        return resume_incomplete(upload_id, session.confirmed);
    }
    let session = session.clone();
    let channel_title = inner
        .users
        .get(&session.user_id)
        .and_then(|u| u.channel.as_ref())
        .map(|c| c.title.clone())
        .unwrap_or_default();
    let video_id = random_id(11);
    inner.videos.push(Video {
        id: video_id.clone(),
        channel_id: session.channel_id.clone(),
        channel_title,
        upload_id: upload_id.to_owned(),
        metadata: session.metadata.clone(),
        bytes: session.confirmed,
        sha256: digest_hex(&session.hasher),
        content_type: session.content_type.clone(),
        created: Instant::now(),
        published_at: chrono::Utc::now(),
        processing: session.processing,
        outcome: session.outcome.clone(),
        thumbnail_bytes: None,
    });
    if let Some(s) = inner.sessions.get_mut(upload_id) {
        s.video_id = Some(video_id.clone());
    }
    drop(inner);
    completed(state, &video_id, StatusCode::CREATED)
}

/// The `Content-Type` of a request, lowercased without parameters.
pub(crate) fn content_type(req: &HttpRequest) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-262143/1000000"),
            Some(ContentRange::Bytes {
                first: 0,
                last: 262_143,
                total: Some(1_000_000)
            })
        );
        assert_eq!(
            parse_content_range("bytes */1000000"),
            Some(ContentRange::Query {
                total: Some(1_000_000)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*"),
            Some(ContentRange::Bytes {
                first: 5,
                last: 9,
                total: None
            })
        );
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
