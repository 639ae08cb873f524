//! The X (Twitter) API v2 twin, mounted under `/x`.
//!
//! Shapes follow `platform-specs/x-api-v2-openapi.json` (version 2.167) and
//! `platform-facts.md` §1. Routes (all relative to `/x`):
//!
//! | Method | Path | Purpose |
//! |---|---|---|
//! | GET | `/i/oauth2/authorize` | auto-approving consent, 302 to the client |
//! | POST | `/2/oauth2/token` | code and refresh-token grants |
//! | POST | `/2/oauth2/revoke` | token revocation |
//! | GET | `/2/users/me` | the caller |
//! | GET | `/2/users/{id}/tweets` | a user's posts, newest first |
//! | POST | `/2/tweets` | create a post |
//! | POST | `/2/media/upload/initialize` | start a chunked upload |
//! | POST | `/2/media/upload/{id}/append` | upload one segment (JSON or multipart) |
//! | POST | `/2/media/upload/{id}/finalize` | finish the upload |
//! | GET | `/2/media/upload?command=STATUS&media_id=` | processing status |
//! | POST | `/2/media/upload` | one-shot upload or legacy `command=INIT/APPEND/FINALIZE` |
//! | POST/GET/DELETE | `/_sandbox/faults` | fault injection (not part of X) |
//! | GET | `/_sandbox/state` | read-only state dump (not part of X) |

mod media;
mod oauth;
mod problem;
mod state;
mod tweets;
mod users;

use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::faults::{self, Fault};
use crate::ratelimit::RateStatus;
use crate::twin::Twin as _;
pub use problem::Problem;
use state::Caller;
pub(crate) use state::XState;
pub use tweets::weighted_length;

/// Default OAuth client id of the X twin.
pub const DEFAULT_CLIENT_ID: &str = "herald-sandbox-x";
/// Default OAuth client secret of the X twin.
pub const DEFAULT_CLIENT_SECRET: &str = "herald-sandbox-x-secret";
/// Id of the account that authorizes when no `sandbox_user` is given.
pub const DEFAULT_USER_ID: &str = "1500000000000000001";
/// Username of the default account.
pub const DEFAULT_USERNAME: &str = "herald_sandbox";
/// Display name of the default account.
pub const DEFAULT_NAME: &str = "Herald Sandbox";

/// Configuration of the X twin.
#[derive(Debug, Clone)]
pub struct XConfig {
    /// The one registered OAuth client id.
    pub client_id: String,
    /// Its client secret (confidential clients send it with Basic auth).
    pub client_secret: String,
    /// Accept any absolute http(s) `redirect_uri` (convenient for tests).
    pub allow_any_redirect_uri: bool,
    /// Registered redirect URIs, matched exactly when `allow_any_redirect_uri` is false.
    pub redirect_uris: Vec<String>,
    /// Access-token lifetime (X: two hours).
    pub access_token_lifetime: Duration,
    /// Authorization-code lifetime (X: 30 seconds).
    pub auth_code_lifetime: Duration,
    /// How long video/GIF processing takes after FINALIZE.
    pub media_processing_delay: Duration,
    /// Length of a rate-limit window (X: 15 minutes).
    pub rate_limit_window: Duration,
    /// Requests per user per window, per endpoint.
    pub rate_limits: XRateLimits,
}

impl Default for XConfig {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            allow_any_redirect_uri: true,
            redirect_uris: Vec::new(),
            access_token_lifetime: Duration::from_secs(7200),
            auth_code_lifetime: Duration::from_secs(30),
            media_processing_delay: Duration::from_millis(300),
            rate_limit_window: Duration::from_secs(15 * 60),
            rate_limits: XRateLimits::default(),
        }
    }
}

/// Per-user limits per window (defaults: platform-facts §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XRateLimits {
    /// `POST /2/tweets` (100).
    pub create_tweet: u32,
    /// `GET /2/users/me` (75).
    pub users_me: u32,
    /// `GET /2/users/{id}/tweets` (900; not in the fact table, X's long-standing value).
    pub user_tweets: u32,
    /// `POST /2/media/upload/initialize` (1875).
    pub media_initialize: u32,
    /// `POST /2/media/upload/{id}/append` (1875).
    pub media_append: u32,
    /// `POST /2/media/upload/{id}/finalize` (1875).
    pub media_finalize: u32,
    /// `GET /2/media/upload` STATUS (1000).
    pub media_status: u32,
    /// One-shot `POST /2/media/upload` (500).
    pub media_upload: u32,
}

impl Default for XRateLimits {
    fn default() -> Self {
        Self {
            create_tweet: 100,
            users_me: 75,
            user_tweets: 900,
            media_initialize: 1875,
            media_append: 1875,
            media_finalize: 1875,
            media_status: 1000,
            media_upload: 500,
        }
    }
}

impl XRateLimits {
    /// The limit for `endpoint`; `None` for endpoints without a per-user limit.
    pub fn limit_for(&self, endpoint: XEndpoint) -> Option<u32> {
        Some(match endpoint {
            XEndpoint::CreateTweet => self.create_tweet,
            XEndpoint::UsersMe => self.users_me,
            XEndpoint::UserTweets => self.user_tweets,
            XEndpoint::MediaInitialize => self.media_initialize,
            XEndpoint::MediaAppend => self.media_append,
            XEndpoint::MediaFinalize => self.media_finalize,
            XEndpoint::MediaStatus => self.media_status,
            XEndpoint::MediaUpload => self.media_upload,
            XEndpoint::Token | XEndpoint::Any => return None,
        })
    }
}

/// An X endpoint, as named in fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XEndpoint {
    /// `POST /2/tweets`.
    CreateTweet,
    /// `POST /2/media/upload/initialize` (and legacy `command=INIT`).
    MediaInitialize,
    /// `POST /2/media/upload/{id}/append` (and legacy `command=APPEND`).
    MediaAppend,
    /// `POST /2/media/upload/{id}/finalize` (and legacy `command=FINALIZE`).
    MediaFinalize,
    /// `GET /2/media/upload?command=STATUS`.
    MediaStatus,
    /// One-shot `POST /2/media/upload` (no `command`).
    MediaUpload,
    /// `POST /2/oauth2/token`.
    Token,
    /// `GET /2/users/me`.
    UsersMe,
    /// `GET /2/users/{id}/tweets`.
    UserTweets,
    /// Wildcard: applies to any endpoint whose own queue is empty.
    Any,
}

/// Snapshot of the X twin, as served by `GET /x/_sandbox/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XStateSnapshot {
    /// Every post created, oldest first.
    pub posts: Vec<XPostSnapshot>,
    /// Every media upload, oldest first.
    pub media: Vec<XMediaSnapshot>,
    /// Every token pair issued, oldest first (plaintext, so tests can grep for leaks).
    pub tokens_issued: Vec<XIssuedTokens>,
    /// Recent requests to X routes (the `/_sandbox` routes are not recorded).
    pub requests: Vec<crate::RequestRecord>,
}

/// A created post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XPostSnapshot {
    /// Post id (19 digits).
    pub id: String,
    /// Author's user id.
    pub author_id: String,
    /// Post text.
    pub text: String,
    /// Attached media ids.
    pub media_ids: Vec<String>,
    /// Attached poll.
    pub poll: Option<XPollSnapshot>,
    /// Post replied to.
    pub in_reply_to_tweet_id: Option<String>,
    /// Post quoted.
    pub quote_tweet_id: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// A poll attached to a post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XPollSnapshot {
    /// Option labels.
    pub options: Vec<String>,
    /// Poll duration.
    pub duration_minutes: u32,
}

/// A media upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XMediaSnapshot {
    /// Media id (19 digits).
    pub id: String,
    /// Media key (`<type>_<id>`).
    pub media_key: String,
    /// Uploading user id.
    pub owner_id: String,
    /// MIME type declared at INIT.
    pub media_type: String,
    /// Media category declared (or derived) at INIT.
    pub media_category: String,
    /// Size declared at INIT.
    pub total_bytes: u64,
    /// Bytes received so far (a re-sent segment replaces the earlier one).
    pub bytes_received: u64,
    /// Segment indices received, ascending.
    pub segments: Vec<u32>,
    /// `uploading`, `pending`, `in_progress`, `succeeded` or `failed`.
    pub state: String,
}

/// A token pair issued by the token endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XIssuedTokens {
    /// Access token plaintext.
    pub access_token: String,
    /// Refresh token plaintext (only with `offline.access`).
    pub refresh_token: Option<String>,
    /// User the tokens act for.
    pub user_id: String,
    /// Space-separated scopes.
    pub scope: String,
}

/// The `/x` scope with every route and the request-recording middleware.
pub(crate) fn scope(state: web::Data<XState>) -> impl HttpServiceFactory {
    crate::twin::scope("/x", state)
        .route("/i/oauth2/authorize", web::get().to(oauth::authorize))
        .route("/2/oauth2/token", web::post().to(oauth::token))
        .route("/2/oauth2/revoke", web::post().to(oauth::revoke))
        .route("/2/users/me", web::get().to(users::me))
        .route("/2/users/{id}/tweets", web::get().to(tweets::user_tweets))
        .route("/2/tweets", web::post().to(tweets::create))
        .route(
            "/2/media/upload/initialize",
            web::post().to(media::initialize),
        )
        .route("/2/media/upload/{id}/append", web::post().to(media::append))
        .route(
            "/2/media/upload/{id}/finalize",
            web::post().to(media::finalize),
        )
        .route("/2/media/upload", web::get().to(media::status))
        .route("/2/media/upload", web::post().to(media::upload))
        .default_service(web::to(not_found))
}

async fn not_found() -> HttpResponse {
    Problem {
        status: actix_web::http::StatusCode::NOT_FOUND,
        title: "Not Found".to_owned(),
        type_: "about:blank".to_owned(),
        detail: "Sorry, that page does not exist".to_owned(),
    }
    .response()
}

/// What an authorized API request carries into its handler.
pub(crate) struct Ctx {
    pub caller: Caller,
    /// A fault that the handler itself must apply (effects, media processing).
    pub fault: Option<Fault>,
    rate: Option<RateStatus>,
}

/// Sets X's rate-limit headers on `resp`.
fn set_rate_headers(resp: &mut HttpResponse, rate: &RateStatus) {
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-rate-limit-limit", rate.limit.to_string()),
        ("x-rate-limit-remaining", rate.remaining.to_string()),
        ("x-rate-limit-reset", rate.reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
}

/// The response for a fault that prevents any effect, if `fault` is one.
pub(crate) async fn blocking_fault_response(
    fault: &Fault,
    limit: Option<u32>,
) -> Option<HttpResponse> {
    match fault {
        Fault::RateLimited { retry_after_secs } => {
            let mut resp = Problem::too_many_requests().response();
            let rate = RateStatus {
                limit: limit.unwrap_or(0),
                remaining: 0,
                reset: crate::epoch_now() + *retry_after_secs as i64,
                allowed: false,
            };
            set_rate_headers(&mut resp, &rate);
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, v);
            }
            Some(resp)
        }
        Fault::ServerError { status } => {
            let status = actix_web::http::StatusCode::from_u16(*status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            Some(Problem::server_error(status).response())
        }
        Fault::Timeout { secs } => {
            tokio::time::sleep(faults::secs(*secs)).await;
            Some(Problem::server_error(actix_web::http::StatusCode::SERVICE_UNAVAILABLE).response())
        }
        Fault::ContentRejected { detail } => Some(Problem::forbidden(detail.clone()).response()),
        _ => None,
    }
}

/// Authenticates, checks scopes, counts the request against the caller's
/// rate-limit window and applies request-level faults. `Err` is the response
/// to send as is.
pub(crate) async fn guard(
    state: &XState,
    req: &HttpRequest,
    endpoint: XEndpoint,
    scopes: &[&str],
) -> Result<Ctx, HttpResponse> {
    let token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::oauth::parse_bearer);
    let Some(caller) = token.and_then(|t| state.authenticate(t)) else {
        return Err(Problem::unauthorized().response());
    };
    let missing: Vec<&str> = scopes
        .iter()
        .copied()
        .filter(|s| !caller.scopes.iter().any(|c| c == s))
        .collect();
    if !missing.is_empty() {
        return Err(Problem::forbidden(format!(
            "Missing required OAuth 2.0 scope(s): {}",
            missing.join(", ")
        ))
        .response());
    }

    let limit = state.config.rate_limits.limit_for(endpoint);
    let rate = limit.map(|l| state.rate_hit(&caller.user_id, endpoint, l));
    if let Some(rate) = rate.filter(|r| !r.allowed) {
        let mut resp = Problem::too_many_requests().response();
        set_rate_headers(&mut resp, &rate);
        return Err(resp);
    }
    let with_rate = |mut resp: HttpResponse| {
        if let Some(rate) = &rate {
            set_rate_headers(&mut resp, rate);
        }
        resp
    };

    let fault = state.take_fault(endpoint);
    if let Some(fault) = &fault {
        tracing::info!(?endpoint, ?fault, "x sandbox applying fault");
        if let Some(resp) = blocking_fault_response(fault, limit).await {
            // An injected 429 carries its own (exhausted) window headers.
            return Err(if matches!(fault, Fault::RateLimited { .. }) {
                resp
            } else {
                with_rate(resp)
            });
        }
        match fault {
            Fault::ExpireToken => {
                state.expire_access_token(&caller.access_token);
                return Err(with_rate(Problem::unauthorized().response()));
            }
            Fault::RevokeGrant => {
                state.revoke_grant(caller.grant_id);
                return Err(with_rate(Problem::unauthorized().response()));
            }
            _ => {}
        }
    }
    Ok(Ctx {
        caller,
        fault,
        rate,
    })
}

/// Adds rate-limit headers and applies `timeout_after_success` (the effect has
/// happened; the client should time out before this answer arrives).
pub(crate) async fn finish(ctx: Ctx, mut resp: HttpResponse) -> HttpResponse {
    if let Some(rate) = &ctx.rate {
        set_rate_headers(&mut resp, rate);
    }
    delay_if_timeout_after_success(ctx.fault.as_ref()).await;
    resp
}

/// Sleeps when `fault` is `timeout_after_success`.
pub(crate) async fn delay_if_timeout_after_success(fault: Option<&Fault>) {
    if let Some(Fault::TimeoutAfterSuccess { secs }) = fault {
        tokio::time::sleep(faults::secs(*secs)).await;
    }
}

/// Query parameters in order, percent-decoded.
pub(crate) fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// The value of the first query (or form) parameter named `name`.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
