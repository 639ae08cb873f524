//! The TikTok twin (Login Kit OAuth v2 and the Content Posting API), mounted under `/tiktok`.
//!
//! Shapes follow `platform-facts.md` §2. Routes (relative to `/tiktok`; the real API splits them
//! over `www.tiktok.com`, `open.tiktokapis.com` and `open-upload.tiktokapis.com`):
//!
//! | Method | Path | Purpose |
//! |---|---|---|
//! | GET | `/v2/auth/authorize/` | auto-approving consent, 302 to the client with `code`, `scopes`, `state` |
//! | POST | `/v2/oauth/token/` | code or refresh token → tokens (refresh tokens rotate) |
//! | POST | `/v2/oauth/revoke/` | revokes the grant of an access token |
//! | GET | `/v2/user/info/?fields=` | the caller's profile |
//! | POST | `/v2/post/publish/creator_info/query/` | privacy options and posting settings |
//! | POST | `/v2/post/publish/video/init/` | Direct Post of a video (FILE_UPLOAD or PULL_FROM_URL) |
//! | POST | `/v2/post/publish/inbox/video/init/` | video to the creator's inbox |
//! | POST | `/v2/post/publish/content/init/` | photo post (PULL_FROM_URL), direct or to the inbox |
//! | POST | `/v2/post/publish/status/fetch/` | status of a publish |
//! | POST | `/v2/post/publish/cancel/` | cancels a PULL_FROM_URL task still downloading |
//! | POST | `/v2/video/list/?fields=` | the caller's public videos, newest first (Display API) |
//! | PUT | `/upload/video/?upload_id=&upload_token=` | one chunk of a FILE_UPLOAD (the `upload_url`) |
//! | POST/GET/DELETE | `/_sandbox/faults` | generic fault injection (not part of TikTok) |
//! | POST | `/_sandbox/errors` | answer the next calls of an endpoint with a TikTok error code |
//! | POST | `/_sandbox/fail_reasons` | the next publishes end `FAILED` with a `fail_reason` |
//! | POST | `/_sandbox/creators` | a creator's account settings (private, comments off, banned, …) |
//! | POST | `/_sandbox/inbox/complete` | the creator finishes an inbox draft (frees a pending share) |
//! | GET | `/_sandbox/state` | read-only state dump (not part of TikTok) |
//! | PUT | `/_sandbox/webhook` | the app's webhook callback URL (TikTok: set in the portal) |
//! | POST | `/_sandbox/deauthorize` | the creator removes the app: tokens revoked, signed `authorization.removed` delivered |
//!
//! Every Content Posting and user-info response is the envelope
//! `{"data": {...}, "error": {"code": "ok"|<code>, "message", "log_id"}}`; the OAuth endpoints
//! answer flat (`{access_token, ...}` or `{error, error_description, log_id}`).
//!
//! Where the documentation leaves a choice open the twin takes the stricter reading: request
//! limits are sliding one-minute windows per access token; chunk sizes use binary megabytes
//! (5 MiB–64 MiB, last chunk ≤ 128 MiB, as third-party SDKs do).

// Handlers answer errors with ready-made responses; boxing each one would only add noise.
#![allow(clippy::result_large_err)]

mod api;
mod control;
mod oauth;
mod state;
mod upload;

pub use state::webhook_signature;

use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::faults::{self, Fault};
use crate::twin::Twin as _;
use state::Caller;
pub(crate) use state::TiktokState;

/// Default client key of the twin's one registered app.
pub const DEFAULT_CLIENT_KEY: &str = "herald-sandbox-tiktok";
/// Default client secret.
pub const DEFAULT_CLIENT_SECRET: &str = "herald-sandbox-tiktok-secret";
/// Username of the account that authorizes when no `sandbox_user` is given.
pub const DEFAULT_USERNAME: &str = "herald_sandbox";

/// A binary megabyte: the unit of the chunk rules.
pub const MB: u64 = 1024 * 1024;
/// Smallest chunk (except a video under 5 MB, sent whole).
pub const MIN_CHUNK: u64 = 5 * MB;
/// Largest chunk (the last one may be larger).
pub const MAX_CHUNK: u64 = 64 * MB;
/// Largest final chunk.
pub const MAX_FINAL_CHUNK: u64 = 128 * MB;
/// Most chunks of one upload.
pub const MAX_CHUNKS: u64 = 1000;
/// Largest video (4 GB).
pub const MAX_VIDEO_BYTES: u64 = 4 * 1024 * MB;
/// Most images of a photo post.
pub const MAX_PHOTOS: usize = 35;
/// Longest video title, in UTF-16 code units.
pub const MAX_VIDEO_TITLE: usize = 2200;
/// Longest photo title, in characters.
pub const MAX_PHOTO_TITLE: usize = 90;
/// Longest photo description, in characters.
pub const MAX_PHOTO_DESCRIPTION: usize = 4000;

/// Configuration of the TikTok twin.
#[derive(Debug, Clone)]
pub struct TiktokConfig {
    /// The one registered app's `client_key`.
    pub client_key: String,
    /// Its `client_secret`.
    pub client_secret: String,
    /// Access-token lifetime sent as `expires_in` (official example: 86 400 s; newer docs: 2 h).
    pub access_token_lifetime: Duration,
    /// Refresh-token lifetime sent as `refresh_expires_in` (365 d old docs, 180 d new docs).
    pub refresh_token_lifetime: Duration,
    /// How long an `upload_url` stays valid (one hour).
    pub upload_url_lifetime: Duration,
    /// How long a publish stays `PROCESSING_UPLOAD` / `PROCESSING_DOWNLOAD` once its media is in.
    pub processing_delay: Duration,
    /// How long moderation takes before a public post gets its `publicaly_available_post_id`.
    pub moderation_delay: Duration,
    /// Window of the per-token request limits (one minute).
    pub rate_window: Duration,
    /// Init requests per window per token, per init endpoint (6).
    pub init_limit: u32,
    /// `creator_info/query` requests per window per token (20).
    pub creator_info_limit: u32,
    /// `status/fetch` requests per window per token (30).
    pub status_limit: u32,
    /// `video/list` requests per window per token (600,
    /// https://developers.tiktok.com/doc/tiktok-api-v2-rate-limit).
    pub video_list_limit: u32,
    /// Pending inbox shares allowed within `pending_share_window` (5 in 24 h).
    pub pending_share_limit: usize,
    /// Window of the pending-share rule.
    pub pending_share_window: Duration,
    /// Direct posts per creator per 24 h before `spam_risk_too_many_posts` (third-party: ~15).
    pub daily_post_cap: usize,
    /// Whether the app passed TikTok's audit; unaudited apps may post only `SELF_ONLY` and for
    /// at most 5 users in 24 h.
    pub audited: bool,
    /// URL prefixes verified for PULL_FROM_URL; `None` treats every URL as verified.
    pub verified_url_prefixes: Option<Vec<String>>,
    /// `max_video_post_duration_sec` of new creators.
    pub max_video_post_duration_sec: u32,
}

impl Default for TiktokConfig {
    fn default() -> Self {
        Self {
            client_key: DEFAULT_CLIENT_KEY.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            access_token_lifetime: Duration::from_secs(86_400),
            refresh_token_lifetime: Duration::from_secs(31_536_000),
            upload_url_lifetime: Duration::from_secs(3600),
            processing_delay: Duration::from_millis(300),
            moderation_delay: Duration::ZERO,
            rate_window: Duration::from_secs(60),
            init_limit: 6,
            creator_info_limit: 20,
            status_limit: 30,
            video_list_limit: 600,
            pending_share_limit: 5,
            pending_share_window: Duration::from_secs(86_400),
            daily_post_cap: 15,
            audited: true,
            verified_url_prefixes: None,
            max_video_post_duration_sec: 600,
        }
    }
}

/// A TikTok endpoint, as named in fault and error injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TiktokEndpoint {
    /// `POST /v2/oauth/token/`.
    Token,
    /// `POST /v2/oauth/revoke/`.
    Revoke,
    /// `GET /v2/user/info/`.
    UserInfo,
    /// `POST /v2/post/publish/creator_info/query/`.
    CreatorInfo,
    /// `POST /v2/post/publish/video/init/`.
    VideoInit,
    /// `POST /v2/post/publish/inbox/video/init/`.
    InboxVideoInit,
    /// `POST /v2/post/publish/content/init/`.
    ContentInit,
    /// `PUT {upload_url}`.
    Upload,
    /// `POST /v2/post/publish/status/fetch/`.
    StatusFetch,
    /// `POST /v2/post/publish/cancel/`.
    Cancel,
    /// `POST /v2/video/list/`.
    VideoList,
    /// Wildcard: applies to any endpoint whose own queue is empty.
    Any,
}

impl TiktokEndpoint {
    /// The per-token request limit of the endpoint, if TikTok documents one.
    fn limit(self, config: &TiktokConfig) -> Option<u32> {
        match self {
            TiktokEndpoint::VideoInit
            | TiktokEndpoint::InboxVideoInit
            | TiktokEndpoint::ContentInit => Some(config.init_limit),
            TiktokEndpoint::CreatorInfo => Some(config.creator_info_limit),
            TiktokEndpoint::StatusFetch => Some(config.status_limit),
            TiktokEndpoint::VideoList => Some(config.video_list_limit),
            _ => None,
        }
    }
}

/// Snapshot of the TikTok twin, as served by `GET /tiktok/_sandbox/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiktokStateSnapshot {
    /// Every publish (init call that was accepted), oldest first.
    pub publishes: Vec<TiktokPublishSnapshot>,
    /// Posts on creators' profiles (Direct Post that completed), oldest first.
    pub posts: Vec<TiktokPostSnapshot>,
    /// Every chunk PUT the upload endpoint received, in arrival order.
    pub upload_requests: Vec<TiktokUploadRecord>,
    /// Every token issued (plaintext, so tests can grep for leaks).
    pub tokens_issued: Vec<TiktokIssuedToken>,
    /// Requests answered `429 rate_limit_exceeded` because a documented limit was exceeded
    /// (not counting injected faults).
    pub rate_limit_refusals: Vec<TiktokRefusal>,
    /// Recent requests to TikTok routes (the `/_sandbox` routes are not recorded).
    pub requests: Vec<crate::RequestRecord>,
}

/// One accepted init call and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiktokPublishSnapshot {
    pub publish_id: String,
    pub open_id: String,
    /// `direct` or `inbox`.
    pub mode: String,
    /// `VIDEO` or `PHOTO`.
    pub media_type: String,
    /// `FILE_UPLOAD` or `PULL_FROM_URL`.
    pub source: String,
    /// The current `status` as status/fetch reports it.
    pub status: String,
    pub fail_reason: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub privacy_level: Option<String>,
    pub disable_comment: bool,
    pub disable_duet: bool,
    pub disable_stitch: bool,
    pub is_aigc: bool,
    pub video_size: Option<u64>,
    pub chunk_size: Option<u64>,
    pub total_chunk_count: Option<u64>,
    pub video_url: Option<String>,
    pub photo_images: Vec<String>,
    pub uploaded_bytes: u64,
    /// Checksum (see [`checksum`]) of the bytes accepted so far, in order.
    pub uploaded_checksum: String,
    /// The post id, once the post is public.
    pub post_id: Option<String>,
}

/// A post on a creator's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiktokPostSnapshot {
    pub id: String,
    pub publish_id: String,
    pub open_id: String,
    pub username: String,
    pub media_type: String,
    pub title: String,
    pub privacy_level: String,
    pub url: String,
}

/// One `PUT {upload_url}` as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiktokUploadRecord {
    pub upload_id: String,
    /// The publish the upload belongs to, if the upload id was known.
    pub publish_id: Option<String>,
    /// First and last byte of the declared `Content-Range` (inclusive), if it parsed.
    pub first_byte: Option<u64>,
    pub last_byte: Option<u64>,
    /// Body bytes actually received.
    pub bytes_received: u64,
    /// The answer: 201, 206, 400, 403, 404, 416, 5xx; `None` if the client went away first.
    pub status: Option<u16>,
    /// Whether the chunk was accepted (201 or 206).
    pub accepted: bool,
}

/// A token issued by the twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiktokIssuedToken {
    pub access_token: String,
    pub refresh_token: String,
    pub open_id: String,
}

/// A request refused for exceeding a documented limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiktokRefusal {
    pub endpoint: TiktokEndpoint,
    pub open_id: String,
    pub at: String,
}

/// The twin's content checksum: FNV-1a (64 bit) over the bytes, as 16 hex digits. Cheap enough
/// to run over every uploaded byte in a debug build.
pub fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a(FNV_OFFSET, bytes))
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

pub(crate) fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The `/tiktok` scope with every route and the request-recording middleware.
pub(crate) fn scope(state: web::Data<TiktokState>) -> impl HttpServiceFactory {
    crate::twin::scope("/tiktok", state)
        .route("/_sandbox/errors", web::post().to(control::add_error))
        .route(
            "/_sandbox/fail_reasons",
            web::post().to(control::add_fail_reason),
        )
        .route("/_sandbox/creators", web::post().to(control::set_creator))
        .route(
            "/_sandbox/inbox/complete",
            web::post().to(control::complete_inbox),
        )
        .route("/_sandbox/webhook", web::put().to(control::set_webhook))
        .route(
            "/_sandbox/deauthorize",
            web::post().to(control::deauthorize),
        )
        .route("/v2/auth/authorize/", web::get().to(oauth::authorize))
        .route("/v2/oauth/token/", web::post().to(oauth::token))
        .route("/v2/oauth/revoke/", web::post().to(oauth::revoke))
        .route("/v2/user/info/", web::get().to(api::user_info))
        .route(
            "/v2/post/publish/creator_info/query/",
            web::post().to(api::creator_info),
        )
        .route(
            "/v2/post/publish/video/init/",
            web::post().to(api::video_init),
        )
        .route(
            "/v2/post/publish/inbox/video/init/",
            web::post().to(api::inbox_video_init),
        )
        .route(
            "/v2/post/publish/content/init/",
            web::post().to(api::content_init),
        )
        .route(
            "/v2/post/publish/status/fetch/",
            web::post().to(api::status_fetch),
        )
        .route("/v2/post/publish/cancel/", web::post().to(api::cancel))
        .route("/v2/video/list/", web::post().to(api::video_list))
        .route("/upload/video/", web::put().to(upload::put_chunk))
        .default_service(web::to(|| async {
            envelope_error(
                StatusCode::NOT_FOUND,
                "invalid_params",
                "The requested path does not exist.",
            )
        }))
}

/// A TikTok `log_id`: a timestamp and random hex, like `20240102030405A1B2C3D4E5F6A7B8C9D0`.
pub(crate) fn log_id() -> String {
    let mut bytes = [0u8; 10];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("{}{hex}", chrono::Utc::now().format("%Y%m%d%H%M%S"))
}

/// A successful envelope: `{"data": data, "error": {"code": "ok", ...}}`.
pub(crate) fn envelope_ok(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "data": data,
        "error": {"code": "ok", "message": "", "log_id": log_id()},
    }))
}

/// An error envelope: `{"data": {}, "error": {"code", "message", "log_id"}}`.
pub(crate) fn envelope_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "data": {},
        "error": {"code": code, "message": message, "log_id": log_id()},
    }))
}

/// `400 invalid_param` (the Content Posting spelling).
pub(crate) fn invalid_param(message: &str) -> HttpResponse {
    envelope_error(StatusCode::BAD_REQUEST, "invalid_param", message)
}

/// `401 access_token_invalid`.
pub(crate) fn access_token_invalid() -> HttpResponse {
    envelope_error(
        StatusCode::UNAUTHORIZED,
        "access_token_invalid",
        "The access token is invalid or not found in the request.",
    )
}

/// `429 rate_limit_exceeded`.
pub(crate) fn rate_limit_exceeded() -> HttpResponse {
    envelope_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        "The API rate limit was exceeded. Please try again later.",
    )
}

/// The documented HTTP status of `code` at `endpoint` (platform-facts §2.2, §2.3, §2.6, §2.7).
pub(crate) fn documented_status(endpoint: TiktokEndpoint, code: &str) -> StatusCode {
    match code {
        // "HTTP 200 (intentional)" on creator_info; 403 on the init endpoints.
        "spam_risk_too_many_posts"
        | "spam_risk_user_banned_from_posting"
        | "reached_active_user_cap"
            if endpoint == TiktokEndpoint::CreatorInfo =>
        {
            StatusCode::OK
        }
        "spam_risk_too_many_posts"
        | "spam_risk_user_banned_from_posting"
        | "reached_active_user_cap"
        | "unaudited_client_can_only_post_to_private_accounts"
        | "url_ownership_unverified"
        | "privacy_level_option_mismatch"
        | "spam_risk_too_many_pending_share" => StatusCode::FORBIDDEN,
        "access_token_invalid" | "scope_not_authorized" => StatusCode::UNAUTHORIZED,
        "rate_limit_exceeded" => StatusCode::TOO_MANY_REQUESTS,
        "internal_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The response for a generic fault that prevents any effect, if `fault` is one.
pub(crate) async fn blocking_fault_response(fault: &Fault) -> Option<HttpResponse> {
    match fault {
        // TikTok documents no Retry-After or rate-limit headers: a bare 429.
        Fault::RateLimited { .. } => Some(rate_limit_exceeded()),
        Fault::ServerError { status } => Some(envelope_error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "internal_error",
            "Something went wrong. Please try again later.",
        )),
        Fault::Timeout { secs } => {
            tokio::time::sleep(faults::secs(*secs)).await;
            Some(envelope_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "internal_error",
                "The service is temporarily unavailable.",
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

/// Authenticates the bearer token, checks that one of `any_scope` was granted, applies injected
/// errors and faults, then the documented request limit. `Err` is the response to send as is.
pub(crate) async fn guard(
    state: &TiktokState,
    req: &HttpRequest,
    endpoint: TiktokEndpoint,
    any_scope: &[&str],
) -> Result<Ctx, HttpResponse> {
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::oauth::parse_bearer);
    let Some(caller) = token.and_then(|t| state.authenticate(t)) else {
        return Err(access_token_invalid());
    };
    if !any_scope
        .iter()
        .any(|s| caller.scopes.iter().any(|c| c == s))
    {
        return Err(envelope_error(
            StatusCode::UNAUTHORIZED,
            "scope_not_authorized",
            &format!(
                "The user did not authorize the scope required for completing this request: {}.",
                any_scope.join(" or ")
            ),
        ));
    }
    if let Some(injected) = state.take_error(endpoint) {
        return Err(envelope_error(
            injected.status,
            &injected.code,
            &injected.message,
        ));
    }
    let fault = state.take_fault(endpoint);
    if let Some(fault) = &fault {
        tracing::info!(?endpoint, ?fault, "tiktok sandbox applying fault");
        if let Some(resp) = blocking_fault_response(fault).await {
            return Err(resp);
        }
        match fault {
            Fault::ExpireToken => {
                state.invalidate_token(&caller.token);
                return Err(access_token_invalid());
            }
            Fault::RevokeGrant => {
                state.revoke_user(&caller.open_id);
                return Err(access_token_invalid());
            }
            _ => {}
        }
    }
    if let Some(limit) = endpoint.limit(&state.config) {
        if !state.count_request(&caller, endpoint, limit) {
            return Err(rate_limit_exceeded());
        }
    }
    Ok(Ctx { caller, fault })
}

/// Applies `timeout_after_success` (the effect has happened; the client should time out before
/// this answer arrives).
pub(crate) async fn finish(ctx: &Ctx, resp: HttpResponse) -> HttpResponse {
    if let Some(Fault::TimeoutAfterSuccess { secs }) = &ctx.fault {
        tokio::time::sleep(faults::secs(*secs)).await;
    }
    resp
}

/// Parses a JSON request body, answering `invalid_param` when it is not an object.
pub(crate) fn json_body(body: &[u8]) -> Result<serde_json::Map<String, Value>, HttpResponse> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid_param("The request body is not a JSON object.")),
    }
}

/// Length in UTF-16 code units, as TikTok counts titles ("runes").
pub fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_fnv1a() {
        assert_eq!(checksum(b""), "cbf29ce484222325");
        assert_eq!(checksum(b"a"), "af63dc4c8601ec8c");
        let whole = fnv1a(FNV_OFFSET, b"hello world");
        let split = fnv1a(fnv1a(FNV_OFFSET, b"hello "), b"world");
        assert_eq!(whole, split);
    }

    #[test]
    fn spam_codes_are_200_on_creator_info_and_403_on_init() {
        assert_eq!(
            documented_status(TiktokEndpoint::CreatorInfo, "spam_risk_too_many_posts"),
            StatusCode::OK
        );
        assert_eq!(
            documented_status(TiktokEndpoint::VideoInit, "spam_risk_too_many_posts"),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            documented_status(TiktokEndpoint::StatusFetch, "invalid_publish_id"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(utf16_len("a😀"), 3);
    }
}
