//! The Meta Graph API twin for Facebook Pages and Instagram (with Facebook Login), mounted
//! under `/meta`.
//!
//! Facebook Pages and Instagram business accounts share one host (`graph.facebook.com`), one
//! login (Facebook Login) and one token family, so they share one twin: a Page's token also
//! publishes to the Instagram account linked to that Page. Shapes follow `platform-facts.md` §3
//! (Graph errors, usage headers, Facebook Login), §4 (Instagram containers) and §5 (Pages).
//!
//! Routes, relative to `/meta`. Graph paths carry a version (`/v25.0/...`; any `vN.N` is
//! accepted). The real API spreads them over `www.facebook.com` (the dialog),
//! `graph.facebook.com` and `graph-video.facebook.com` (video uploads); the twin serves all of
//! them from one base.
//!
//! | Method | Path | Purpose |
//! |---|---|---|
//! | GET | `/{v}/dialog/oauth` | auto-approving Facebook Login dialog, 302 with `code` and `state` |
//! | GET/POST | `/{v}/oauth/access_token` | code → short-lived user token; `grant_type=fb_exchange_token` → long-lived |
//! | GET | `/{v}/me`, `/{v}/me/permissions` | the caller (a user, or a Page for a Page token); granted permissions |
//! | DELETE | `/{v}/{user-id}/permissions/{permission}` | revokes a permission the user granted the app: every token of the user loses it |
//! | GET | `/{v}/me/accounts` | the user's Pages with Page tokens, tasks and linked Instagram account |
//! | GET | `/{v}/{page-id}` | a Page (`instagram_business_account`, `access_token`, ...) |
//! | POST/GET | `/{v}/{page-id}/feed` | text, link and multi-photo (`attached_media`) posts; the feed |
//! | POST | `/{v}/{page-id}/photos` | a photo by `url` (`published=false` to attach it later) |
//! | POST/GET | `/{v}/{page-id}/videos` | `upload_phase=start/transfer/finish` or `file_url`; the Page's videos |
//! | GET | `/{v}/{ig-user-id}` | an Instagram business account |
//! | POST | `/{v}/{ig-user-id}/media` | an Instagram container (image, REELS, STORIES, carousel) |
//! | POST | `/{v}/{ig-user-id}/media_publish` | publish a FINISHED container, once, within the quota |
//! | GET | `/{v}/{ig-user-id}/media`, `/stories` | published media, newest first |
//! | GET | `/{v}/{ig-user-id}/content_publishing_limit` | `quota_usage` and `config` |
//! | POST | `/ig-api-upload/{v}/{container-id}` | rupload: a resumable container's bytes (`offset`, `file_size`) |
//! | POST | `/{v}/{page-id}/video_reels` | a Page reel: `upload_phase=start` (`video_id`, `upload_url`), `finish` (publish, 30 per 24 h) |
//! | POST | `/video-upload/{v}/{video-id}` | rupload: a reel's bytes (`offset`, `file_size`) |
//! | GET | `/{v}/{id}` | a post, photo, video (`status`), container (`status_code`) or IG media |
//! | POST/GET/DELETE | `/_sandbox/faults` | fault injection (not part of Meta) |
//! | GET | `/_sandbox/state` | read-only state dump (not part of Meta) |
//! | POST | `/_sandbox/users` | declare a user's Pages and linked Instagram accounts |
//! | PUT | `/_sandbox/deauthorize_callback` | the app's Deauthorize Callback URL (Meta: set in the dashboard) |
//! | POST | `/_sandbox/deauthorize` | a person removes the app: tokens revoked, signed request posted to the callback |
//!
//! A login as an unknown `sandbox_user` creates that user with two Pages, the first linked to
//! the Instagram business account `{user}_ig` (see [`MetaUserSpec::default_for`]).
// Handlers' checks return the response to send as their error; it is sent at once, so its
// size does not matter and boxing it would only add noise.
#![allow(clippy::result_large_err)]

mod api;
mod control;
mod deauthorize;
mod fetch;
pub mod graph;
mod instagram;
mod oauth;
mod pages;
mod rupload;
mod state;

use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::faults::Fault;
use crate::twin::Twin as _;
pub use deauthorize::signed_request;
use graph::{graph_error, Throttle};
pub(crate) use state::MetaState;
use state::{Caller, TokenKind};

/// Default app id of the twin.
pub const DEFAULT_CLIENT_ID: &str = "herald-sandbox-meta";
/// Default app secret of the twin.
pub const DEFAULT_CLIENT_SECRET: &str = "herald-sandbox-meta-secret";
/// The user who logs in when no `sandbox_user` is given.
pub const DEFAULT_USERNAME: &str = "herald_sandbox";
/// The tasks a Page role can carry (`CREATE_CONTENT` is needed to publish).
pub const ALL_TASKS: [&str; 5] = [
    "ANALYZE",
    "ADVERTISE",
    "MODERATE",
    "CREATE_CONTENT",
    "MANAGE",
];
/// Longest Facebook post message.
pub const MAX_MESSAGE: usize = 63_206;

/// Configuration of the Meta twin.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    /// The one registered app id.
    pub client_id: String,
    /// Its app secret.
    pub client_secret: String,
    /// Short-lived user token lifetime (Meta: "expiring in hours").
    pub short_lived_lifetime: Duration,
    /// Long-lived user token lifetime (Meta's example: 5183944 s, about 60 days).
    pub long_lived_lifetime: Duration,
    /// Users known from the start; others are created with [`MetaUserSpec::default_for`].
    pub users: Vec<MetaUserSpec>,
    /// Largest chunk a video transfer may carry (the twin's `end_offset - start_offset`).
    pub video_chunk_size: u64,
    /// How long a finished Page video stays `processing`.
    pub video_processing_delay: Duration,
    /// How long an Instagram video container stays `IN_PROGRESS`.
    pub ig_video_processing_delay: Duration,
    /// Instagram posts per account per `ig_quota_duration` (docs say 50 or 100; see facts §4.3).
    pub ig_quota_total: u32,
    /// Window of the Instagram publishing quota.
    pub ig_quota_duration: Duration,
    /// Containers an Instagram account may create per 24 hours (facts §4.3: 400).
    pub ig_container_limit: usize,
    /// Containers not published within this expire (facts §4.3: 24 hours).
    pub ig_container_lifetime: Duration,
    /// Reels a Page may publish through the API in `reel_quota_window` (Meta: 30 in a moving
    /// 24 hours, Reels Publishing API "Rate Limit").
    pub reel_quota_total: u32,
    pub reel_quota_window: Duration,
    /// Calls per usage owner per `usage_window` before the usage headers reach 100 % and Meta
    /// refuses with its throttling error (code 4 for the app, 80001 for a Page, 80002 for an
    /// Instagram account) until the window ends.
    pub call_budget: u64,
    /// The window `call_budget` counts over (Meta: a rolling hour for the app's platform
    /// limit; business-use-case limits state their wait in `estimated_time_to_regain_access`).
    pub usage_window: Duration,
    /// How long the twin waits for a media URL before giving up.
    pub media_fetch_timeout: Duration,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            short_lived_lifetime: Duration::from_secs(2 * 3600),
            long_lived_lifetime: Duration::from_secs(5_183_944),
            users: Vec::new(),
            video_chunk_size: 1024 * 1024,
            video_processing_delay: Duration::from_millis(300),
            ig_video_processing_delay: Duration::from_millis(300),
            ig_quota_total: 50,
            ig_quota_duration: Duration::from_secs(86_400),
            ig_container_limit: 400,
            ig_container_lifetime: Duration::from_secs(86_400),
            reel_quota_total: 30,
            reel_quota_window: Duration::from_secs(86_400),
            call_budget: 48_000,
            usage_window: Duration::from_secs(3600),
            media_fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// A Facebook user of the twin and the Pages they manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaUserSpec {
    /// The `sandbox_user` name that logs in as this user.
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The Pages; an empty list is a user who manages no Page.
    #[serde(default)]
    pub pages: Vec<MetaPageSpec>,
}

/// A Page a user has a role on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaPageSpec {
    /// Pages are matched by name: two users naming the same Page share it.
    pub name: String,
    #[serde(default)]
    pub category: Option<String>,
    /// The user's tasks on the Page (default: all of [`ALL_TASKS`]).
    #[serde(default)]
    pub tasks: Option<Vec<String>>,
    /// Username of the Instagram business/creator account linked to the Page. A personal
    /// Instagram account cannot be linked, so it never appears here.
    #[serde(default)]
    pub instagram_business_account: Option<String>,
}

impl MetaUserSpec {
    /// The layout of a user nobody declared: two Pages, the first linked to `{username}_ig`.
    pub fn default_for(username: &str) -> Self {
        Self {
            username: username.to_owned(),
            name: None,
            pages: vec![
                MetaPageSpec {
                    name: format!("{username} Page One"),
                    category: None,
                    tasks: None,
                    instagram_business_account: Some(format!("{username}_ig")),
                },
                MetaPageSpec {
                    name: format!("{username} Page Two"),
                    category: None,
                    tasks: None,
                    instagram_business_account: None,
                },
            ],
        }
    }
}

/// A Meta endpoint, as named in fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaEndpoint {
    /// `/oauth/access_token` (code and `fb_exchange_token`).
    Token,
    /// `GET /me`, `/me/permissions`, `/me/accounts`.
    Me,
    /// `GET /{page-id}` and `GET /{ig-user-id}`.
    Account,
    /// `POST /{page-id}/feed`.
    PageFeed,
    /// `POST /{page-id}/photos`.
    PagePhotos,
    /// `POST /{page-id}/videos` with `upload_phase=start` (or `file_url`).
    VideoStart,
    /// `POST /{page-id}/videos` with `upload_phase=transfer`.
    VideoTransfer,
    /// `POST /{page-id}/videos` with `upload_phase=finish`.
    VideoFinish,
    /// `GET /{page-id}/feed`, `/{page-id}/videos`.
    ListPagePosts,
    /// `GET /{id}` for posts, photos and videos.
    PageObject,
    /// `POST /{ig-user-id}/media`.
    IgCreateContainer,
    /// `GET /{container-id}`.
    IgContainerStatus,
    /// `POST /{ig-user-id}/media_publish`.
    IgPublish,
    /// `GET /{ig-user-id}/content_publishing_limit`.
    IgPublishingLimit,
    /// `POST /ig-api-upload/{v}/{container-id}` (rupload): a resumable video's bytes.
    IgUpload,
    /// `GET /{ig-user-id}/media`, `/stories` and `GET /{ig-media-id}`.
    IgListMedia,
    /// `POST /{page-id}/video_reels` with `upload_phase=start`.
    ReelStart,
    /// `POST /video-upload/{v}/{video-id}` (rupload): a reel's bytes.
    ReelUpload,
    /// `POST /{page-id}/video_reels` with `upload_phase=finish`.
    ReelFinish,
    /// `DELETE /{user-id}/permissions/{permission}`.
    RevokePermission,
    /// Wildcard: applies to any endpoint whose own queue is empty.
    Any,
}

/// Snapshot of the Meta twin, as served by `GET /meta/_sandbox/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaStateSnapshot {
    pub users: Vec<MetaUserSnapshot>,
    pub pages: Vec<MetaPageSnapshot>,
    pub instagram_accounts: Vec<MetaIgAccountSnapshot>,
    /// Every Page post, oldest first (video posts included while they process).
    pub page_posts: Vec<MetaPagePostSnapshot>,
    pub photos: Vec<MetaPhotoSnapshot>,
    pub videos: Vec<MetaVideoSnapshot>,
    /// Every Instagram container, oldest first.
    pub containers: Vec<MetaContainerSnapshot>,
    /// Every published Instagram media, oldest first.
    pub instagram_media: Vec<MetaIgMediaSnapshot>,
    /// Every token issued (plaintext, so tests can grep for leaks).
    pub tokens_issued: Vec<MetaIssuedToken>,
    /// Every resumable-upload request (rupload), in order.
    pub ig_uploads: Vec<MetaIgUploadRecord>,
    /// `media_publish` calls refused because the account's publishing quota was used up
    /// (2207042; injected faults not counted).
    pub ig_quota_refusals: u64,
    /// Every rupload request of a Page reel (`/video-upload`), in order.
    pub reel_uploads: Vec<MetaReelUploadRecord>,
    /// Reel publishes refused because the Page had published its reels of the window.
    pub reel_quota_refusals: u64,
    /// Recent requests to Meta routes (the `/_sandbox` routes are not recorded).
    pub requests: Vec<crate::RequestRecord>,
    /// Every time a usage owner spent its budget, and every call refused for it, oldest first.
    pub usage_events: Vec<MetaUsageEvent>,
    /// Every permission a user took back from the app, in order.
    pub revoked_permissions: Vec<MetaRevokedPermission>,
}

/// A permission a user took back (`DELETE /{user-id}/permissions/{permission}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRevokedPermission {
    /// The user's id; their username is in `users`.
    pub user_id: String,
    pub permission: String,
}

/// A usage owner's budget ran out (`refused: false`, the call that spent the last of it) or a
/// call was refused with Meta's throttling error (`refused: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaUsageEvent {
    /// `app`, a Page id or an Instagram account id.
    pub owner: String,
    /// RFC 3339 time of the call.
    pub at: String,
    pub refused: bool,
    /// The `estimated_time_to_regain_access` the answer carried.
    pub regain_minutes: u64,
}

/// One `POST /ig-api-upload/{v}/{container-id}` (rupload) and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaIgUploadRecord {
    pub container_id: String,
    /// The `offset` header, if it parsed.
    pub offset: Option<u64>,
    /// The `file_size` header, if it parsed.
    pub file_size: Option<u64>,
    /// Body bytes that arrived.
    pub bytes_received: u64,
    /// The answer's status; `None` while the body is still coming (or the client went away).
    pub status: Option<u16>,
    /// The bytes were taken.
    pub accepted: bool,
}

/// One `POST /video-upload/{v}/{video-id}` (rupload of a Page reel) and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaReelUploadRecord {
    pub video_id: String,
    /// The `offset` header, if it parsed.
    pub offset: Option<u64>,
    /// The `file_size` header, if it parsed.
    pub file_size: Option<u64>,
    /// Body bytes that arrived.
    pub bytes_received: u64,
    /// The answer's status; `None` while the body is still coming (or the client went away).
    pub status: Option<u16>,
    /// The bytes were taken.
    pub accepted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaUserSnapshot {
    pub id: String,
    pub username: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaPageSnapshot {
    pub id: String,
    pub name: String,
    pub instagram_business_account: Option<String>,
    /// Ids of the users with a role on the Page.
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaIgAccountSnapshot {
    pub id: String,
    pub username: String,
    pub page_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaPagePostSnapshot {
    /// `{page-id}_{post-id}`.
    pub id: String,
    pub page_id: String,
    pub message: Option<String>,
    pub link: Option<String>,
    /// URLs of the attached photos, in order.
    pub photo_urls: Vec<String>,
    pub video_id: Option<String>,
    pub permalink_url: String,
    /// False while the post's video is processing (or failed).
    pub visible: bool,
    pub created_time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaPhotoSnapshot {
    pub id: String,
    pub page_id: String,
    pub url: String,
    pub published: bool,
    pub post_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaVideoSnapshot {
    pub id: String,
    pub page_id: String,
    pub file_size: u64,
    pub bytes_received: u64,
    pub file_url: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// `uploading`, `processing`, `ready` or `error`.
    pub status: String,
    pub post_id: Option<String>,
    /// Published as a reel (`/video_reels`).
    pub reel: bool,
    /// FNV-1a of a reel's uploaded bytes, once all are in.
    pub upload_checksum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaContainerSnapshot {
    pub id: String,
    pub ig_id: String,
    pub media_type: String,
    pub image_url: Option<String>,
    pub video_url: Option<String>,
    pub caption: Option<String>,
    pub children: Vec<String>,
    pub is_carousel_item: bool,
    /// Reels: also shown in the feed.
    pub share_to_feed: bool,
    pub status_code: String,
    /// `resumable` for a container whose video is uploaded through rupload.
    pub upload_type: Option<String>,
    /// The announced size of an uploaded video.
    pub file_size: Option<u64>,
    /// Bytes of it received so far.
    pub bytes_received: u64,
    /// Checksum of the uploaded video once complete ([`crate::tiktok::checksum`]'s FNV-1a).
    pub upload_checksum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaIgMediaSnapshot {
    pub id: String,
    pub ig_id: String,
    pub container_id: String,
    /// `IMAGE`, `VIDEO` or `CAROUSEL_ALBUM`.
    pub media_type: String,
    /// `FEED`, `REELS` or `STORY`.
    pub media_product_type: String,
    pub caption: String,
    pub media_urls: Vec<String>,
    pub permalink: String,
    pub timestamp: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaIssuedToken {
    pub access_token: String,
    pub user_id: String,
    pub page_id: Option<String>,
    /// `short_lived_user`, `long_lived_user` or `page`.
    pub kind: String,
}

/// The `/meta` scope with every route and the request-recording middleware.
pub(crate) fn scope(state: web::Data<MetaState>) -> impl HttpServiceFactory {
    crate::twin::scope("/meta", state)
        .route("/_sandbox/users", web::post().to(control::define_user))
        .route(
            "/_sandbox/deauthorize_callback",
            web::put().to(deauthorize::set_callback),
        )
        .route(
            "/_sandbox/deauthorize",
            web::post().to(deauthorize::remove_app),
        )
        .route(
            "/ig-api-upload/{version}/{container}",
            web::post().to(rupload::upload),
        )
        .route(
            "/video-upload/{version}/{video}",
            web::post().to(rupload::video_upload),
        )
        .service(
            web::scope("/{version:v[0-9]+\\.[0-9]+}")
                .route("/dialog/oauth", web::get().to(oauth::dialog))
                .route("/oauth/access_token", web::get().to(oauth::access_token))
                .route("/oauth/access_token", web::post().to(oauth::access_token))
                .route("/{id}/{edge}", web::get().to(api::get_edge))
                .route("/{id}/{edge}", web::post().to(api::post_edge))
                .route("/{id}", web::get().to(api::get_object))
                .route(
                    "/{id}/permissions/{permission}",
                    web::delete().to(api::revoke_permission),
                )
                .default_service(web::to(unsupported)),
        )
        .default_service(web::to(unsupported))
}

async fn unsupported() -> HttpResponse {
    graph_error(
        StatusCode::BAD_REQUEST,
        "Unsupported request - method type or path not supported",
        "GraphMethodException",
        100,
        None,
    )
}

/// Error 190: the token is invalid, expired or revoked. Graph answers these with HTTP 400.
pub(crate) fn invalid_token(subcode: Option<i64>) -> HttpResponse {
    let message = match subcode {
        Some(463) => "Error validating access token: Session has expired.",
        Some(458) => "Error validating access token: The user has not authorized application.",
        Some(460) => "Error validating access token: The session has been invalidated because the user changed their password.",
        Some(492) => "Error validating access token: The user is not an admin of the page.",
        None => "Invalid OAuth access token - Cannot parse access token",
        _ => "Error validating access token: The session is invalid.",
    };
    graph_error(
        StatusCode::BAD_REQUEST,
        message,
        "OAuthException",
        190,
        subcode,
    )
}

/// A missing permission: Pages answer `(#200)`, Instagram `(#10)`; HTTP 403.
pub(crate) fn missing_permission(code: i64, message: &str) -> HttpResponse {
    graph_error(
        StatusCode::FORBIDDEN,
        &format!("({code}) {message}"),
        "OAuthException",
        code,
        None,
    )
}

/// Whose usage a call counts against, and how its rate limit answers.
#[derive(Debug, Clone)]
pub(crate) enum Usage {
    /// A user-token call: the app's platform rate limit (`X-App-Usage`, code 4).
    App,
    /// A Page-token call: the Page's business-use-case limit (code 80001).
    Page(String),
    /// An Instagram call: the account's business-use-case limit (code 80002).
    Instagram(String),
}

impl Usage {
    /// The usage owner for a call by `caller` that does not name an Instagram account.
    pub fn of(caller: &Caller) -> Self {
        match &caller.page_id {
            Some(page) => Self::Page(page.clone()),
            None => Self::App,
        }
    }

    fn key(&self) -> &str {
        match self {
            Self::App => "app",
            Self::Page(id) | Self::Instagram(id) => id,
        }
    }

    fn throttle(&self) -> Throttle<'_> {
        match self {
            Self::App => Throttle {
                status: StatusCode::BAD_REQUEST,
                code: 4,
                message: "(#4) Application request limit reached",
                buc: None,
            },
            Self::Page(id) => Throttle {
                status: StatusCode::BAD_REQUEST,
                code: 80001,
                message: "(#80001) There have been too many calls to this Page account. Wait a bit and try again.",
                buc: Some((id, "pages")),
            },
            Self::Instagram(id) => Throttle {
                status: StatusCode::BAD_REQUEST,
                code: 80002,
                message: "(#80002) There have been too many calls to this Instagram account. Wait a bit and try again.",
                buc: Some((id, "instagram")),
            },
        }
    }

    /// The usage header of this owner's budget: `X-App-Usage` for the app's platform limit
    /// (user tokens), `X-Business-Use-Case-Usage` with the wait in minutes for a Page's or an
    /// Instagram account's (platform-facts §3.3).
    fn set_headers(&self, resp: &mut HttpResponse, count: state::CallCount) {
        match self.throttle().buc {
            None => graph::set_app_usage(resp, count.percent),
            Some((owner, kind)) => {
                graph::set_buc_usage(resp, owner, kind, count.percent, count.regain_minutes)
            }
        }
    }

    /// `(code, subcode)` of a content rejection: Instagram's spam restriction (facts §4.4),
    /// Facebook's "deemed abusive" (368).
    fn rejection(&self) -> (i64, Option<i64>) {
        match self {
            Self::Instagram(_) => (4, Some(2_207_051)),
            _ => (368, None),
        }
    }
}

/// What an authorized API request carries into its handler.
pub(crate) struct Ctx {
    pub caller: Caller,
    /// A fault the handler itself applies (processing, rejected media, timeout after success).
    pub fault: Option<Fault>,
    usage: Usage,
    count: state::CallCount,
}

/// Authenticates, counts the call and applies request-level faults. `Err` is the response to
/// send as is.
pub(crate) async fn guard(
    state: &MetaState,
    req: &HttpRequest,
    params: &[(String, String)],
    endpoint: MetaEndpoint,
    usage: impl FnOnce(&Caller) -> Usage,
) -> Result<Ctx, HttpResponse> {
    let caller =
        match graph::request_token(req, params) {
            None => return Err(graph_error(
                StatusCode::BAD_REQUEST,
                "An active access token must be used to query information about the current user.",
                "OAuthException",
                2500,
                None,
            )),
            Some(token) => state.authenticate(&token).map_err(invalid_token)?,
        };
    let usage = usage(&caller);
    let count = state.count_call(usage.key());
    if !count.allowed {
        let mut resp = usage.throttle().error();
        usage.set_headers(&mut resp, count);
        return Err(resp);
    }
    let fault = state.take_fault(endpoint);
    if let Some(fault) = &fault {
        tracing::info!(?endpoint, ?fault, "meta sandbox applying fault");
        let response =
            graph::blocking_fault_response(fault, usage.throttle(), usage.rejection()).await;
        if let Some(resp) = response {
            return Err(resp);
        }
        match fault {
            Fault::ExpireToken => {
                state.invalidate_token(&caller.token, 463);
                return Err(invalid_token(Some(463)));
            }
            Fault::RevokeGrant => {
                state.revoke_user(&caller.user_id, 458);
                return Err(invalid_token(Some(458)));
            }
            _ => {}
        }
    }
    Ok(Ctx {
        caller,
        fault,
        usage,
        count,
    })
}

/// Adds the usage headers and applies `timeout_after_success`.
pub(crate) async fn finish(ctx: Ctx, mut resp: HttpResponse) -> HttpResponse {
    ctx.usage.set_headers(&mut resp, ctx.count);
    graph::delay_after_success(ctx.fault.as_ref()).await;
    resp
}

/// A Page token must act as `page_id` and a user token is refused for publishing as a Page.
pub(crate) fn require_page_token(caller: &Caller, page_id: &str) -> Result<(), HttpResponse> {
    match (caller.kind, caller.page_id.as_deref()) {
        (TokenKind::Page, Some(id)) if id == page_id => Ok(()),
        (TokenKind::Page, _) => Err(missing_permission(
            200,
            "The Page access token belongs to another Page.",
        )),
        _ => Err(missing_permission(
            200,
            "Publishing as a Page requires a Page access token from /me/accounts.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_user_layout() {
        let spec = MetaUserSpec::default_for("bob");
        assert_eq!(spec.pages.len(), 2);
        assert_eq!(
            spec.pages[0].instagram_business_account.as_deref(),
            Some("bob_ig")
        );
        assert_eq!(spec.pages[1].instagram_business_account, None);
    }
}
