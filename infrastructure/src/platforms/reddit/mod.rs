//! Reddit adapter (platform-facts §9): OAuth through `oauth.rs` with HTTP Basic client auth,
//! `duration=permanent`, state and no PKCE; permanent refresh tokens that do not rotate (the
//! old one is kept); revocation; a unique User-Agent on every request. Publishing submits self,
//! link, image, gallery and video posts to `options.reddit.subreddit` with `api_type=json` and
//! maps every error code of the envelope (see `errors`). Media go through a media lease and an
//! S3-style upload (see `media`). A gallery (2-20 images) goes to
//! `POST /api/submit_gallery_post.json` as JSON, naming each image by its asset id, and Reddit
//! answers with the post. Reddit answers an image or video submission (`kind=image`,
//! `kind=video`/`videogif` with `video_poster_url`) with a websocket rather than the post, so
//! the adapter finds the post in the account's listing, by the video's asset id for a video
//! and by the gallery's asset ids for a gallery.
//!
//! Rate limits: Reddit budgets requests per OAuth client id ("100 queries per minute per OAuth
//! client id", platform-facts §9.3) and reports `X-Ratelimit-Used`, `-Remaining` and `-Reset` on
//! every answer. All API calls of every connected account share one application-wide gate key,
//! `app:{client_id}:reddit_api`, fed from those headers; a 429 closes it until the reset. The
//! per-account posting throttle (`RATELIMIT` inside a 200) closes the account's `reddit_submit`
//! until Reddit's "try again in …".
mod config;
mod errors;
mod media;
mod settings;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaKind, Platform, PlatformFailure};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

pub use config::{default_user_agent, RedditConfig, DEFAULT_SCOPES};
pub use settings::{RedditSettings, ENTRY};

use self::errors::{classify_http, classify_submit, submit_transport_error, CallContext};
use self::media::UploadedMedia;
use super::http::{self, PlatformApi, Reply, SendError};
use super::{
    AuthorizationStart, CreatedPost, MediaUpload, PlatformAdapter, PostDraft, PostError,
    RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::media_source::MediaSource;
use crate::oauth::{ClientAuth, OAuthClient, OAuthEndpoints, SetupError};
use crate::secret::Secret;
use crate::text::normalize_whitespace as normalize;

/// Posts created this long before `since` still count: clocks differ between Herald and Reddit.
const CLOCK_SKEW_SECS: f64 = 5.0;
/// Reddit's title limit (`VTitle`).
const MAX_TITLE: usize = 300;
/// Gate keys: Reddit's request budget (per client id: see `RedditAdapter::api_key`), and its
/// per-account posting throttle.
const API: &str = "reddit_api";
const SUBMIT: &str = "reddit_submit";

/// The Reddit adapter. Cheap to share: hold it in an `Arc`.
pub struct RedditAdapter {
    config: RedditConfig,
    oauth: OAuthClient,
    /// API calls with the User-Agent; redirects are never followed.
    api: reqwest::Client,
    /// Uploads to the media storage.
    uploads: reqwest::Client,
    /// Downloads of media from user-supplied URLs, under the deployment's media URL policy.
    media_source: MediaSource,
}

impl std::fmt::Debug for RedditAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedditAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Me {
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    json: EnvelopeBody,
}

#[derive(Debug, Default, Deserialize)]
struct EnvelopeBody {
    #[serde(default)]
    errors: Vec<Vec<Value>>,
    data: Option<SubmitData>,
    ratelimit: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct SubmitData {
    id: Option<String>,
    name: Option<String>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Flair {
    id: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Listing {
    data: ListingData,
}

#[derive(Debug, Deserialize)]
struct ListingData {
    #[serde(default)]
    children: Vec<Child>,
}

#[derive(Debug, Deserialize)]
struct Child {
    data: ListedPost,
}

#[derive(Debug, Deserialize)]
struct ListedPost {
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    selftext: String,
    url: Option<String>,
    #[serde(default)]
    permalink: String,
    #[serde(default)]
    subreddit: String,
    created_utc: Option<f64>,
    #[serde(default)]
    is_self: bool,
    #[serde(default)]
    is_video: bool,
    #[serde(default)]
    is_gallery: bool,
    /// A gallery's items in order (`null` once removed).
    gallery_data: Option<GalleryData>,
}

#[derive(Debug, Deserialize)]
struct GalleryData {
    #[serde(default)]
    items: Vec<GalleryItem>,
}

#[derive(Debug, Deserialize)]
struct GalleryItem {
    media_id: String,
}

/// The kind of a Reddit post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Link,
    Image,
    Gallery,
    Video,
    VideoGif,
}

impl Kind {
    /// The `kind` form value (`gallery` has its own endpoint and sends none).
    fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "self",
            Kind::Link => "link",
            Kind::Image => "image",
            Kind::Gallery => "gallery",
            Kind::Video => "video",
            Kind::VideoGif => "videogif",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Video | Kind::VideoGif => "video",
            Kind::Gallery => "gallery",
            _ => "image",
        }
    }
}

/// What `create_post` submits.
#[derive(Debug, Clone, PartialEq)]
struct Submission {
    subreddit: String,
    kind: Kind,
    title: String,
    text: Option<String>,
    url: Option<String>,
    /// A gallery's images, or a video, by asset id (in order).
    assets: Vec<String>,
    /// A video's uploaded poster image.
    poster_url: Option<String>,
}

impl Submission {
    fn of(draft: &PostDraft) -> Result<Self, PlatformFailure> {
        let subreddit = draft
            .options
            .reddit
            .subreddit
            .as_deref()
            .map(|s| s.trim().trim_start_matches("r/").to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                PlatformFailure::new(
                    ErrorClass::Permanent,
                    "subreddit_required",
                    "Reddit posts go to a subreddit: set options.reddit.subreddit",
                )
            })?;
        let title = draft
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| derive_title(&draft.text));
        let link = draft.link.clone().filter(|l| !l.trim().is_empty());
        let media: Vec<UploadedMedia> = draft
            .media_ids
            .iter()
            .map(|m| UploadedMedia::decode(m))
            .collect();
        let is_video = draft
            .media
            .first()
            .is_some_and(|m| m.kind == MediaKind::Video)
            || media.first().is_some_and(|m| m.poster_url.is_some());
        let mut submission = Self {
            subreddit,
            kind: Kind::Text,
            title,
            text: None,
            url: None,
            assets: vec![],
            poster_url: None,
        };
        match (media.as_slice(), link) {
            ([video], _) if is_video => {
                submission.kind = if draft.options.reddit.videogif {
                    Kind::VideoGif
                } else {
                    Kind::Video
                };
                submission.url = Some(video.url.clone());
                submission.assets = video.asset_id.iter().cloned().collect();
                submission.poster_url = Some(video.poster_url.clone().ok_or_else(|| {
                    PlatformFailure::new(
                        ErrorClass::Permanent,
                        "thumbnail_required",
                        "a Reddit video post needs a poster image: set options.reddit.thumbnail_url to a JPEG, PNG or GIF",
                    )
                })?);
            }
            ([image], _) => {
                submission.kind = Kind::Image;
                submission.url = Some(image.url.clone());
            }
            ([], Some(link)) => {
                submission.kind = Kind::Link;
                submission.url = Some(link);
            }
            ([], None) => submission.text = Some(draft.text.clone()),
            (items, _) => {
                submission.kind = Kind::Gallery;
                submission.assets = items
                    .iter()
                    .map(|item| item.asset_id.clone())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        PlatformFailure::new(
                            ErrorClass::Permanent,
                            "gallery_asset_missing",
                            "an image of this gallery was uploaded without the asset id a Reddit gallery names it by; retry the job to upload the images again",
                        )
                    })?;
            }
        }
        Ok(submission)
    }

    /// Whether a listed post is this submission.
    fn matches(&self, post: &ListedPost) -> bool {
        if !post.subreddit.eq_ignore_ascii_case(&self.subreddit)
            || normalize(&post.title) != normalize(&self.title)
        {
            return false;
        }
        match self.kind {
            Kind::Text => {
                post.is_self
                    && normalize(&post.selftext)
                        == normalize(self.text.as_deref().unwrap_or_default())
            }
            Kind::Link => !post.is_self && post.url.as_deref() == self.url.as_deref(),
            Kind::Image => !post.is_self && !post.is_gallery && !post.is_video,
            // The listing names a gallery's images by the asset ids they were uploaded as.
            Kind::Gallery => {
                post.is_gallery
                    && post.gallery_data.as_ref().is_none_or(|gallery| {
                        gallery.items.len() == self.assets.len()
                            && gallery
                                .items
                                .iter()
                                .zip(&self.assets)
                                .all(|(item, asset)| &item.media_id == asset)
                    })
            }
            // A video's post links to `v.redd.it/{asset id}`.
            Kind::Video | Kind::VideoGif => {
                post.is_video
                    && self.assets.first().is_none_or(|asset| {
                        post.url
                            .as_deref()
                            .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
                            == Some(asset.as_str())
                    })
            }
        }
    }
}

/// The text's first line, cut at a word boundary to Reddit's 300 characters.
fn derive_title(text: &str) -> String {
    let first = text.trim().lines().next().unwrap_or("").trim();
    if first.chars().count() <= MAX_TITLE {
        return first.to_owned();
    }
    let cut: String = first.chars().take(MAX_TITLE - 1).collect();
    let ends_a_word = first
        .chars()
        .nth(MAX_TITLE - 1)
        .is_some_and(char::is_whitespace);
    let at_word = match cut.rfind(char::is_whitespace) {
        Some(i) if i > 0 && !ends_a_word => cut[..i].trim_end().to_owned(),
        _ => cut,
    };
    format!("{at_word}…")
}

impl RedditAdapter {
    /// An adapter for the Reddit API (or sandbox) described by `config`.
    pub fn new(config: RedditConfig) -> Result<Self, SetupError> {
        let oauth = OAuthClient::new(
            OAuthEndpoints {
                provider: "Reddit".to_owned(),
                authorize_url: config.oauth_url("api/v1/authorize"),
                token_url: config.oauth_url("api/v1/access_token"),
                revoke_url: Some(config.oauth_url("api/v1/revoke_token")),
                client_id: config.client_id.clone(),
                client_secret: Some(config.client_secret.clone()),
                scopes: config.scopes.clone(),
                // Reddit has no PKCE (platform-facts §9.1).
                use_pkce: false,
                client_auth: ClientAuth::Basic,
            },
            config.request_timeout,
        )?
        .with_user_agent(&config.user_agent, config.request_timeout)?;
        let connect_timeout = config.request_timeout.min(Duration::from_secs(10));
        let api = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(&config.user_agent)
            .timeout(config.request_timeout)
            .connect_timeout(connect_timeout)
            .build()?;
        let uploads = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(&config.user_agent)
            .timeout(config.request_timeout * 10)
            .connect_timeout(connect_timeout)
            .build()?;
        let media_source = MediaSource::new(config.media_policy.clone(), config.request_timeout)?;
        Ok(Self {
            config,
            oauth,
            api,
            uploads,
            media_source,
        })
    }

    /// The gate key of Reddit's request budget, which every account of this client id shares.
    pub(crate) fn api_key(&self) -> String {
        super::app_key(&self.config.client_id, API)
    }

    /// The configuration the adapter was built with.
    pub fn config(&self) -> &RedditConfig {
        &self.config
    }

    async fn call(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
    ) -> Result<Reply, PlatformFailure> {
        http::call(self, endpoint, limits, request, ctx).await
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
    ) -> Result<T, PlatformFailure> {
        self.call(endpoint, limits, request, ctx)
            .await?
            .json(self, ctx)
    }

    async fn me(&self, token: &str, limits: &dyn RateLimitGate) -> Result<Me, PlatformFailure> {
        let request = self
            .api
            .get(self.config.api_url("api/v1/me"))
            .bearer_auth(token);
        self.call_json(&self.api_key(), limits, request, CallContext::READ_ACCOUNT)
            .await
    }

    /// `"id" (text), …` for a subreddit's flairs, or `None` if they cannot be read.
    async fn flair_list(
        &self,
        token: &str,
        subreddit: &str,
        limits: &dyn RateLimitGate,
    ) -> Option<String> {
        let request = self
            .api
            .get(
                self.config
                    .api_url(&format!("r/{subreddit}/api/link_flair_v2")),
            )
            .bearer_auth(token);
        let flairs: Vec<Flair> = self
            .call_json(&self.api_key(), limits, request, CallContext::READ_FLAIRS)
            .await
            .ok()?;
        Some(
            flairs
                .iter()
                .map(|f| format!("\"{}\" ({})", f.id, f.text.as_deref().unwrap_or("no text")))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// The user's newest posts.
    async fn submitted(
        &self,
        token: &str,
        username: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<Vec<ListedPost>, PlatformFailure> {
        let mut url = self.config.api_url(&format!("user/{username}/submitted"));
        url.query_pairs_mut()
            .append_pair("sort", "new")
            .append_pair("limit", "100")
            .append_pair("raw_json", "1");
        let request = self.api.get(url).bearer_auth(token);
        let listing: Listing = self
            .call_json(&self.api_key(), limits, request, CallContext::READ_POSTS)
            .await?;
        Ok(listing.data.children.into_iter().map(|c| c.data).collect())
    }

    fn created(&self, post: ListedPost) -> CreatedPost {
        CreatedPost {
            url: self.config.permalink_url(&post.permalink),
            post_id: format!("t3_{}", post.id),
        }
    }

    /// The request of a submission: a gallery as JSON to `/api/submit_gallery_post.json`,
    /// anything else as a form to `/api/submit`, both with `api_type=json`.
    fn submission_request(
        &self,
        token: &str,
        submission: &Submission,
        draft: &PostDraft,
    ) -> reqwest::RequestBuilder {
        let options = &draft.options.reddit;
        if submission.kind == Kind::Gallery {
            let items: Vec<Value> = submission
                .assets
                .iter()
                .map(|id| serde_json::json!({"media_id": id, "caption": "", "outbound_url": ""}))
                .collect();
            let mut body = serde_json::json!({
                "api_type": "json",
                "sr": submission.subreddit,
                "title": submission.title,
                "items": items,
                "sendreplies": true,
                "show_error_list": true,
                "nsfw": options.nsfw,
                "spoiler": options.spoiler,
            });
            if let Some(id) = &options.flair_id {
                body["flair_id"] = Value::from(id.as_str());
            }
            if let Some(text) = &options.flair_text {
                body["flair_text"] = Value::from(text.as_str());
            }
            return self
                .api
                .post(self.config.api_url("api/submit_gallery_post.json"))
                .bearer_auth(token)
                .json(&body);
        }
        let mut form: Vec<(&str, &str)> = vec![
            ("api_type", "json"),
            ("sr", &submission.subreddit),
            ("kind", submission.kind.as_str()),
            ("title", &submission.title),
            ("sendreplies", "true"),
            ("resubmit", "false"),
            ("nsfw", if options.nsfw { "true" } else { "false" }),
            ("spoiler", if options.spoiler { "true" } else { "false" }),
        ];
        if let Some(text) = &submission.text {
            form.push(("text", text));
        }
        if let Some(url) = &submission.url {
            form.push(("url", url));
        }
        if let Some(poster) = &submission.poster_url {
            form.push(("video_poster_url", poster));
        }
        if let Some(id) = &options.flair_id {
            form.push(("flair_id", id));
        }
        if let Some(text) = &options.flair_text {
            form.push(("flair_text", text));
        }
        self.api
            .post(self.config.api_url("api/submit"))
            .bearer_auth(token)
            .form(&form)
    }

    /// The irreversible call: `POST /api/submit` (or `/api/submit_gallery_post.json`) with
    /// `api_type=json`.
    async fn submit(
        &self,
        token: &str,
        submission: &Submission,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PostError> {
        if let Err(until) = limits.acquire(SUBMIT).await {
            return Err(PostError::Failed(http::local_limit(
                "Reddit", SUBMIT, until,
            )));
        }
        let request = self.submission_request(token, submission, draft);
        let response = match http::send(self, &self.api_key(), limits, request).await {
            Ok(response) => response,
            Err(SendError::Limited(failure)) => return Err(PostError::Failed(failure)),
            Err(SendError::Transport(e)) => return Err(submit_transport_error(&e)),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(_) if status.is_success() => {
                return Err(PostError::OutcomeUnknown(format!(
                    "Reddit answered the submission with HTTP {status} but the answer was cut off; the post may exist"
                )))
            }
            Err(_) => Default::default(),
        };
        if !status.is_success() {
            return Err(PostError::Failed(classify_http(
                status.as_u16(),
                &headers,
                &body,
                CallContext::SUBMIT,
                Utc::now(),
            )));
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
            return Err(PostError::OutcomeUnknown(format!(
                "Reddit answered the submission with HTTP {status} and a body Herald cannot read; the post may exist"
            )));
        };
        if let Some(error) = envelope.json.errors.first() {
            let part = |i: usize| error.get(i).and_then(Value::as_str).unwrap_or_default();
            let code = part(0);
            let flairs = if code.starts_with("SUBMIT_VALIDATION_FLAIR") || code.contains("FLAIR") {
                self.flair_list(token, &submission.subreddit, limits).await
            } else {
                None
            };
            let failure = classify_submit(
                code,
                part(1),
                part(2),
                envelope.json.ratelimit,
                &submission.subreddit,
                flairs.as_deref(),
                Utc::now(),
            );
            if code == "RATELIMIT" {
                limits.observe(SUBMIT, Some(0), failure.not_before).await;
            }
            return Err(PostError::Failed(failure));
        }
        let data = envelope.json.data.unwrap_or_default();
        // `/api/submit` answers the base-36 id; the gallery endpoint the fullname (`t3_...`).
        let id = data
            .id
            .or(data.name)
            .map(|id| id.trim_start_matches("t3_").to_owned())
            .filter(|id| !id.is_empty());
        // An image or video submission answers with a websocket, not the post: it is looked
        // up instead.
        Ok(id.map(|id| CreatedPost {
            url: data
                .url
                .unwrap_or_else(|| self.config.permalink_url(&format!("/comments/{id}/"))),
            post_id: format!("t3_{id}"),
        }))
    }

    /// Looks for `submission` among the user's posts created since `since`.
    async fn look_up(
        &self,
        token: &str,
        username: &str,
        submission: &Submission,
        since: DateTime<Utc>,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        let earliest = since.timestamp_millis() as f64 / 1000.0 - CLOCK_SKEW_SECS;
        let found = self
            .submitted(token, username, limits)
            .await?
            .into_iter()
            .filter(|p| p.created_utc.unwrap_or(f64::MAX) >= earliest)
            .find(|p| submission.matches(p));
        Ok(found.map(|p| self.created(p)))
    }
}

impl PlatformApi for RedditAdapter {
    type Context = CallContext;

    fn name(&self) -> &'static str {
        "Reddit"
    }

    fn action(&self, ctx: CallContext) -> &'static str {
        ctx.action
    }

    /// `X-Ratelimit-Remaining` and `X-Ratelimit-Reset`, on every answer; a 429 without them
    /// closes the budget for a minute.
    /// `X-Ratelimit-Used` + `X-Ratelimit-Remaining`: the period's size.
    fn window_limit(&self, headers: &reqwest::header::HeaderMap) -> Option<u64> {
        errors::ratelimit_size(headers)
    }

    fn rate_limit(
        &self,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        now: DateTime<Utc>,
    ) -> (Option<u64>, Option<DateTime<Utc>>) {
        let (remaining, reset) = errors::ratelimit_headers(headers, now);
        if status == StatusCode::TOO_MANY_REQUESTS {
            return (
                Some(0),
                reset
                    .filter(|at| *at > now)
                    .or(Some(now + TimeDelta::seconds(60))),
            );
        }
        (remaining, reset)
    }

    fn classify(
        &self,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        ctx: CallContext,
        now: DateTime<Utc>,
    ) -> PlatformFailure {
        classify_http(status.as_u16(), headers, body, ctx, now)
    }

    fn transport_failure(&self, error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
        errors::transport_failure(error, ctx)
    }

    fn is_error_body(&self, body: &Value) -> bool {
        body.get("error").is_some() && body.get("message").is_some()
    }
}

#[async_trait::async_trait]
impl PlatformAdapter for RedditAdapter {
    fn platform(&self) -> Platform {
        Platform::Reddit
    }

    /// Reddit's consent URL with `duration=permanent`, so the grant has a refresh token.
    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        let mut start = self.oauth.start(redirect_uri);
        start
            .url
            .query_pairs_mut()
            .append_pair("duration", "permanent");
        start
    }

    #[tracing::instrument(skip_all, fields(platform = "reddit"))]
    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.oauth
            .exchange_code(code, pkce_verifier, redirect_uri)
            .await
    }

    /// Reddit's refresh tokens are permanent and do not rotate: the old one is kept.
    #[tracing::instrument(skip_all, fields(platform = "reddit"))]
    async fn refresh(
        &self,
        _account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.oauth.refresh(refresh_token).await
    }

    /// Revoking the refresh token ends the whole grant.
    async fn revoke(
        &self,
        _account: &AccountProfile,
        grant: &TokenGrant,
    ) -> Result<(), PlatformFailure> {
        self.oauth.revoke_grant(grant).await
    }

    #[tracing::instrument(skip_all, fields(platform = "reddit"))]
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure> {
        let me = self.me(access_token.expose(), &Unlimited).await?;
        Ok(AccountProfile {
            account_id: format!("t2_{}", me.id),
            display_name: format!("u/{}", me.name),
            username: me.name,
        })
    }

    #[tracing::instrument(skip_all, fields(platform = "reddit"))]
    async fn upload_media(
        &self,
        access_token: &Secret,
        upload: &MediaUpload<'_>,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        media::upload(self, access_token.expose(), upload, limits, progress).await
    }

    #[tracing::instrument(
        skip_all,
        fields(platform = "reddit", subreddit = tracing::field::Empty, post_id = tracing::field::Empty)
    )]
    async fn create_post(
        &self,
        access_token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        let submission = Submission::of(draft)?;
        tracing::Span::current().record("subreddit", submission.subreddit.as_str());
        let token = access_token.expose();
        let sent_at = Utc::now();
        if let Some(post) = self.submit(token, &submission, draft, limits).await? {
            tracing::Span::current().record("post_id", post.post_id.as_str());
            return Ok(post);
        }
        // The image or video post exists once Reddit has processed it; until it is listed, its
        // outcome is unknown rather than failed (a retry could post it twice).
        let noun = submission.kind.noun();
        let max_wait = match submission.kind {
            Kind::Video | Kind::VideoGif => self.config.video_poll_max_wait,
            _ => self.config.image_poll_max_wait,
        };
        let deadline = tokio::time::Instant::now() + max_wait;
        let username = match self.me(token, limits).await {
            Ok(me) => me.name,
            Err(failure) => {
                return Err(PostError::OutcomeUnknown(format!(
                    "Reddit accepted the {noun} post but Herald could not read the account to find it ({}); it checks again before sending anything",
                    failure.message
                )))
            }
        };
        loop {
            match self
                .look_up(token, &username, &submission, sent_at, limits)
                .await
            {
                Ok(Some(post)) => {
                    tracing::Span::current().record("post_id", post.post_id.as_str());
                    return Ok(post);
                }
                Ok(None) => {}
                Err(failure) => tracing::info!(%failure, "could not list the account's posts yet"),
            }
            if tokio::time::Instant::now() + self.config.image_poll_interval > deadline {
                return Err(PostError::OutcomeUnknown(format!(
                    "Reddit accepted the {noun} post but had not listed it after {} s; Herald checks again before sending anything",
                    max_wait.as_secs()
                )));
            }
            tokio::time::sleep(self.config.image_poll_interval).await;
        }
    }

    /// Lists the account's posts (`/user/{name}/submitted`) and matches subreddit, title and
    /// body or link.
    #[tracing::instrument(skip_all, fields(platform = "reddit", %since, found = tracing::field::Empty))]
    async fn find_post(
        &self,
        access_token: &Secret,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        let submission = Submission::of(draft)?;
        let token = access_token.expose();
        let username = self.me(token, limits).await?.name;
        let found = self
            .look_up(token, &username, &submission, since, limits)
            .await?;
        tracing::Span::current().record("found", found.is_some());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_domain::PublishOptions;

    fn draft(text: &str) -> PostDraft {
        let mut options = PublishOptions::default();
        options.reddit.subreddit = Some("r/rust".into());
        PostDraft {
            text: text.into(),
            options,
            ..PostDraft::default()
        }
    }

    #[test]
    fn the_kind_follows_the_content_and_the_title_is_derived() {
        let s = Submission::of(&draft("First line\nmore")).unwrap();
        assert_eq!((s.subreddit.as_str(), s.kind), ("rust", Kind::Text));
        assert_eq!(s.title, "First line");
        let mut link = draft("see this");
        link.link = Some("https://e.com".into());
        assert_eq!(Submission::of(&link).unwrap().kind, Kind::Link);
        let mut image = draft("pic");
        image.media_ids = vec!["http://s3/k".into()];
        assert_eq!(
            Submission::of(&image).unwrap().url.as_deref(),
            Some("http://s3/k")
        );
        let long = "word ".repeat(100);
        let title = derive_title(&long);
        assert!(title.chars().count() <= 300 && title.ends_with('…'));
        let none = PostDraft::default();
        assert_eq!(
            Submission::of(&none).unwrap_err().code,
            "subreddit_required"
        );
    }

    fn uploaded(asset: &str, poster: Option<&str>) -> String {
        UploadedMedia {
            asset_id: Some(asset.into()),
            url: format!("https://s3.test/{asset}"),
            poster_url: poster.map(str::to_owned),
        }
        .encode()
    }

    /// A listed post as Reddit shows it (the shapes of PRAW's recorded gallery and video posts).
    fn listed(json: Value) -> ListedPost {
        let mut post = serde_json::json!({
            "id": "huw6vs", "title": "Pics", "subreddit": "rust", "is_self": false,
            "selftext": "", "permalink": "/r/rust/comments/huw6vs/pics/", "created_utc": 1.0,
        });
        post.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(post).unwrap()
    }

    #[test]
    fn several_images_make_a_gallery_matched_by_its_asset_ids() {
        let mut gallery = draft("Pics");
        gallery.media_ids = vec![uploaded("a1", None), uploaded("a2", None)];
        let s = Submission::of(&gallery).unwrap();
        assert_eq!(s.kind, Kind::Gallery);
        assert_eq!(s.assets, ["a1", "a2"]);
        let items = |ids: &[&str]| {
            let items: Vec<Value> = ids
                .iter()
                .map(|id| serde_json::json!({"media_id": id, "id": 1}))
                .collect();
            serde_json::json!({"is_gallery": true, "gallery_data": {"items": items},
                "url": "https://www.reddit.com/gallery/huw6vs"})
        };
        assert!(s.matches(&listed(items(&["a1", "a2"]))));
        assert!(!s.matches(&listed(items(&["a1", "b2"]))), "another gallery");
        assert!(!s.matches(&listed(items(&["a1"]))));
        assert!(s.matches(&listed(
            serde_json::json!({"is_gallery": true, "gallery_data": null})
        )));
        assert!(!s.matches(&listed(
            serde_json::json!({"url": "https://i.redd.it/a1.png"})
        )));
        // An image post is neither a gallery nor a video of the same title.
        let mut image = draft("Pics");
        image.media_ids = vec![uploaded("a1", None)];
        let one = Submission::of(&image).unwrap();
        assert_eq!(one.kind, Kind::Image);
        assert!(one.matches(&listed(
            serde_json::json!({"url": "https://i.redd.it/a1.png"})
        )));
        assert!(!one.matches(&listed(items(&["a1", "a2"]))));
        // Images an older Herald uploaded carry no asset id: a gallery of them cannot be named.
        let mut old = draft("Pics");
        old.media_ids = vec!["https://s3.test/x".into(), "https://s3.test/y".into()];
        assert_eq!(
            Submission::of(&old).unwrap_err().code,
            "gallery_asset_missing"
        );
    }

    #[test]
    fn a_video_posts_its_upload_with_the_poster_and_is_matched_by_its_asset_id() {
        let mut video = draft("Clip");
        video.media = vec![herald_domain::MediaItem {
            url: "https://cdn.test/clip.mp4".into(),
            kind: MediaKind::Video,
            mime_type: "video/mp4".into(),
            probe: None,
        }];
        video.media_ids = vec![uploaded("fmng6wpyyw261", Some("https://s3.test/p"))];
        let s = Submission::of(&video).unwrap();
        assert_eq!(s.kind, Kind::Video);
        assert_eq!(s.url.as_deref(), Some("https://s3.test/fmng6wpyyw261"));
        assert_eq!(s.poster_url.as_deref(), Some("https://s3.test/p"));
        let post = |url: &str, is_video: bool| {
            listed(serde_json::json!({"title": "Clip", "url": url, "is_video": is_video}))
        };
        assert!(s.matches(&post("https://v.redd.it/fmng6wpyyw261", true)));
        assert!(!s.matches(&post("https://v.redd.it/otherasset01", true)));
        assert!(!s.matches(&post("https://v.redd.it/fmng6wpyyw261", false)));
        video.options.reddit.videogif = true;
        assert_eq!(Submission::of(&video).unwrap().kind, Kind::VideoGif);
        video.media_ids = vec![uploaded("v1", None)];
        assert_eq!(
            Submission::of(&video).unwrap_err().code,
            "thumbnail_required"
        );
    }
}
