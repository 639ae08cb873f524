//! Reddit adapter (platform-facts §9): OAuth through `oauth.rs` with HTTP Basic client auth,
//! `duration=permanent`, state and no PKCE; permanent refresh tokens that do not rotate (the
//! old one is kept); revocation; a unique User-Agent on every request. Publishing submits self,
//! link and image posts to `options.reddit.subreddit` with `api_type=json` and maps every error
//! code of the envelope (see `errors`). Images go through a media lease and an S3-style upload
//! (see `media`); Reddit answers an image submission with a websocket rather than the post, so
//! the adapter finds the post in the account's listing.
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

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, Platform, PlatformFailure};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

pub use config::{default_user_agent, RedditConfig, DEFAULT_SCOPES};

use self::errors::{classify_http, classify_submit, submit_transport_error, CallContext};
use super::http::{self, PlatformApi, Reply, SendError};
use super::{
    AuthorizationStart, CreatedPost, MediaUpload, PlatformAdapter, PostDraft, PostError,
    RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::media_source::MediaSource;
use crate::oauth::{ClientAuth, OAuthClient, OAuthEndpoints, SetupError};
use crate::secret::Secret;

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
}

/// What `create_post` submits.
#[derive(Debug, Clone, PartialEq)]
struct Submission {
    subreddit: String,
    kind: &'static str,
    title: String,
    text: Option<String>,
    url: Option<String>,
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
        let (kind, text, url) = match (draft.media_ids.first(), link) {
            (Some(image), _) => ("image", None, Some(image.clone())),
            (None, Some(link)) => ("link", None, Some(link)),
            (None, None) => ("self", Some(draft.text.clone()), None),
        };
        Ok(Self {
            subreddit,
            kind,
            title,
            text,
            url,
        })
    }

    /// Whether a listed post is this submission.
    fn matches(&self, post: &ListedPost) -> bool {
        if !post.subreddit.eq_ignore_ascii_case(&self.subreddit)
            || normalize(&post.title) != normalize(&self.title)
        {
            return false;
        }
        match self.kind {
            "self" => {
                post.is_self
                    && normalize(&post.selftext)
                        == normalize(self.text.as_deref().unwrap_or_default())
            }
            "link" => !post.is_self && post.url.as_deref() == self.url.as_deref(),
            _ => !post.is_self,
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

/// Whitespace-insensitive text, for matching a post Reddit may have re-spaced.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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

    /// The irreversible call: `POST /api/submit` with `api_type=json`.
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
        let options = &draft.options.reddit;
        let mut form: Vec<(&str, &str)> = vec![
            ("api_type", "json"),
            ("sr", &submission.subreddit),
            ("kind", submission.kind),
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
        if let Some(id) = &options.flair_id {
            form.push(("flair_id", id));
        }
        if let Some(text) = &options.flair_text {
            form.push(("flair_text", text));
        }
        let request = self
            .api
            .post(self.config.api_url("api/submit"))
            .bearer_auth(token)
            .form(&form);
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
        let id = data.id.or_else(|| {
            data.name
                .as_deref()
                .map(|n| n.trim_start_matches("t3_").to_owned())
        });
        // An image submission answers with a websocket, not the post: it is looked up instead.
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
        // The image post exists once Reddit has processed it; until it is listed, its outcome
        // is unknown rather than failed (a retry could post it twice).
        let deadline = tokio::time::Instant::now() + self.config.image_poll_max_wait;
        let username = match self.me(token, limits).await {
            Ok(me) => me.name,
            Err(failure) => {
                return Err(PostError::OutcomeUnknown(format!(
                    "Reddit accepted the image post but Herald could not read the account to find it ({}); it checks again before sending anything",
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
                    "Reddit accepted the image post but had not listed it after {} s; Herald checks again before sending anything",
                    self.config.image_poll_max_wait.as_secs()
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
        assert_eq!((s.subreddit.as_str(), s.kind), ("rust", "self"));
        assert_eq!(s.title, "First line");
        let mut link = draft("see this");
        link.link = Some("https://e.com".into());
        assert_eq!(Submission::of(&link).unwrap().kind, "link");
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
}
