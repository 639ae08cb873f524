//! The YouTube Data API v3 twin (with Google's OAuth endpoints), mounted under `/youtube`.
//!
//! Shapes follow `platform-facts.md` §7 and the discovery document in
//! `platform-specs/youtube-v3-discovery.json`. Routes (all relative to `/youtube`; on the real
//! services the OAuth routes live on `accounts.google.com` / `oauth2.googleapis.com` and the API
//! on `www.googleapis.com`):
//!
//! | Method | Path | Purpose | Quota |
//! |---|---|---|---|
//! | GET | `/o/oauth2/v2/auth` | auto-approving consent, 302 to the client with `code` and `state` | – |
//! | POST | `/token` | `authorization_code` (PKCE) and `refresh_token` grants | – |
//! | POST | `/revoke` | revokes a token and its whole grant | – |
//! | GET | `/youtube/v3/channels?part=&mine=true` | the caller's channel | 1 |
//! | GET | `/youtube/v3/videos?part=&id=` | videos by id (owner sees status and processing) | 1 |
//! | GET | `/youtube/v3/playlistItems?part=&playlistId=` | a channel's uploads, newest first | 1 |
//! | GET | `/youtube/v3/search?part=snippet&forMine=true&type=video` | the caller's videos | 100 |
//! | POST | `/upload/youtube/v3/videos?uploadType=resumable&part=` | opens a resumable session (`Location`) | 1600 |
//! | PUT | `/upload/youtube/v3/videos?uploadType=resumable&upload_id=` | a chunk, or a status query | – |
//! | POST | `/upload/youtube/v3/thumbnails/set?videoId=` (also `/youtube/v3/thumbnails/set`) | custom thumbnail | 50 |
//! | POST/GET/DELETE | `/_sandbox/faults` | fault injection (not part of YouTube) | |
//! | GET | `/_sandbox/state` | read-only state dump (not part of YouTube) | |
//! | GET/POST | `/_sandbox/quota` | read or set the day's quota usage (not part of YouTube) | |
//! | POST | `/_sandbox/expire_sessions` | every open upload session answers 404 from now on | |
//!
//! The resumable protocol is Google's (facts §7.3): chunks carry `Content-Range: bytes a-b/N`,
//! every chunk but the last is a multiple of 256 KiB, an incomplete upload answers
//! `308 Resume Incomplete` with `Range: bytes=0-LAST`, and `Content-Range: bytes */N` asks for
//! the confirmed offset. Bytes are streamed, never held: the twin keeps a running SHA-256 of the
//! confirmed bytes and records every byte range it received (`received`), so tests can assert
//! that a resumed upload re-sent nothing beyond the chunk that was in flight.
//!
//! Quota is counted per project (the one OAuth client) per day, the day ending at midnight
//! Pacific time (facts §7.5), under either of the two documented models.

mod api;
mod control;
mod oauth;
mod quota;
mod state;
mod upload;

use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::faults::{self, Fault};
use crate::twin::Twin as _;
pub use quota::{next_pacific_midnight, pacific_date};
use state::Caller;
pub(crate) use state::YouTubeState;

/// Default OAuth client id of the twin (a Google Cloud project's web client).
pub const DEFAULT_CLIENT_ID: &str = "herald-sandbox-youtube.apps.googleusercontent.com";
/// Default client secret of the twin.
pub const DEFAULT_CLIENT_SECRET: &str = "herald-sandbox-youtube-secret";
/// The Google account that authorizes when no `sandbox_user` is given.
pub const DEFAULT_USERNAME: &str = "heraldsandbox";
/// Title of the default account's channel.
pub const DEFAULT_CHANNEL_TITLE: &str = "Herald Sandbox";
/// A `sandbox_user` starting with this prefix is a Google account without a YouTube channel.
pub const NO_CHANNEL_PREFIX: &str = "nochannel";
/// Scope prefix of every YouTube scope.
pub const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";
/// Longest title (characters) and description (bytes) YouTube accepts.
pub const MAX_TITLE_CHARS: usize = 100;
pub const MAX_DESCRIPTION_BYTES: usize = 5000;
/// Longest combined tag text (characters, facts-adjacent: YouTube Studio's 500).
pub const MAX_TAGS_CHARS: usize = 500;
/// Google's resumable chunk granularity.
pub const CHUNK_GRANULARITY: u64 = 256 * 1024;
/// Largest thumbnail (facts §7.4: 2 MiB).
pub const MAX_THUMBNAIL_BYTES: u64 = 2 * 1024 * 1024;

/// How `videos.insert` is charged (facts §7.5: the documentation changed over time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum YouTubeQuotaModel {
    /// One pool of `daily_units`; `videos.insert` costs `insert_cost` (long documented: 1600),
    /// `search.list` 100.
    Legacy { insert_cost: u64 },
    /// `videos.insert` and `search.list` have buckets of their own (calls per day); every other
    /// call draws from `daily_units`.
    Buckets {
        inserts_per_day: u64,
        searches_per_day: u64,
    },
}

/// Configuration of the YouTube twin.
#[derive(Debug, Clone)]
pub struct YouTubeConfig {
    /// The one registered OAuth client (one Google Cloud project).
    pub client_id: String,
    pub client_secret: String,
    /// Access-token lifetime (Google: about an hour).
    pub access_token_lifetime: Duration,
    /// How long an uploaded video stays `processing`.
    pub processing_delay: Duration,
    /// How the day's quota is counted.
    pub quota_model: YouTubeQuotaModel,
    /// Units per project per Pacific day (default 10,000).
    pub daily_units: u64,
    /// Uploads per channel per rolling 24 h before `uploadLimitExceeded` (undocumented number).
    pub channel_upload_limit: u32,
    /// How long a resumable session URI lives (Google: about a week).
    pub session_lifetime: Duration,
    /// Largest video (discovery doc: 256 GiB).
    pub max_video_bytes: u64,
    /// An unverified project's uploads are forced to private (facts §7.5).
    pub unverified_project: bool,
}

impl Default for YouTubeConfig {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            access_token_lifetime: Duration::from_secs(3599),
            processing_delay: Duration::from_millis(300),
            quota_model: YouTubeQuotaModel::Legacy { insert_cost: 1600 },
            daily_units: 10_000,
            channel_upload_limit: 100,
            session_lifetime: Duration::from_secs(7 * 86_400),
            max_video_bytes: 274_877_906_944,
            unverified_project: false,
        }
    }
}

/// A YouTube (or Google OAuth) endpoint, as named in fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum YouTubeEndpoint {
    /// `POST /token`.
    Token,
    /// `POST /revoke`.
    Revoke,
    /// `GET /youtube/v3/channels`.
    Channels,
    /// `POST /upload/youtube/v3/videos` (opening a resumable session).
    InsertVideo,
    /// `PUT` on a session URI (a chunk or a status query).
    UploadChunk,
    /// `GET /youtube/v3/videos`.
    ListVideos,
    /// `GET /youtube/v3/playlistItems`.
    PlaylistItems,
    /// `GET /youtube/v3/search`.
    Search,
    /// `POST .../thumbnails/set`.
    SetThumbnail,
    /// Wildcard: applies to any endpoint whose own queue is empty.
    Any,
}

/// Snapshot of the YouTube twin, as served by `GET /youtube/_sandbox/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YouTubeStateSnapshot {
    /// Every video whose upload completed, oldest first.
    pub videos: Vec<YouTubeVideoSnapshot>,
    /// Every resumable session, oldest first.
    pub sessions: Vec<YouTubeSessionSnapshot>,
    /// Every byte range a session PUT delivered, in arrival order, duplicates included.
    pub received: Vec<YouTubeByteRange>,
    /// Every token issued (plaintext, so tests can grep for leaks).
    pub tokens_issued: Vec<YouTubeIssuedToken>,
    /// The day's quota usage.
    pub quota: YouTubeQuotaSnapshot,
    /// Recent requests to YouTube routes (the `/_sandbox` routes are not recorded).
    pub requests: Vec<crate::RequestRecord>,
}

/// An uploaded video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YouTubeVideoSnapshot {
    pub id: String,
    pub channel_id: String,
    pub upload_id: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub category_id: String,
    pub privacy_status: String,
    pub self_declared_made_for_kids: Option<bool>,
    pub publish_at: Option<String>,
    /// Bytes received and their SHA-256 (lowercase hex), in order.
    pub bytes: u64,
    pub sha256: String,
    pub content_type: String,
    /// `uploaded`, `processed`, `failed` or `rejected`.
    pub upload_status: String,
    /// Bytes of the custom thumbnail, once set.
    pub thumbnail_bytes: Option<u64>,
    pub url: String,
    pub published_at: String,
}

/// A resumable upload session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YouTubeSessionSnapshot {
    pub upload_id: String,
    pub channel_id: String,
    /// From `X-Upload-Content-Length`, or the first chunk that names it.
    pub total: Option<u64>,
    /// Bytes confirmed so far.
    pub confirmed: u64,
    /// The video, once complete.
    pub video_id: Option<String>,
    pub expired: bool,
}

/// Bytes `first..=last` of session `upload_id` arrived in one PUT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YouTubeByteRange {
    pub upload_id: String,
    pub first: u64,
    pub last: u64,
    /// The PUT's body arrived whole (false: the connection broke mid-chunk).
    pub complete: bool,
}

/// A token issued by the twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YouTubeIssuedToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub user: String,
}

/// The day's quota usage of the project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct YouTubeQuotaSnapshot {
    /// The Pacific date the counts belong to (`YYYY-MM-DD`).
    pub day: String,
    pub units_used: u64,
    pub daily_units: u64,
    /// `videos.insert` calls charged today (either model).
    pub inserts: u64,
    /// `search.list` calls charged today.
    pub searches: u64,
    /// Calls refused with `quotaExceeded` today.
    pub refused: u64,
    pub model: YouTubeQuotaModel,
}

/// The `/youtube` scope with every route and the request-recording middleware.
pub(crate) fn scope(state: web::Data<YouTubeState>) -> impl HttpServiceFactory {
    crate::twin::scope("/youtube", state)
        .route("/_sandbox/quota", web::get().to(control::quota))
        .route("/_sandbox/quota", web::post().to(control::set_quota))
        .route(
            "/_sandbox/expire_sessions",
            web::post().to(control::expire_sessions),
        )
        .route("/o/oauth2/v2/auth", web::get().to(oauth::authorize))
        .route("/token", web::post().to(oauth::token))
        .route("/revoke", web::post().to(oauth::revoke))
        .route("/youtube/v3/channels", web::get().to(api::channels))
        .route("/youtube/v3/videos", web::get().to(api::list_videos))
        .route(
            "/youtube/v3/playlistItems",
            web::get().to(api::playlist_items),
        )
        .route("/youtube/v3/search", web::get().to(api::search))
        .route(
            "/upload/youtube/v3/videos",
            web::post().to(upload::start_session),
        )
        .route(
            "/resumable/upload/youtube/v3/videos",
            web::post().to(upload::start_session),
        )
        .route(
            "/upload/youtube/v3/videos",
            web::put().to(upload::put_chunk),
        )
        .route(
            "/resumable/upload/youtube/v3/videos",
            web::put().to(upload::put_chunk),
        )
        .route(
            "/upload/youtube/v3/thumbnails/set",
            web::post().to(api::set_thumbnail),
        )
        .route(
            "/youtube/v3/thumbnails/set",
            web::post().to(api::set_thumbnail),
        )
        .default_service(web::to(|| async {
            google_error(StatusCode::NOT_FOUND, "notFound", "global", "Not Found")
        }))
}

/// The gRPC-style `status` Google puts beside `code`.
fn google_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        413 => "INVALID_ARGUMENT",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if status.is_server_error() => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// A Google API error (facts §7.6):
/// `{"error":{"code","message","errors":[{"message","domain","reason"}],"status"}}`.
pub(crate) fn google_error(
    status: StatusCode,
    reason: &str,
    domain: &str,
    message: &str,
) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "errors": [{ "message": message, "domain": domain, "reason": reason }],
            "status": google_status(status),
        }
    }))
}

/// 400 `badRequest`-family error in the `youtube.video` domain (metadata problems).
pub(crate) fn video_error(reason: &str, message: &str) -> HttpResponse {
    google_error(StatusCode::BAD_REQUEST, reason, "youtube.video", message)
}

/// 400 for a missing or malformed parameter.
pub(crate) fn bad_parameter(reason: &str, message: &str) -> HttpResponse {
    google_error(
        StatusCode::BAD_REQUEST,
        reason,
        "youtube.parameter",
        message,
    )
}

/// 401 as Google sends it for a missing, expired or revoked access token.
pub(crate) fn auth_error() -> HttpResponse {
    let mut resp = HttpResponse::Unauthorized().json(json!({
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            "errors": [{
                "message": "Invalid Credentials",
                "domain": "global",
                "reason": "authError",
                "location": "Authorization",
                "locationType": "header",
            }],
            "status": "UNAUTHENTICATED",
        }
    }));
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
        ),
    );
    resp
}

/// 403 `insufficientPermissions`: the token lacks every scope the method accepts.
pub(crate) fn insufficient_scopes() -> HttpResponse {
    google_error(
        StatusCode::FORBIDDEN,
        "insufficientPermissions",
        "global",
        "Request had insufficient authentication scopes.",
    )
}

/// 403 `quotaExceeded` (facts §7.6).
pub(crate) fn quota_exceeded() -> HttpResponse {
    google_error(
        StatusCode::FORBIDDEN,
        "quotaExceeded",
        "youtube.quota",
        "The request cannot be completed because you have exceeded your <a href=\"/youtube/v3/getting-started#quota\">quota</a>.",
    )
}

/// The response for a fault that prevents any effect, if `fault` is one.
pub(crate) async fn blocking_fault_response(fault: &Fault) -> Option<HttpResponse> {
    match fault {
        Fault::RateLimited { retry_after_secs } => {
            let mut resp = google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rateLimitExceeded",
                "usageLimits",
                "The request cannot be completed because you have exceeded a short-term rate limit. Slow down.",
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(RETRY_AFTER, v);
            }
            Some(resp)
        }
        Fault::ServerError { status } => Some(google_error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "backendError",
            "global",
            "Backend Error",
        )),
        Fault::Timeout { secs } => {
            tokio::time::sleep(faults::secs(*secs)).await;
            Some(google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "backendError",
                "global",
                "The service is currently unavailable.",
            ))
        }
        _ => None,
    }
}

/// What an authorized API request carries into its handler.
pub(crate) struct Ctx {
    pub caller: Caller,
    /// A fault the handler itself applies (processing, rejection, timeout after success).
    pub fault: Option<Fault>,
}

/// The access token of a request: `Authorization: Bearer` or the `access_token` parameter.
fn request_token(req: &HttpRequest, query: &[(String, String)]) -> Option<String> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::oauth::parse_bearer)
        .map(str::to_owned)
        .or_else(|| param(query, "access_token").map(str::to_owned))
}

/// Authenticates, checks that the token carries one of `scopes` (short names, e.g.
/// `youtube.upload`), applies request-level faults and charges `cost` quota. `Err` is the
/// response to send as is.
pub(crate) async fn guard(
    state: &YouTubeState,
    req: &HttpRequest,
    query: &[(String, String)],
    endpoint: YouTubeEndpoint,
    scopes: &[&str],
    cost: quota::Cost,
) -> Result<Ctx, HttpResponse> {
    let Some(caller) = request_token(req, query).and_then(|t| state.authenticate(&t)) else {
        return Err(auth_error());
    };
    let allowed = scopes.iter().any(|s| {
        caller
            .scopes
            .iter()
            .any(|c| c.strip_prefix(SCOPE_PREFIX) == Some(*s))
    });
    if !allowed {
        return Err(insufficient_scopes());
    }
    let fault = state.take_fault(endpoint);
    if let Some(fault) = &fault {
        tracing::info!(?endpoint, ?fault, "youtube sandbox applying fault");
        if let Some(resp) = blocking_fault_response(fault).await {
            return Err(resp);
        }
        match fault {
            Fault::ExpireToken => {
                state.invalidate_token(&caller.token);
                return Err(auth_error());
            }
            Fault::RevokeGrant => {
                state.revoke_grant(caller.grant_id);
                return Err(auth_error());
            }
            _ => {}
        }
    }
    if !state.charge(cost) {
        return Err(quota_exceeded());
    }
    Ok(Ctx { caller, fault })
}

/// Applies `timeout_after_success` (the effect has happened; the client should time out
/// before this answer arrives).
pub(crate) async fn finish(fault: Option<&Fault>, resp: HttpResponse) -> HttpResponse {
    if let Some(Fault::TimeoutAfterSuccess { secs }) = fault {
        tokio::time::sleep(faults::secs(*secs)).await;
    }
    resp
}

/// Query parameters, percent-decoded.
pub(crate) fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// The value of the first parameter named `name`.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The `part` parameter as a list (`part=snippet,status` or repeated `part=`).
pub(crate) fn parts(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == "part")
        .flat_map(|(_, v)| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The `watch` URL of a video.
pub fn video_url(id: &str) -> String {
    format!("https://www.youtube.com/watch?v={id}")
}

/// A random id of `len` base64url characters (YouTube ids: 11 for videos, 22 after `UC`).
pub(crate) fn random_id(len: usize) -> String {
    let mut id = crate::oauth::random_token(len);
    id.truncate(len);
    id
}
