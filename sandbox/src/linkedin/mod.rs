//! The LinkedIn twin, mounted under `/linkedin`.
//!
//! Shapes follow `platform-facts.md` §8 (OAuth, Posts API, Images/Documents/Videos API, rate
//! limits).
//! LinkedIn serves OAuth from `www.linkedin.com` and the API from `api.linkedin.com`; the twin
//! serves both under one prefix. Routes (relative to `/linkedin`):
//!
//! | Method | Path | Purpose |
//! |---|---|---|
//! | GET | `/oauth/v2/authorization` | auto-approving consent, 302 with `code` and `state` |
//! | POST | `/oauth/v2/accessToken` | code and refresh-token grants (client secret in the body) |
//! | POST | `/oauth/v2/revoke` | token revocation |
//! | GET | `/v2/userinfo` | the member (OpenID Connect) |
//! | GET | `/rest/organizationAcls?q=roleAssignee` | organisations the member has a role in |
//! | GET | `/rest/organizations/{id}` | an organisation's name |
//! | POST | `/rest/images?action=initializeUpload` | an image upload URL |
//! | GET | `/rest/images/{urn}` | an image's status |
//! | POST | `/rest/documents?action=initializeUpload` | a document upload URL |
//! | GET | `/rest/documents/{urn}` | a document's status |
//! | POST | `/rest/videos?action=initializeUpload` | byte-range upload instructions |
//! | POST | `/rest/videos?action=finalizeUpload` | finish a video upload (ETags in order) |
//! | GET | `/rest/videos/{urn}` | a video's processing status |
//! | PUT | `/dms-uploads/{key}` | the upload URLs handed out above |
//! | POST | `/rest/posts` | create a post (201, URN in `x-restli-id`) |
//! | GET | `/rest/posts?q=author&author=` | an author's posts, newest first |
//! | GET | `/rest/posts/{urn}` | one post |
//! | POST/GET/DELETE | `/_sandbox/faults` | fault injection (not part of LinkedIn) |
//! | GET | `/_sandbox/state` | read-only state dump (not part of LinkedIn) |
//!
//! Every `/rest/` call needs `LinkedIn-Version: YYYYMM` (a missing one is refused with 400
//! `VERSION_MISSING`, an inactive one with 426 `NONEXISTENT_VERSION`) and
//! `X-Restli-Protocol-Version: 2.0.0`.
// Handlers return the early HTTP refusal as the error: boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod api;
mod little;
mod oauth;
mod state;

use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::faults::{self, Fault};
use crate::twin::Twin as _;
pub use little::{escape as little_escape, render as little_render};
use state::Caller;
pub(crate) use state::LinkedInState;

/// Default OAuth client id of the twin.
pub const DEFAULT_CLIENT_ID: &str = "herald-sandbox-linkedin";
/// Default client secret of the twin.
pub const DEFAULT_CLIENT_SECRET: &str = "herald-sandbox-linkedin-secret";
/// The member who authorizes when no `sandbox_user` is given.
pub const DEFAULT_USERNAME: &str = "herald_sandbox";
/// Longest commentary (platform-facts §8.2).
pub const MAX_COMMENTARY: usize = 3000;
/// Roles that may create organic posts for an organisation (platform-facts §8.1).
pub const POSTING_ROLES: &[&str] = &[
    "ADMINISTRATOR",
    "CONTENT_ADMINISTRATOR",
    "DIRECT_SPONSORED_CONTENT_POSTER",
];

/// An organisation of the twin and the members who hold a role in it.
#[derive(Debug, Clone)]
pub struct LinkedInOrganization {
    /// Numeric id (`urn:li:organization:{id}`).
    pub id: u64,
    /// `localizedName`.
    pub name: String,
    /// `vanityName` (the page's URL slug).
    pub vanity_name: String,
    /// `(sandbox username, role)`; every assignment is `APPROVED`.
    pub roles: Vec<(String, String)>,
}

/// Configuration of the LinkedIn twin.
#[derive(Debug, Clone)]
pub struct LinkedInConfig {
    /// The one registered app.
    pub client_id: String,
    /// Its client secret, sent in the token request body.
    pub client_secret: String,
    /// Whether the app has programmatic refresh tokens (approved MDP partners only).
    pub refresh_tokens: bool,
    /// Scopes the app's products grant; asking for others fails at consent.
    pub authorized_scopes: Vec<String>,
    /// Access-token lifetime (LinkedIn: 60 days).
    pub access_token_lifetime: Duration,
    /// Refresh-token lifetime, fixed from the first authorization (LinkedIn: 365 days).
    pub refresh_token_lifetime: Duration,
    /// Oldest active `LinkedIn-Version` (`YYYYMM`). `None`: twelve months before the current one.
    pub oldest_active_version: Option<String>,
    /// Organisations and who holds which role in them.
    pub organizations: Vec<LinkedInOrganization>,
    /// Bytes per video upload part (the part size is UNCONFIRMED; 4 MiB is common).
    pub video_part_size: u64,
    /// Smallest and largest video (bytes).
    pub video_min_bytes: u64,
    pub video_max_bytes: u64,
    /// Largest image (bytes).
    pub image_max_bytes: u64,
    /// Largest document (bytes; LinkedIn: 100 MB).
    pub document_max_bytes: u64,
    /// How long a finalized video stays `PROCESSING`.
    pub video_processing_delay: Duration,
    /// Posts per member (author or acting member) per UTC day (third-party figure: 150).
    pub posts_per_day: u32,
    /// API calls per member per UTC day ("Member" limit; LinkedIn does not publish it).
    pub member_calls_per_day: u32,
    /// API calls of the whole app per UTC day ("Application" limit).
    pub app_calls_per_day: u32,
}

impl Default for LinkedInConfig {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            refresh_tokens: true,
            authorized_scopes: oauth::KNOWN_SCOPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            access_token_lifetime: Duration::from_secs(60 * 86_400),
            refresh_token_lifetime: Duration::from_secs(365 * 86_400),
            oldest_active_version: None,
            organizations: vec![
                LinkedInOrganization {
                    id: 10_000_001,
                    name: "Herald Sandbox Inc.".into(),
                    vanity_name: "herald-sandbox".into(),
                    roles: vec![(DEFAULT_USERNAME.into(), "ADMINISTRATOR".into())],
                },
                LinkedInOrganization {
                    id: 10_000_002,
                    name: "Herald Analytics".into(),
                    vanity_name: "herald-analytics".into(),
                    roles: vec![(DEFAULT_USERNAME.into(), "ANALYST".into())],
                },
                LinkedInOrganization {
                    id: 10_000_003,
                    name: "Herald Content Studio".into(),
                    vanity_name: "herald-content-studio".into(),
                    roles: vec![(DEFAULT_USERNAME.into(), "CONTENT_ADMINISTRATOR".into())],
                },
            ],
            video_part_size: 4 * 1024 * 1024,
            video_min_bytes: 75 * 1024,
            video_max_bytes: 500 * 1024 * 1024,
            image_max_bytes: 36 * 1024 * 1024,
            document_max_bytes: 100 * 1024 * 1024,
            video_processing_delay: Duration::from_millis(300),
            posts_per_day: 150,
            member_calls_per_day: 100_000,
            app_calls_per_day: 1_000_000,
        }
    }
}

/// A LinkedIn endpoint, as named in fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkedInEndpoint {
    /// `POST /oauth/v2/accessToken` (both grants).
    Token,
    /// `GET /v2/userinfo`.
    Userinfo,
    /// `GET /rest/organizationAcls`.
    OrganizationAcls,
    /// `GET /rest/organizations/{id}`.
    Organizations,
    /// `POST /rest/images?action=initializeUpload`.
    InitializeImage,
    /// `POST /rest/videos?action=initializeUpload`.
    InitializeVideo,
    /// `POST /rest/documents?action=initializeUpload`.
    InitializeDocument,
    /// `PUT /dms-uploads/{key}` (images, documents and video parts).
    Upload,
    /// `POST /rest/videos?action=finalizeUpload`.
    FinalizeVideo,
    /// `GET /rest/images/{urn}`, `/rest/documents/{urn}` and `/rest/videos/{urn}`.
    MediaStatus,
    /// `POST /rest/posts`.
    CreatePost,
    /// `GET /rest/posts` and `GET /rest/posts/{urn}`.
    ListPosts,
    /// Wildcard: applies to any endpoint whose own queue is empty.
    Any,
}

/// Snapshot of the LinkedIn twin, as served by `GET /linkedin/_sandbox/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedInStateSnapshot {
    /// Every post, oldest first.
    pub posts: Vec<LinkedInPostSnapshot>,
    /// Every image, oldest first.
    pub images: Vec<LinkedInMediaSnapshot>,
    /// Every video, oldest first.
    pub videos: Vec<LinkedInMediaSnapshot>,
    /// Every document, oldest first.
    pub documents: Vec<LinkedInMediaSnapshot>,
    /// Every token issued (plaintext, so tests can grep for leaks).
    pub tokens_issued: Vec<LinkedInIssuedToken>,
    /// Recent requests to LinkedIn routes (the `/_sandbox` routes are not recorded).
    pub requests: Vec<crate::RequestRecord>,
}

/// A post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedInPostSnapshot {
    /// `urn:li:share:…` or `urn:li:ugcPost:…` (video posts).
    pub urn: String,
    /// `urn:li:person:…` or `urn:li:organization:…`.
    pub author: String,
    /// The member who made the call.
    pub created_by: String,
    /// The commentary as sent (Little Text Format).
    pub commentary: String,
    /// What LinkedIn shows: escapes resolved, cut at the first unescaped reserved character.
    pub text: String,
    /// Whether the text was cut because of an unescaped reserved character.
    pub truncated: bool,
    pub visibility: String,
    pub lifecycle_state: String,
    /// `none`, `image`, `video`, `document`, `multi_image`, `article` or `poll`.
    pub content_kind: String,
    /// Image/video/document URNs, in order.
    pub media: Vec<String>,
    /// Title given with `content.media` or `content.article`.
    pub content_title: Option<String>,
    /// Article `source` URL.
    pub article_url: Option<String>,
    /// The poll as posted (`question`, `options`, `settings.duration`).
    pub poll: Option<serde_json::Value>,
    /// The `LinkedIn-Version` the post was created with.
    pub linkedin_version: String,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// An uploaded image, video or document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedInMediaSnapshot {
    pub urn: String,
    pub owner: String,
    /// `WAITING_UPLOAD`, `PROCESSING`, `AVAILABLE` or `PROCESSING_FAILED`.
    pub status: String,
    /// Bytes declared (videos) or received (images).
    pub bytes: u64,
    /// Upload parts (1 for images).
    pub parts: usize,
    /// Parts received so far.
    pub parts_uploaded: usize,
}

/// A token issued by the twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedInIssuedToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// `urn:li:person:…`.
    pub member: String,
}

/// The `/linkedin` scope with every route and the request-recording middleware.
pub(crate) fn scope(state: web::Data<LinkedInState>) -> impl HttpServiceFactory {
    crate::twin::scope("/linkedin", state)
        .route("/oauth/v2/authorization", web::get().to(oauth::authorize))
        .route("/oauth/v2/accessToken", web::post().to(oauth::access_token))
        .route("/oauth/v2/revoke", web::post().to(oauth::revoke))
        .route("/v2/userinfo", web::get().to(oauth::userinfo))
        .route(
            "/rest/organizationAcls",
            web::get().to(api::organization_acls),
        )
        .route("/rest/organizations/{id}", web::get().to(api::organization))
        .route("/rest/images", web::post().to(api::images_action))
        .route("/rest/images/{urn}", web::get().to(api::image_status))
        .route("/rest/documents", web::post().to(api::documents_action))
        .route("/rest/documents/{urn}", web::get().to(api::document_status))
        .route("/rest/videos", web::post().to(api::videos_action))
        .route("/rest/videos/{urn}", web::get().to(api::video_status))
        .route("/dms-uploads/{key}", web::put().to(api::upload))
        .route("/rest/posts", web::post().to(api::create_post))
        .route("/rest/posts", web::get().to(api::list_posts))
        .route("/rest/posts/{urn}", web::get().to(api::get_post))
        .default_service(web::to(|| async {
            rest_error(
                StatusCode::NOT_FOUND,
                None,
                Some("RESOURCE_NOT_FOUND"),
                "No virtual resource found",
            )
        }))
}

/// A Rest.li error: `{"status", "serviceErrorCode"?, "code"?, "message"}`.
pub(crate) fn rest_error(
    status: StatusCode,
    service_code: Option<u32>,
    code: Option<&str>,
    message: &str,
) -> HttpResponse {
    let mut body = json!({ "status": status.as_u16(), "message": message });
    if let Some(n) = service_code {
        body["serviceErrorCode"] = json!(n);
    }
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    HttpResponse::build(status).json(body)
}

/// 422 with Rest.li's validation message (`ERROR :: /path :: reason`).
pub(crate) fn validation_error(path: &str, reason: &str) -> HttpResponse {
    rest_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
        None,
        &format!("ERROR :: {path} :: {reason}\n"),
    )
}

/// 400 `ILLEGAL_ARGUMENT`.
pub(crate) fn bad_request(message: &str) -> HttpResponse {
    rest_error(
        StatusCode::BAD_REQUEST,
        None,
        Some("ILLEGAL_ARGUMENT"),
        message,
    )
}

/// 403 `ACCESS_DENIED` for `what` (LinkedIn names the resource and method).
pub(crate) fn access_denied(what: &str) -> HttpResponse {
    rest_error(
        StatusCode::FORBIDDEN,
        Some(100),
        Some("ACCESS_DENIED"),
        &format!("Not enough permissions to access: {what}"),
    )
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Missing,
    Invalid,
    Expired,
    Revoked,
}

pub(crate) fn unauthorized(problem: TokenProblem) -> HttpResponse {
    let (n, code, message) = match problem {
        TokenProblem::Missing => (65604, "EMPTY_ACCESS_TOKEN", "Empty oauth2 access token"),
        TokenProblem::Invalid => (65600, "INVALID_ACCESS_TOKEN", "Invalid access token"),
        TokenProblem::Expired => (
            65602,
            "EXPIRED_ACCESS_TOKEN",
            "The token used in the request has expired",
        ),
        TokenProblem::Revoked => (
            65601,
            "REVOKED_ACCESS_TOKEN",
            "The token used in the request has been revoked by the user",
        ),
    };
    rest_error(StatusCode::UNAUTHORIZED, Some(n), Some(code), message)
}

/// 429 as LinkedIn sends it: no `Retry-After`, no rate-limit headers. `day_limit` names the
/// exhausted daily limit (`APPLICATION` or `MEMBER`); `None` is a short-term throttle.
pub(crate) fn too_many_requests(day_limit: Option<&str>) -> HttpResponse {
    let message = match day_limit {
        Some(kind) => format!(
            "Resource level throttle {kind} DAY limit for calls to this resource is reached."
        ),
        None => "Too Many Requests".to_owned(),
    };
    rest_error(
        StatusCode::TOO_MANY_REQUESTS,
        Some(101),
        Some("TOO_MANY_REQUESTS"),
        &message,
    )
}

/// The response for a fault that prevents any effect, if `fault` is one.
pub(crate) async fn blocking_fault_response(fault: &Fault) -> Option<HttpResponse> {
    match fault {
        // LinkedIn documents no Retry-After; the fault's seconds are not sent.
        Fault::RateLimited { .. } => Some(too_many_requests(None)),
        Fault::ServerError { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(rest_error(
                status,
                None,
                None,
                status.canonical_reason().unwrap_or("Internal Server Error"),
            ))
        }
        Fault::Timeout { secs } => {
            tokio::time::sleep(faults::secs(*secs)).await;
            Some(rest_error(
                StatusCode::GATEWAY_TIMEOUT,
                None,
                None,
                "Gateway Timeout",
            ))
        }
        Fault::ContentRejected { detail } => Some(rest_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            Some("CONTENT_REJECTED"),
            detail,
        )),
        _ => None,
    }
}

/// What an authorized API request carries into its handler.
pub(crate) struct Ctx {
    pub caller: Caller,
    /// A fault the handler itself applies (processing, timeout after success).
    pub fault: Option<Fault>,
    /// The `LinkedIn-Version` sent (empty for `/v2/` routes).
    pub version: String,
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|h| h.to_str().ok())
}

/// `YYYYMM` of `now` shifted by `months`.
fn month_offset(now: chrono::DateTime<chrono::Utc>, months: i32) -> String {
    use chrono::Datelike;
    let total = now.year() * 12 + now.month0() as i32 + months;
    format!("{:04}{:02}", total.div_euclid(12), total.rem_euclid(12) + 1)
}

/// Checks `LinkedIn-Version` (`YYYYMM` or `YYYYMM.RR`) and `X-Restli-Protocol-Version`.
fn check_versions(state: &LinkedInState, req: &HttpRequest) -> Result<String, HttpResponse> {
    let Some(version) = header(req, "linkedin-version").map(str::trim) else {
        return Err(rest_error(
            StatusCode::BAD_REQUEST,
            None,
            Some("VERSION_MISSING"),
            "A version must be present. Please specify a version by adding the LinkedIn-Version header.",
        ));
    };
    let month = version.split('.').next().unwrap_or_default();
    let well_formed = month.len() == 6 && month.bytes().all(|b| b.is_ascii_digit());
    let now = chrono::Utc::now();
    let oldest = state
        .config
        .oldest_active_version
        .clone()
        .unwrap_or_else(|| month_offset(now, -12));
    let newest = month_offset(now, 0);
    // Versions are compared as YYYYMM strings, which sort like the months they name.
    if !well_formed || month < oldest.as_str() || month > newest.as_str() {
        return Err(rest_error(
            StatusCode::UPGRADE_REQUIRED,
            None,
            Some("NONEXISTENT_VERSION"),
            &format!("Requested version {month}01 is not active"),
        ));
    }
    if header(req, "x-restli-protocol-version") != Some("2.0.0") {
        return Err(bad_request(
            "All requests to this resource require the header X-Restli-Protocol-Version: 2.0.0",
        ));
    }
    Ok(version.to_owned())
}

/// Authenticates, checks the version headers (for `/rest/` routes) and scopes, counts the call
/// against the daily limits and applies request-level faults. `Err` is the response to send.
pub(crate) async fn guard(
    state: &LinkedInState,
    req: &HttpRequest,
    endpoint: LinkedInEndpoint,
    versioned: bool,
) -> Result<Ctx, HttpResponse> {
    let token = header(req, "authorization").and_then(crate::oauth::parse_bearer);
    let Some(token) = token else {
        return Err(unauthorized(TokenProblem::Missing));
    };
    let caller = state.authenticate(token).map_err(unauthorized)?;
    let version = if versioned {
        check_versions(state, req)?
    } else {
        String::new()
    };
    if let Some(kind) = state.count_call(&caller.member_id) {
        return Err(too_many_requests(Some(kind)));
    }
    let fault = state.take_fault(endpoint);
    if let Some(fault) = &fault {
        tracing::info!(?endpoint, ?fault, "linkedin sandbox applying fault");
        if let Some(resp) = blocking_fault_response(fault).await {
            return Err(resp);
        }
        match fault {
            Fault::ExpireToken => {
                state.invalidate_token(&caller.token, TokenProblem::Expired);
                return Err(unauthorized(TokenProblem::Expired));
            }
            Fault::RevokeGrant => {
                state.revoke_member(&caller.member_id);
                return Err(unauthorized(TokenProblem::Revoked));
            }
            _ => {}
        }
    }
    Ok(Ctx {
        caller,
        fault,
        version,
    })
}

/// Applies `timeout_after_success` (the effect has happened; the client should time out before
/// this answer arrives).
pub(crate) async fn finish(ctx: &Ctx, resp: HttpResponse) -> HttpResponse {
    if let Some(Fault::TimeoutAfterSuccess { secs }) = &ctx.fault {
        tokio::time::sleep(faults::secs(*secs)).await;
    }
    resp
}

/// Query parameters followed by form-body parameters, percent-decoded.
pub(crate) fn params(req: &HttpRequest, body: &[u8]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .into_owned()
            .collect();
    pairs.extend(url::form_urlencoded::parse(body).into_owned());
    pairs
}

/// The value of the first parameter named `name`.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_arithmetic_crosses_years() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-15T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(month_offset(t, 0), "202601");
        assert_eq!(month_offset(t, -1), "202512");
        assert_eq!(month_offset(t, -12), "202501");
    }
}
