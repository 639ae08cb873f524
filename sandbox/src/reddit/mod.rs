//! The Reddit twin, mounted under `/reddit`.
//!
//! Shapes follow `platform-facts.md` §9 (the archived open-source reddit, `r2/controllers/
//! oauth2.py` and `api.py`, and the 2023 rate-limit announcement). Reddit serves OAuth from
//! `www.reddit.com` and the API from `oauth.reddit.com`; the twin serves both under one prefix.
//! Routes (relative to `/reddit`):
//!
//! | Method | Path | Purpose |
//! |---|---|---|
//! | GET | `/api/v1/authorize` | auto-approving consent, 302 with `code` and `state` |
//! | POST | `/api/v1/access_token` | code and refresh grants (HTTP Basic client auth) |
//! | POST | `/api/v1/revoke_token` | token revocation (HTTP Basic client auth) |
//! | GET | `/api/v1/me` | the caller (`identity`) |
//! | POST | `/api/submit` | submit a self, link, image, video or videogif post (`submit`; `api_type=json` envelope) |
//! | POST | `/api/submit_gallery_post.json` | submit a gallery: JSON `items` of uploaded images (`submit`) |
//! | POST | `/api/media/asset.json` | an upload lease for an image or video (`submit`) |
//! | POST | `/media-upload` | the S3-style form upload the lease points at |
//! | GET | `/r/{sr}/api/link_flair_v2` | a subreddit's post flairs (`flair`) |
//! | GET | `/user/{name}/submitted` | a user's posts, newest first (`history`) |
//! | POST/GET/DELETE | `/_sandbox/faults` | fault injection (not part of Reddit) |
//! | GET | `/_sandbox/state` | read-only state dump (not part of Reddit) |
//!
//! Every API answer (even a 429) carries `X-Ratelimit-Used`, `X-Ratelimit-Remaining` and
//! `X-Ratelimit-Reset`, counted per OAuth client id over a ten-minute window.
//!
//! Galleries and videos follow PRAW's recorded exchanges with Reddit (`submit_gallery`,
//! `submit_video`): a gallery answers `{"json": {"errors": [], "data": {"url", "id": "t3_..."}}}`
//! and is listed with `is_gallery` and `gallery_data.items[].media_id`; a video answers only a
//! `websocket_url` and is listed, once processed, with `is_video` and a URL ending in the video's
//! asset id. A gallery naming media the caller did not upload gets `INVALID_MEDIA_ASSETS` (seen
//! from Reddit). The twin's other media refusals are modelled with Reddit's older codes, not
//! observed: a gallery of fewer than 2 or more than `max_gallery_items` items `BAD_NUMBER`, a
//! video without `video_poster_url` `NO_URL`, a subreddit that takes no images, galleries or
//! videos `INVALID_OPTION`.
// Validation helpers return the refusal to send as their error; these are built once per
// request, so their size does not matter.
#![allow(clippy::result_large_err)]

mod api;
mod oauth;
mod state;

use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::faults::{self, Fault};
use crate::ratelimit::RateStatus;
use crate::twin::Twin as _;
use state::Caller;
pub(crate) use state::RedditState;

/// Default OAuth client id of the twin.
pub const DEFAULT_CLIENT_ID: &str = "herald-sandbox-reddit";
/// Default client secret of the twin.
pub const DEFAULT_CLIENT_SECRET: &str = "herald-sandbox-reddit-secret";
/// The user who authorizes when no `sandbox_user` is given.
pub const DEFAULT_USERNAME: &str = "herald_sandbox";
/// Longest title (`VTitle`).
pub const MAX_TITLE: usize = 300;
/// Longest self-post text.
pub const MAX_TEXT: usize = 40_000;

/// Which posts a subreddit takes (`link_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    /// Text and link (and image) posts.
    Any,
    /// Text posts only: links and images get `NO_LINKS`.
    SelfOnly,
    /// Link and image posts only: text posts get `NO_SELFS`.
    LinkOnly,
}

/// A subreddit of the twin.
#[derive(Debug, Clone)]
pub struct RedditSubreddit {
    pub name: String,
    pub link_type: LinkType,
    /// Image posts, galleries (multiple images per post) and videos are allowed (Reddit's
    /// `allow_images`, `allow_galleries`, `allow_videos` community settings).
    pub allow_images: bool,
    pub allow_galleries: bool,
    pub allow_videos: bool,
    /// Only `approved` users may post (others get `SUBREDDIT_NOTALLOWED`).
    pub restricted: bool,
    pub approved: Vec<String>,
    /// Posts need a flair (`SUBMIT_VALIDATION_FLAIR_REQUIRED`).
    pub flair_required: bool,
    /// `(flair template id, text)`.
    pub flairs: Vec<(String, String)>,
    /// Link domains refused with `DOMAIN_BANNED`.
    pub banned_domains: Vec<String>,
}

impl RedditSubreddit {
    /// An open subreddit taking every kind of post.
    pub fn open(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            link_type: LinkType::Any,
            allow_images: true,
            allow_galleries: true,
            allow_videos: true,
            restricted: false,
            approved: vec![],
            flair_required: false,
            flairs: vec![],
            banned_domains: vec![],
        }
    }
}

/// Configuration of the Reddit twin.
#[derive(Debug, Clone)]
pub struct RedditConfig {
    /// The one registered app.
    pub client_id: String,
    /// Its secret (HTTP Basic at the token endpoint).
    pub client_secret: String,
    /// Access-token lifetime (Reddit: one hour).
    pub access_token_lifetime: Duration,
    /// Requests per client id per window (Reddit: 100 per minute over ten minutes).
    pub requests_per_window: u32,
    pub rate_limit_window: Duration,
    /// Per-user submissions allowed per `submit_window` before `RATELIMIT`.
    pub submits_per_window: u32,
    pub submit_window: Duration,
    /// How long an image post takes to show up in listings after submit.
    pub image_processing_delay: Duration,
    /// How long a video post takes to show up in listings after submit.
    pub video_processing_delay: Duration,
    /// Largest image upload (bytes).
    pub image_max_bytes: u64,
    /// Largest video upload (bytes).
    pub video_max_bytes: u64,
    /// Most items in a gallery.
    pub max_gallery_items: usize,
    /// Users in a timeout (`IN_TIMEOUT`) and users asked for a captcha (`BAD_CAPTCHA`).
    pub users_in_timeout: Vec<String>,
    pub users_needing_captcha: Vec<String>,
    pub subreddits: Vec<RedditSubreddit>,
}

impl Default for RedditConfig {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            access_token_lifetime: Duration::from_secs(3600),
            requests_per_window: 1000,
            rate_limit_window: Duration::from_secs(600),
            submits_per_window: 100,
            submit_window: Duration::from_secs(600),
            image_processing_delay: Duration::from_millis(300),
            video_processing_delay: Duration::from_millis(500),
            image_max_bytes: 20 * 1024 * 1024,
            video_max_bytes: 1024 * 1024 * 1024,
            max_gallery_items: 20,
            users_in_timeout: vec![],
            users_needing_captcha: vec![],
            subreddits: vec![
                RedditSubreddit::open("herald_sandbox"),
                RedditSubreddit {
                    link_type: LinkType::SelfOnly,
                    ..RedditSubreddit::open("textonly")
                },
                RedditSubreddit {
                    link_type: LinkType::LinkOnly,
                    banned_domains: vec!["spam.example".into()],
                    ..RedditSubreddit::open("linksonly")
                },
                RedditSubreddit {
                    flair_required: true,
                    flairs: vec![
                        (
                            "3f2c0e1a-0000-4000-8000-000000000001".into(),
                            "Discussion".into(),
                        ),
                        ("3f2c0e1a-0000-4000-8000-000000000002".into(), "News".into()),
                    ],
                    ..RedditSubreddit::open("needsflair")
                },
                RedditSubreddit {
                    restricted: true,
                    ..RedditSubreddit::open("private_club")
                },
                RedditSubreddit {
                    allow_videos: false,
                    allow_galleries: false,
                    ..RedditSubreddit::open("stills")
                },
            ],
        }
    }
}

/// A Reddit endpoint, as named in fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedditEndpoint {
    /// `POST /api/v1/access_token` (both grants).
    Token,
    /// `POST /api/v1/revoke_token`.
    Revoke,
    /// `GET /api/v1/me`.
    Me,
    /// `POST /api/submit`.
    Submit,
    /// `POST /api/submit_gallery_post.json`.
    SubmitGallery,
    /// `POST /api/media/asset.json`.
    MediaAsset,
    /// `POST /media-upload`.
    MediaUpload,
    /// `GET /r/{sr}/api/link_flair_v2`.
    Flairs,
    /// `GET /user/{name}/submitted`.
    Submitted,
    /// Wildcard: applies to any endpoint whose own queue is empty.
    Any,
}

/// Snapshot of the Reddit twin, as served by `GET /reddit/_sandbox/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedditStateSnapshot {
    /// Every submitted post, oldest first.
    pub posts: Vec<RedditPostSnapshot>,
    /// Every media asset lease.
    pub assets: Vec<RedditAssetSnapshot>,
    /// Every token issued (plaintext, so tests can grep for leaks).
    pub tokens_issued: Vec<RedditIssuedToken>,
    /// User-Agents seen on API and token requests, in order (one per request).
    pub user_agents: Vec<String>,
    /// Recent requests to Reddit routes (the `/_sandbox` routes are not recorded).
    pub requests: Vec<crate::RequestRecord>,
}

/// A submitted post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedditPostSnapshot {
    /// Base-36 id; the fullname is `t3_{id}`.
    pub id: String,
    pub author: String,
    pub subreddit: String,
    /// `self`, `link`, `image`, `gallery`, `video` or `videogif`.
    pub kind: String,
    pub title: String,
    pub text: String,
    pub url: Option<String>,
    pub flair_id: Option<String>,
    pub flair_text: Option<String>,
    pub nsfw: bool,
    pub spoiler: bool,
    pub permalink: String,
    /// A gallery's images, or a video, by asset id (in order).
    #[serde(default)]
    pub media_ids: Vec<String>,
    /// A video's poster image.
    #[serde(default)]
    pub poster_url: Option<String>,
}

/// A media upload lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedditAssetSnapshot {
    pub asset_id: String,
    pub owner: String,
    pub mimetype: String,
    /// Bytes received by the upload target; `None` until uploaded.
    pub bytes: Option<u64>,
    /// Where the upload answered it is (what a submission points at); `None` until uploaded.
    #[serde(default)]
    pub location: Option<String>,
}

/// A token issued by the twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedditIssuedToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub username: String,
}

/// The `/reddit` scope with every route and the request-recording middleware.
pub(crate) fn scope(state: web::Data<RedditState>) -> impl HttpServiceFactory {
    crate::twin::scope("/reddit", state)
        .route("/api/v1/authorize", web::get().to(oauth::authorize))
        .route("/api/v1/access_token", web::post().to(oauth::access_token))
        .route("/api/v1/revoke_token", web::post().to(oauth::revoke))
        .route("/api/v1/me", web::get().to(api::me))
        .route("/api/submit", web::post().to(api::submit))
        .route(
            "/api/submit_gallery_post.json",
            web::post().to(api::submit_gallery),
        )
        .route("/api/media/asset.json", web::post().to(api::media_asset))
        .route("/media-upload", web::post().to(api::media_upload))
        .route("/r/{sr}/api/link_flair_v2", web::get().to(api::link_flairs))
        .route("/user/{name}/submitted", web::get().to(api::submitted))
        .default_service(web::to(|| async {
            reddit_error(StatusCode::NOT_FOUND, "Not Found")
        }))
}

/// Reddit's plain error body: `{"message": "...", "error": <status>}`.
pub(crate) fn reddit_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "message": message, "error": status.as_u16() }))
}

/// The `api_type=json` envelope with errors `[code, message, field]` (HTTP 200, as Reddit).
pub(crate) fn json_errors(errors: &[(&str, &str, &str)]) -> HttpResponse {
    let errors: Vec<_> = errors.iter().map(|(c, m, f)| json!([c, m, f])).collect();
    HttpResponse::Ok().json(json!({"json": {"errors": errors}}))
}

/// The `X-Ratelimit-*` headers for `status`.
pub(crate) fn set_ratelimit_headers(resp: &mut HttpResponse, status: &RateStatus) {
    let used = status.limit - status.remaining;
    let reset = (status.reset - crate::epoch_now()).max(0);
    for (name, value) in [
        ("x-ratelimit-used", used.to_string()),
        ("x-ratelimit-remaining", format!("{}.0", status.remaining)),
        ("x-ratelimit-reset", reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
}

/// The response for a fault that prevents any effect, if `fault` is one.
pub(crate) async fn blocking_fault_response(fault: &Fault) -> Option<HttpResponse> {
    match fault {
        Fault::RateLimited { retry_after_secs } => {
            let mut resp = reddit_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            let status = RateStatus {
                limit: 1000,
                remaining: 0,
                reset: crate::epoch_now() + *retry_after_secs as i64,
                allowed: false,
            };
            set_ratelimit_headers(&mut resp, &status);
            Some(resp)
        }
        Fault::ServerError { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(reddit_error(
                status,
                status.canonical_reason().unwrap_or("Internal Server Error"),
            ))
        }
        Fault::Timeout { secs } => {
            tokio::time::sleep(faults::secs(*secs)).await;
            Some(reddit_error(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"))
        }
        _ => None,
    }
}

/// What an authorized API request carries into its handler.
pub(crate) struct Ctx {
    pub caller: Caller,
    /// A fault the handler itself applies (content rejected, timeout after success, ...).
    pub fault: Option<Fault>,
    pub rate: RateStatus,
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|h| h.to_str().ok())
}

/// Reddit asks for `<platform>:<app ID>:<version string> (by /u/<reddit username>)`; generic
/// agents are throttled hard. The twin refuses anything without that shape.
pub(crate) fn user_agent_ok(state: &RedditState, req: &HttpRequest) -> Result<(), HttpResponse> {
    let agent = header(req, "user-agent").unwrap_or_default();
    state.record_user_agent(agent);
    let (head, by) = agent.split_once(" (by /u/").unwrap_or((agent, ""));
    let shaped =
        head.split(':').filter(|s| !s.is_empty()).count() >= 3 && by.ends_with(')') && by.len() > 1;
    if shaped {
        return Ok(());
    }
    Err(reddit_error(
        StatusCode::FORBIDDEN,
        "Forbidden: send a unique User-Agent like <platform>:<app ID>:<version> (by /u/<username>)",
    ))
}

/// Checks the User-Agent, authenticates, counts the call against the client's window (429
/// when spent), checks the scope and applies request-level faults. `Err` is the response.
pub(crate) async fn guard(
    state: &RedditState,
    req: &HttpRequest,
    endpoint: RedditEndpoint,
    scope: &str,
) -> Result<Ctx, HttpResponse> {
    user_agent_ok(state, req)?;
    let token = header(req, "authorization").and_then(crate::oauth::parse_bearer);
    let Some(caller) = token.and_then(|t| state.authenticate(t)) else {
        return Err(reddit_error(StatusCode::UNAUTHORIZED, "Unauthorized"));
    };
    let rate = state.count_call(&caller.client_id);
    if !rate.allowed {
        let mut resp = reddit_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
        set_ratelimit_headers(&mut resp, &rate);
        return Err(resp);
    }
    let with_headers = |mut resp: HttpResponse| {
        set_ratelimit_headers(&mut resp, &rate);
        resp
    };
    if !caller.scopes.iter().any(|s| s == scope || s == "*") {
        return Err(with_headers(reddit_error(
            StatusCode::FORBIDDEN,
            &format!("Forbidden: this call needs the {scope} scope"),
        )));
    }
    let fault = state.take_fault(endpoint);
    if let Some(fault) = &fault {
        tracing::info!(?endpoint, ?fault, "reddit sandbox applying fault");
        if let Some(resp) = blocking_fault_response(fault).await {
            return Err(resp);
        }
        match fault {
            Fault::ExpireToken => {
                state.invalidate_token(&caller.token);
                return Err(with_headers(reddit_error(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                )));
            }
            Fault::RevokeGrant => {
                state.revoke_user(&caller.username);
                return Err(with_headers(reddit_error(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                )));
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

/// Adds the rate-limit headers and applies `timeout_after_success`.
pub(crate) async fn finish(ctx: &Ctx, mut resp: HttpResponse) -> HttpResponse {
    set_ratelimit_headers(&mut resp, &ctx.rate);
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

/// `scheme://host` the client used.
pub(crate) fn origin(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}
