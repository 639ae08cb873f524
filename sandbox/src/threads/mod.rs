//! The Threads API twin, mounted under `/threads`.
//!
//! Shapes follow `platform-facts.md` §3 (Graph error envelope, usage headers) and §6 (Threads).
//! Routes (all relative to `/threads`; the real API also accepts a `/v1.0` prefix, which the twin
//! does not need):
//!
//! | Method | Path | Purpose |
//! |---|---|---|
//! | GET | `/oauth/authorize` | auto-approving consent, 302 to the client with `code` and `state` |
//! | POST | `/oauth/access_token` | code → short-lived token `{access_token, user_id}` |
//! | GET | `/access_token?grant_type=th_exchange_token` | short → long-lived token |
//! | GET | `/refresh_access_token?grant_type=th_refresh_token` | long-lived → new long-lived |
//! | GET | `/me?fields=id,username,name` | the caller |
//! | POST | `/{user-id}/threads` | create a media container (a reply with `reply_to_id`) |
//! | POST | `/{user-id}/threads_publish?creation_id=` | publish a container |
//! | GET | `/{user-id}/threads?since=` | the user's posts, newest first |
//! | GET | `/{user-id}/replies?since=` | the user's replies, newest first |
//! | GET | `/{media-id}/replies?reverse=` | the direct replies of a post (cursor paging) |
//! | GET | `/{user-id}/threads_publishing_limit` | quota usage (posts; replies when asked) |
//! | GET | `/{id}?fields=status,error_message` | a container's status, or a post |
//! | POST/GET/DELETE | `/_sandbox/faults` | fault injection (not part of Threads) |
//! | GET | `/_sandbox/state` | read-only state dump (not part of Threads) |
//!
//! Tokens are accepted as `access_token` (query or form) or `Authorization: Bearer`.

mod api;
mod state;

use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::faults::Fault;
use crate::meta::graph::{self, Throttle};
pub(crate) use crate::meta::graph::{graph_error, invalid_parameter, param, params};
use crate::twin::Twin as _;
use state::Caller;
pub(crate) use state::ThreadsState;

/// Default OAuth client id (Threads app id) of the twin.
pub const DEFAULT_CLIENT_ID: &str = "herald-sandbox-threads";
/// Default client secret of the twin.
pub const DEFAULT_CLIENT_SECRET: &str = "herald-sandbox-threads-secret";
/// Username of the account that authorizes when no `sandbox_user` is given.
pub const DEFAULT_USERNAME: &str = "herald_sandbox";
/// Display name of the default account.
pub const DEFAULT_NAME: &str = "Herald Sandbox";
/// Longest text of a post (platform-facts §6.3).
pub const MAX_TEXT: usize = 500;

/// Configuration of the Threads twin.
#[derive(Debug, Clone)]
pub struct ThreadsConfig {
    /// The one registered app id.
    pub client_id: String,
    /// Its app secret (sent in the request body or query).
    pub client_secret: String,
    /// Short-lived token lifetime (Threads: one hour).
    pub short_lived_lifetime: Duration,
    /// Long-lived token lifetime (Threads: 60 days).
    pub long_lived_lifetime: Duration,
    /// Minimum age before a long-lived token may be refreshed (Threads: 24 hours; the twin
    /// defaults to zero so tests can refresh at once).
    pub min_refresh_age: Duration,
    /// How long a video container stays `IN_PROGRESS`.
    pub video_processing_delay: Duration,
    /// Posts (not replies) per user per `quota_duration` (Threads: 250 per 24 h); set it low
    /// to see the limit refuse.
    pub quota_total: u32,
    /// Replies per user per `quota_duration`: "Threads profiles are limited to 1,000
    /// API-published replies within a 24-hour moving period"
    /// (https://developers.facebook.com/documentation/threads/retrieve-and-manage-replies).
    pub reply_quota_total: u32,
    /// Window of both publishing quotas.
    pub quota_duration: Duration,
    /// Calls per user before `X-App-Usage` reaches 100 % (facts §6.4: 4800 × 10 impressions).
    pub call_budget: u64,
}

impl Default for ThreadsConfig {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            short_lived_lifetime: Duration::from_secs(3600),
            long_lived_lifetime: Duration::from_secs(5_184_000),
            min_refresh_age: Duration::ZERO,
            video_processing_delay: Duration::from_millis(300),
            quota_total: 250,
            reply_quota_total: 1000,
            quota_duration: Duration::from_secs(86_400),
            call_budget: 48_000,
        }
    }
}

/// A Threads endpoint, as named in fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadsEndpoint {
    /// `POST /oauth/access_token`, `GET /access_token`, `GET /refresh_access_token`.
    Token,
    /// `GET /me`.
    Me,
    /// `POST /{user-id}/threads`.
    CreateContainer,
    /// `GET /{container-id}`.
    ContainerStatus,
    /// `POST /{user-id}/threads_publish`.
    Publish,
    /// `GET /{user-id}/threads`.
    ListThreads,
    /// `GET /{user-id}/threads_publishing_limit`.
    PublishingLimit,
    /// `GET /{id}/replies` (a post's replies, or the user's).
    ListReplies,
    /// Wildcard: applies to any endpoint whose own queue is empty.
    Any,
}

/// Snapshot of the Threads twin, as served by `GET /threads/_sandbox/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadsStateSnapshot {
    /// Every published post, oldest first.
    pub posts: Vec<ThreadsPostSnapshot>,
    /// Every container, oldest first.
    pub containers: Vec<ThreadsContainerSnapshot>,
    /// Every token issued (plaintext, so tests can grep for leaks).
    pub tokens_issued: Vec<ThreadsIssuedToken>,
    /// `threads_publish` calls refused because the profile's 24-hour publishing quota was used
    /// up (injected faults not counted).
    pub quota_refusals: u64,
    /// `threads_publish` calls of replies refused because the profile's 24-hour reply quota
    /// was used up.
    #[serde(default)]
    pub reply_quota_refusals: u64,
    /// Recent requests to Threads routes (the `/_sandbox` routes are not recorded).
    pub requests: Vec<crate::RequestRecord>,
}

/// A published post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadsPostSnapshot {
    pub id: String,
    pub owner_id: String,
    pub container_id: String,
    /// `TEXT_POST`, `IMAGE`, `VIDEO` or `CAROUSEL_ALBUM`.
    pub media_type: String,
    pub text: String,
    /// Image/video URLs, in carousel order.
    pub media_urls: Vec<String>,
    pub reply_to_id: Option<String>,
    pub permalink: String,
    pub timestamp: String,
}

/// A media container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadsContainerSnapshot {
    pub id: String,
    pub owner_id: String,
    pub media_type: String,
    pub text: Option<String>,
    pub image_url: Option<String>,
    pub video_url: Option<String>,
    pub children: Vec<String>,
    pub is_carousel_item: bool,
    /// `IN_PROGRESS`, `FINISHED`, `ERROR` or `PUBLISHED`.
    pub status: String,
}

/// A token issued by the twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadsIssuedToken {
    pub access_token: String,
    pub user_id: String,
    pub long_lived: bool,
}

/// The `/threads` scope with every route and the request-recording middleware.
pub(crate) fn scope(state: web::Data<ThreadsState>) -> impl HttpServiceFactory {
    crate::twin::scope("/threads", state)
        .route("/oauth/authorize", web::get().to(api::authorize))
        .route("/oauth/access_token", web::post().to(api::exchange_code))
        .route("/access_token", web::get().to(api::exchange_long_lived))
        .route("/refresh_access_token", web::get().to(api::refresh))
        .route("/me", web::get().to(api::me))
        .route("/{user_id}/threads", web::post().to(api::create_container))
        .route("/{user_id}/threads", web::get().to(api::list_threads))
        .route("/{user_id}/threads_publish", web::post().to(api::publish))
        .route("/{id}/replies", web::get().to(api::list_replies))
        .route(
            "/{user_id}/threads_publishing_limit",
            web::get().to(api::publishing_limit),
        )
        .route("/{id}", web::get().to(api::get_object))
        .default_service(web::to(|| async {
            graph_error(
                StatusCode::BAD_REQUEST,
                "Unsupported request - method type or path not supported",
                "GraphMethodException",
                100,
                None,
            )
        }))
}

/// Error 190: the token is invalid, expired or revoked.
pub(crate) fn invalid_token(subcode: Option<i64>) -> HttpResponse {
    graph_error(
        StatusCode::UNAUTHORIZED,
        "Error validating access token: Session has expired or the token is invalid.",
        "OAuthException",
        190,
        subcode,
    )
}

/// The response for a fault that prevents any effect, if `fault` is one.
pub(crate) async fn blocking_fault_response(
    fault: &Fault,
    user_id: Option<&str>,
) -> Option<HttpResponse> {
    let throttle = Throttle {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: 4,
        message: "Application request limit reached",
        buc: Some((user_id.unwrap_or("0"), "threads")),
    };
    graph::blocking_fault_response(fault, throttle, (10, Some(2_207_051))).await
}

/// What an authorized API request carries into its handler.
pub(crate) struct Ctx {
    pub caller: Caller,
    /// A fault the handler itself applies (processing, timeout after success).
    pub fault: Option<Fault>,
    usage: u64,
}

/// Authenticates, checks scopes, counts the call and applies request-level faults. `Err` is
/// the response to send as is.
pub(crate) async fn guard(
    state: &ThreadsState,
    req: &HttpRequest,
    params: &[(String, String)],
    endpoint: ThreadsEndpoint,
    scopes: &[&str],
) -> Result<Ctx, HttpResponse> {
    let Some(caller) = graph::request_token(req, params).and_then(|t| state.authenticate(&t))
    else {
        return Err(invalid_token(None));
    };
    if let Some(missing) = scopes
        .iter()
        .find(|s| !caller.scopes.iter().any(|c| c == *s))
    {
        return Err(graph_error(
            StatusCode::FORBIDDEN,
            &format!("(#10) Application does not have permission for this action: {missing}"),
            "OAuthException",
            10,
            None,
        ));
    }
    let usage = state.count_call(&caller.user_id);
    let fault = state.take_fault(endpoint);
    if let Some(fault) = &fault {
        tracing::info!(?endpoint, ?fault, "threads sandbox applying fault");
        if let Some(resp) = blocking_fault_response(fault, Some(&caller.user_id)).await {
            return Err(resp);
        }
        match fault {
            Fault::ExpireToken => {
                state.invalidate_token(&caller.token);
                return Err(invalid_token(Some(463)));
            }
            Fault::RevokeGrant => {
                state.revoke_user(&caller.user_id);
                return Err(invalid_token(Some(460)));
            }
            _ => {}
        }
    }
    Ok(Ctx {
        caller,
        fault,
        usage,
    })
}

/// Adds the usage header and applies `timeout_after_success` (the effect has happened; the
/// client should time out before this answer arrives).
pub(crate) async fn finish(ctx: Ctx, mut resp: HttpResponse) -> HttpResponse {
    graph::set_app_usage(&mut resp, ctx.usage);
    graph::delay_after_success(ctx.fault.as_ref()).await;
    resp
}

/// Threads' text length: code points, except that emoji count their UTF-8 bytes
/// (platform-facts §6.3).
pub fn text_length(text: &str) -> usize {
    text.chars()
        .map(|c| {
            let emoji = matches!(c as u32,
                0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0xFE00..=0xFE0F | 0x200D);
            if emoji {
                c.len_utf8()
            } else {
                1
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_count_their_bytes() {
        assert_eq!(text_length("abc"), 3);
        assert_eq!(text_length("é😀"), 1 + 4);
    }
}
