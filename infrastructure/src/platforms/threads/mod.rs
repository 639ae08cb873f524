//! Threads API adapter (platform-facts §3, §6): OAuth without PKCE (app secret in the body),
//! the short-lived token exchanged for a long-lived one at once, refresh with
//! `th_refresh_token`, and publishing as container → status poll → `threads_publish`.
//!
//! Threads fetches media itself from public URLs, so `upload_media` uploads nothing: it returns
//! a media reference `image:{url}` or `video:{url}`, which the publisher hands back in
//! `PostDraft::media_ids`. One reference makes an IMAGE or VIDEO post, several a carousel.
//!
//! The long-lived access token is also the grant's refresh token: Threads refreshes a
//! long-lived token by presenting it.
//!
//! Every API call asks the shared `RateLimitGate` first and reports Meta's usage headers after.
//! Rate-limit keys: `threads_me`, `threads_create`, `threads_status`, `threads_publish`,
//! `threads_media`, `threads_list`, `threads_limit`.
//!
//! The publishing quota (250 posts per 24 hours, facts §6.3) is read live from
//! `threads_publishing_limit` right before every `threads_publish`, and the publish is reserved
//! through the shared gate (key `threads_publishing_quota`, see [`meta::quota`]): Threads' count
//! plus Herald's publishes it may not show yet, taken atomically across every worker. When it is
//! used up the job waits for the next free slot. Replies (the later parts of a thread) have a
//! quota of their own that does not take from this one: "Threads profiles are limited to 1,000
//! API-published replies within a 24-hour moving period", read from the same endpoint's
//! `reply_quota_usage` and `reply_config` and reserved the same way (key `threads_reply_quota`)
//! (https://developers.facebook.com/documentation/threads/retrieve-and-manage-replies).
//!
//! A thread is a reply chain: each later part is created with `reply_to_id` set to the part
//! before it (https://developers.facebook.com/documentation/threads/retrieve-and-manage-replies/create-replies),
//! which needs `threads_manage_replies`; a reply whose outcome is unknown is looked for among
//! the replies of its parent, which needs `threads_read_replies`.
//!
//! [`meta::quota`]: crate::platforms::meta::quota
mod config;
mod errors;
mod settings;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaKind, Platform, PlatformFailure};
use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use config::{ThreadsConfig, DEFAULT_SCOPES};
pub use settings::{ThreadsSettings, ENTRY};

use self::errors::{classify, publish_transport_error, transport_failure, CallContext};
use super::http::{self, PlatformApi, SendError};
use super::meta::graph::{self, Listing};
use super::meta::quota::{self, PublishingQuota, QuotaConfig, QuotaEntry};
use super::{
    AuthorizationStart, CreatedPost, MediaUpload, PlatformAdapter, PostDraft, PostError,
    PublishReservation, RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::oauth::{redact, ClientAuth, OAuthClient, OAuthEndpoints, SetupError};
use crate::platforms::media_not_taken;
use crate::secret::Secret;
use crate::text::normalize_whitespace as normalize;

/// Posts created this long before `since` still count: clocks differ between Herald and Threads.
const CLOCK_SKEW_SECS: i64 = 5;
/// The permalink lookup after publishing is a nicety: it must not hold the attempt up.
const PERMALINK_TIMEOUT: Duration = Duration::from_secs(5);
/// The gate's key for the shared publishing quota.
const QUOTA_KEY: &str = "threads_publishing_quota";
/// The gate's key for the shared reply quota.
const REPLY_QUOTA_KEY: &str = "threads_reply_quota";
/// Pages of a post's replies (newest first) looked through for a reply Herald may have made.
const MAX_REPLY_PAGES: usize = 5;

/// The Threads adapter. Cheap to share: hold it in an `Arc`.
pub struct ThreadsAdapter {
    config: ThreadsConfig,
    /// Builds the consent URL (state, scopes); token calls are made by hand because Threads'
    /// token responses are not RFC 6749's (no `token_type`, a numeric `user_id`).
    oauth: OAuthClient,
    /// Redirects are never followed: a redirect would carry the token elsewhere.
    api: reqwest::Client,
}

impl std::fmt::Debug for ThreadsAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadsAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A media reference from `upload_media`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaRef<'a> {
    Image(&'a str),
    Video(&'a str),
}

impl<'a> MediaRef<'a> {
    fn parse(reference: &'a str) -> Option<Self> {
        if let Some(url) = reference.strip_prefix("image:") {
            return Some(Self::Image(url));
        }
        reference.strip_prefix("video:").map(Self::Video)
    }

    /// `media_type` and the URL parameter of its container.
    fn params(self) -> [(&'static str, &'a str); 2] {
        match self {
            Self::Image(url) => [("media_type", "IMAGE"), ("image_url", url)],
            Self::Video(url) => [("media_type", "VIDEO"), ("video_url", url)],
        }
    }
}

/// What a draft publishes: a post, or a reply (a later part of a thread), which has its own
/// quota, permissions and listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PostKind {
    Post,
    Reply,
}

impl PostKind {
    fn of(draft: &PostDraft) -> Self {
        match draft.reply_to {
            Some(_) => Self::Reply,
            None => Self::Post,
        }
    }

    /// The `threads_publishing_limit` fields that report this kind's quota.
    fn limit_fields(self) -> &'static str {
        match self {
            Self::Post => "quota_usage,config",
            Self::Reply => "reply_quota_usage,reply_config",
        }
    }

    /// The account's own listing of this kind (`/{user-id}/replies`: "all replies created by
    /// a user"), and the call that reads it.
    fn own_listing(self) -> (&'static str, CallContext) {
        match self {
            Self::Post => ("me/threads", errors::READ_POSTS),
            Self::Reply => ("me/replies", errors::READ_REPLIES),
        }
    }

    fn create_call(self) -> CallContext {
        match self {
            Self::Post => errors::CREATE_CONTAINER,
            Self::Reply => errors::CREATE_REPLY,
        }
    }

    fn publish_call(self) -> CallContext {
        match self {
            Self::Post => errors::PUBLISH,
            Self::Reply => errors::PUBLISH_REPLY,
        }
    }

    fn limit_call(self) -> CallContext {
        match self {
            Self::Post => errors::READ_QUOTA,
            Self::Reply => errors::READ_REPLY_QUOTA,
        }
    }
}

#[derive(Debug, Deserialize)]
struct IdBody {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ShortLivedToken {
    access_token: String,
}

#[derive(Debug, Deserialize)]
struct LongLivedToken {
    access_token: String,
    expires_in: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Me {
    id: String,
    username: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContainerStatus {
    status: Option<String>,
    error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Permalink {
    permalink: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListedPost {
    id: String,
    #[serde(default)]
    text: String,
    media_type: Option<String>,
    permalink: Option<String>,
    timestamp: Option<String>,
    #[serde(default)]
    is_reply: bool,
    /// Set on a post's replies: whether the reply is the caller's own.
    #[serde(default)]
    is_reply_owned_by_me: bool,
}

impl ListedPost {
    fn created_at(&self) -> Option<DateTime<Utc>> {
        self.timestamp.as_deref().and_then(quota::parse_graph_time)
    }

    /// Whether this is what `draft` would have made: the same text (as Threads may re-space
    /// it), with media or without as the draft.
    fn matches(&self, draft: &PostDraft) -> bool {
        let text_only = self.media_type.as_deref() == Some("TEXT_POST");
        normalize(&self.text) == normalize(&draft.text) && text_only == draft.media_ids.is_empty()
    }
}

/// One entry of `threads_publishing_limit`: whichever of the posts' `quota_usage` and `config`
/// and the replies' `reply_quota_usage` and `reply_config` were asked for.
#[derive(Debug, Deserialize)]
struct LimitEntry {
    #[serde(default)]
    quota_usage: u32,
    config: Option<QuotaConfig>,
    #[serde(default)]
    reply_quota_usage: u32,
    reply_config: Option<QuotaConfig>,
}

impl LimitEntry {
    /// The quota of `kind` in the shape both Meta quotas share.
    fn of(self, kind: PostKind) -> QuotaEntry {
        match kind {
            PostKind::Post => QuotaEntry {
                quota_usage: self.quota_usage,
                config: self.config,
            },
            PostKind::Reply => QuotaEntry {
                quota_usage: self.reply_quota_usage,
                config: self.reply_config,
            },
        }
    }
}

impl ThreadsAdapter {
    /// An adapter for the Threads API (or sandbox) described by `config`.
    pub fn new(config: ThreadsConfig) -> Result<Self, SetupError> {
        let oauth = OAuthClient::new(
            OAuthEndpoints {
                provider: "Threads".to_owned(),
                authorize_url: config.authorize_url.clone(),
                token_url: config.oauth_url("oauth/access_token"),
                revoke_url: None,
                client_id: config.client_id.clone(),
                client_secret: Some(config.client_secret.clone()),
                // Threads separates scopes with commas, so they travel as one value.
                scopes: vec![config.scopes.join(",")],
                use_pkce: false,
                client_auth: ClientAuth::RequestBody,
            },
            config.request_timeout,
        )?;
        let api = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(Self { config, oauth, api })
    }

    /// The configuration the adapter was built with.
    pub fn config(&self) -> &ThreadsConfig {
        &self.config
    }

    /// A token-endpoint call; secrets are removed from any message.
    async fn token_call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
        secrets: &[&str],
    ) -> Result<T, PlatformFailure> {
        http::call_json(self, "threads_token", &Unlimited, request, ctx)
            .await
            .map_err(|failure| PlatformFailure {
                message: redact(&failure.message, secrets),
                ..failure
            })
    }

    fn grant(&self, token: LongLivedToken) -> TokenGrant {
        let expires_at = token
            .expires_in
            .and_then(|s| Utc::now().checked_add_signed(TimeDelta::seconds(s)));
        let access = Secret::new(token.access_token);
        TokenGrant {
            refresh_token: Some(access.clone()),
            access_token: access,
            expires_at,
            scopes: self.config.scopes.clone(),
            refresh_token_expires_at: None,
            login_id: None,
        }
    }

    /// Creates one container of a `kind`; returns its id.
    async fn create_container(
        &self,
        token: &Secret,
        params: &[(&str, &str)],
        kind: PostKind,
        limits: &dyn RateLimitGate,
    ) -> Result<String, PlatformFailure> {
        let request = self
            .api
            .post(self.config.api_url("me/threads"))
            .bearer_auth(token.expose())
            .form(params);
        let created: IdBody =
            http::call_json(self, "threads_create", limits, request, kind.create_call()).await?;
        Ok(created.id)
    }

    /// Polls a container until it is FINISHED, within `status_poll_max_wait`.
    async fn wait_until_ready(
        &self,
        token: &Secret,
        container_id: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<(), PlatformFailure> {
        let deadline = tokio::time::Instant::now() + self.config.status_poll_max_wait;
        loop {
            let mut url = self.config.api_url(container_id);
            url.query_pairs_mut()
                .append_pair("fields", "status,error_message");
            let request = self.api.get(url).bearer_auth(token.expose());
            let status: ContainerStatus = http::call_json(
                self,
                "threads_status",
                limits,
                request,
                errors::CONTAINER_STATUS,
            )
            .await?;
            match status.status.as_deref() {
                Some("FINISHED") => return Ok(()),
                Some("ERROR") => {
                    return Err(PlatformFailure::new(
                        ErrorClass::Permanent,
                        "container_error",
                        format!(
                            "Threads could not process the post's media: {}; check that each URL is a public JPEG/PNG image (up to 8 MB) or MP4/MOV video (up to 5 minutes, 1 GB)",
                            status
                                .error_message
                                .as_deref()
                                .unwrap_or("no reason given")
                        ),
                    ))
                }
                Some("EXPIRED") => {
                    return Err(PlatformFailure::new(
                        ErrorClass::Retryable,
                        "container_expired",
                        "the Threads media container expired before it was published; Herald makes a new one",
                    ))
                }
                Some("PUBLISHED") => {
                    return Err(PlatformFailure::new(
                        ErrorClass::Permanent,
                        "container_published",
                        "the Threads media container was already published",
                    ))
                }
                _ => {}
            }
            if tokio::time::Instant::now() + self.config.status_poll_interval > deadline {
                return Err(PlatformFailure::new(
                    ErrorClass::Retryable,
                    "container_in_progress",
                    format!(
                        "Threads was still processing the post's media after {} s; Herald will try again",
                        self.config.status_poll_max_wait.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(self.config.status_poll_interval).await;
        }
    }

    /// Creates the post's container (and its carousel items) and waits until it can be
    /// published. Nothing here is visible on Threads, so every failure is retryable or final.
    async fn prepare(
        &self,
        token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<String, PlatformFailure> {
        let media = draft
            .media_ids
            .iter()
            .map(|id| {
                MediaRef::parse(id).ok_or_else(|| {
                    PlatformFailure::new(
                        ErrorClass::Permanent,
                        "invalid_media_reference",
                        "the media reference is not one the Threads adapter made; publish the media again",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let kind = PostKind::of(draft);
        let mut params: Vec<(&str, &str)> = Vec::new();
        if !draft.text.is_empty() {
            params.push(("text", &draft.text));
        }
        // create-replies: the container of a reply names the post it answers.
        if let Some(parent) = &draft.reply_to {
            params.push(("reply_to_id", parent));
        }
        let children;
        match media.as_slice() {
            [] => params.push(("media_type", "TEXT")),
            [one] => params.extend(one.params()),
            many => {
                let mut ids = Vec::with_capacity(many.len());
                for item in many {
                    let mut child = item.params().to_vec();
                    child.push(("is_carousel_item", "true"));
                    ids.push(self.create_container(token, &child, kind, limits).await?);
                }
                for (id, item) in ids.iter().zip(many) {
                    if matches!(item, MediaRef::Video(_)) {
                        self.wait_until_ready(token, id, limits).await?;
                    }
                }
                children = ids.join(",");
                params.push(("media_type", "CAROUSEL"));
                params.push(("children", &children));
            }
        }
        let container = self.create_container(token, &params, kind, limits).await?;
        self.wait_until_ready(token, &container, limits).await?;
        Ok(container)
    }

    /// The irreversible call (the same for a reply, create-replies).
    async fn publish(
        &self,
        token: &Secret,
        container: &str,
        kind: PostKind,
        limits: &dyn RateLimitGate,
    ) -> Result<String, PostError> {
        let call = kind.publish_call();
        let mut url = self.config.api_url("me/threads_publish");
        url.query_pairs_mut().append_pair("creation_id", container);
        let request = self.api.post(url).bearer_auth(token.expose());
        let response = match http::send(self, "threads_publish", limits, request).await {
            Ok(response) => response,
            Err(SendError::Limited(failure)) => return Err(PostError::Failed(failure)),
            Err(SendError::Transport(e)) => return Err(publish_transport_error(&e, call)),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(_) if status.is_success() => {
                return Err(PostError::OutcomeUnknown(format!(
                    "Threads published the post (HTTP {status}) but its answer was cut off; the post exists"
                )))
            }
            Err(_) => Default::default(),
        };
        if !status.is_success() {
            let failure = classify(status.as_u16(), &headers, &body, call, Utc::now());
            if quota::is_refusal(&failure) {
                // Posts made elsewhere used the quota meanwhile: wait for the next free slot.
                let free_at = self
                    .next_free_slot(token, kind, limits)
                    .await
                    .unwrap_or_else(|| Utc::now() + TimeDelta::hours(1));
                return Err(PostError::Failed(
                    self.quota(kind).refused(failure, free_at, limits).await,
                ));
            }
            return Err(PostError::Failed(failure));
        }
        serde_json::from_slice::<IdBody>(&body)
            .map(|b| b.id)
            .map_err(|_| {
                PostError::OutcomeUnknown(format!(
                    "Threads answered HTTP {status} without a readable post id; the post may exist"
                ))
            })
    }

    /// The publishing quota of `kind` as configured.
    fn quota(&self, kind: PostKind) -> PublishingQuota {
        let (key, items, fallback, cap) = match kind {
            PostKind::Post => (
                QUOTA_KEY,
                "posts",
                self.config.publish_quota_fallback,
                self.config.publish_quota_cap,
            ),
            PostKind::Reply => (
                REPLY_QUOTA_KEY,
                "replies",
                self.config.reply_quota_fallback,
                self.config.reply_quota_cap,
            ),
        };
        PublishingQuota {
            key,
            platform: "Threads",
            owner: "profile",
            items,
            fallback,
            cap,
        }
    }

    /// Reads `threads_publishing_limit` for `kind` and reserves this publish through the
    /// shared gate.
    async fn reserve_slot(
        &self,
        token: &Secret,
        kind: PostKind,
        limits: &dyn RateLimitGate,
    ) -> Result<PublishReservation, PlatformFailure> {
        let read_at = Utc::now();
        let mut url = self.config.api_url("me/threads_publishing_limit");
        url.query_pairs_mut()
            .append_pair("fields", kind.limit_fields());
        let request = self.api.get(url).bearer_auth(token.expose());
        let live: Listing<LimitEntry> =
            http::call_json(self, "threads_limit", limits, request, kind.limit_call()).await?;
        let quota = self.quota(kind);
        let entry = live.data.into_iter().next().map(|entry| entry.of(kind));
        let reading = quota.reading(entry, read_at);
        quota
            .reserve(reading, limits, || self.next_free_slot(token, kind, limits))
            .await
    }

    /// When the oldest post (or, for replies, reply) of the last 24 hours leaves the window
    /// (`None` when Threads lists none).
    async fn next_free_slot(
        &self,
        token: &Secret,
        kind: PostKind,
        limits: &dyn RateLimitGate,
    ) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let (listing, call) = kind.own_listing();
        let mut url = self.config.api_url(listing);
        url.query_pairs_mut()
            .append_pair("since", &(now - quota::WINDOW).timestamp().to_string())
            .append_pair("fields", "id,timestamp,is_reply")
            .append_pair("limit", "100");
        let request = self.api.get(url).bearer_auth(token.expose());
        let listed: Result<Listing<ListedPost>, _> =
            http::call_json(self, "threads_list", limits, request, call).await;
        let replies = kind == PostKind::Reply;
        let posted = listed
            .map(|page| page.data)
            .unwrap_or_default()
            .into_iter()
            .filter(|post| post.is_reply == replies)
            .filter_map(|post| post.created_at());
        quota::next_free_slot(posted, now)
    }

    /// The account's top-level post matching `draft`, made at or after `start`.
    async fn find_top_level(
        &self,
        token: &Secret,
        start: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<ListedPost>, PlatformFailure> {
        let mut url = self.config.api_url(&draft.account.account_id);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push("threads");
        }
        url.query_pairs_mut()
            .append_pair("since", &start.timestamp().to_string())
            .append_pair("fields", "id,text,timestamp,media_type,permalink,is_reply")
            .append_pair("limit", "100");
        let request = self.api.get(url).bearer_auth(token.expose());
        let page: Listing<ListedPost> =
            http::call_json(self, "threads_list", limits, request, errors::READ_POSTS).await?;
        Ok(page
            .data
            .into_iter()
            .find(|post| !post.is_reply && post.matches(draft)))
    }

    /// The account's own reply to `parent` matching `draft`, made at or after `start`. A
    /// post's replies are listed newest first (`reverse=true`, replies-and-conversations), so
    /// the search ends at the page that reaches back past `start`.
    async fn find_reply(
        &self,
        token: &Secret,
        parent: &str,
        start: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<ListedPost>, PlatformFailure> {
        let mut url = self.config.api_url(parent);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push("replies");
        }
        url.query_pairs_mut()
            .append_pair(
                "fields",
                "id,text,timestamp,media_type,permalink,is_reply_owned_by_me",
            )
            .append_pair("reverse", "true");
        for _ in 0..MAX_REPLY_PAGES {
            let request = self.api.get(url.clone()).bearer_auth(token.expose());
            let page: Listing<ListedPost> =
                http::call_json(self, "threads_list", limits, request, errors::READ_REPLIES)
                    .await?;
            let next = page.next_page(&self.config.api_base);
            let since_start = |reply: &ListedPost| reply.created_at().is_some_and(|at| at >= start);
            let reached_start = !page.data.iter().all(since_start);
            let found = page.data.into_iter().find(|reply| {
                reply.is_reply_owned_by_me && since_start(reply) && reply.matches(draft)
            });
            match (found, next) {
                (Some(found), _) => return Ok(Some(found)),
                (None, Some(next)) if !reached_start => url = next,
                (None, _) => break,
            }
        }
        Ok(None)
    }

    /// The post's permalink, or a link built from its id when Threads does not say.
    async fn post_url(&self, token: &Secret, id: &str, limits: &dyn RateLimitGate) -> String {
        let mut url = self.config.api_url(id);
        url.query_pairs_mut().append_pair("fields", "permalink");
        let request = self
            .api
            .get(url)
            .bearer_auth(token.expose())
            .timeout(PERMALINK_TIMEOUT);
        match http::call_json::<_, Permalink>(
            self,
            "threads_media",
            limits,
            request,
            errors::READ_POSTS,
        )
        .await
        {
            Ok(Permalink {
                permalink: Some(link),
            }) => link,
            _ => self.fallback_url(id),
        }
    }

    fn fallback_url(&self, id: &str) -> String {
        let mut url = self.config.post_url_base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["post", id]);
        }
        url.to_string()
    }
}

impl PlatformApi for ThreadsAdapter {
    type Context = CallContext;

    fn name(&self) -> &'static str {
        "Threads"
    }

    fn action(&self, ctx: CallContext) -> &'static str {
        ctx.action
    }

    /// Meta's usage headers (X-App-Usage and friends).
    fn rate_limit(
        &self,
        _status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        now: DateTime<Utc>,
    ) -> (Option<u64>, Option<DateTime<Utc>>) {
        graph::rate_limit(headers, now)
    }

    fn classify(
        &self,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        ctx: CallContext,
        now: DateTime<Utc>,
    ) -> PlatformFailure {
        classify(status.as_u16(), headers, body, ctx, now)
    }

    fn transport_failure(&self, error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
        transport_failure(error, ctx)
    }

    /// A success status with a Graph error body.
    fn is_error_body(&self, body: &serde_json::Value) -> bool {
        graph::is_error_body(body)
    }
}

#[async_trait::async_trait]
impl PlatformAdapter for ThreadsAdapter {
    fn platform(&self) -> Platform {
        Platform::Threads
    }

    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        self.oauth.start(redirect_uri)
    }

    /// Exchanges the code for a short-lived token, then that for a long-lived (60-day) one.
    #[tracing::instrument(skip_all, fields(platform = "threads"))]
    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        let secret = self.config.client_secret.expose();
        let request = self
            .api
            .post(self.config.oauth_url("oauth/access_token"))
            .form(&[
                ("client_id", self.config.client_id.as_str()),
                ("client_secret", secret),
                ("grant_type", "authorization_code"),
                ("redirect_uri", redirect_uri),
                ("code", code),
            ]);
        let short: ShortLivedToken = self
            .token_call(request, CallContext::CODE, &[code, secret])
            .await?;
        let request = self.api.get(self.config.oauth_url("access_token")).query(&[
            ("grant_type", "th_exchange_token"),
            ("client_secret", secret),
            ("access_token", short.access_token.as_str()),
        ]);
        let long: LongLivedToken = self
            .token_call(
                request,
                CallContext::CODE,
                &[code, secret, &short.access_token],
            )
            .await?;
        Ok(self.grant(long))
    }

    /// `refresh_token` is the long-lived access token itself.
    #[tracing::instrument(skip_all, fields(platform = "threads"))]
    async fn refresh(
        &self,
        _account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure> {
        let request = self
            .api
            .get(self.config.oauth_url("refresh_access_token"))
            .query(&[
                ("grant_type", "th_refresh_token"),
                ("access_token", refresh_token.expose()),
            ]);
        let long: LongLivedToken = self
            .token_call(request, CallContext::REFRESH, &[refresh_token.expose()])
            .await?;
        Ok(self.grant(long))
    }

    /// Threads has no token revocation endpoint: the user removes Herald under the account's
    /// Website permissions in Threads; Herald forgets the tokens.
    async fn revoke(
        &self,
        _account: &AccountProfile,
        _grant: &TokenGrant,
    ) -> Result<(), PlatformFailure> {
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(platform = "threads", account_id = tracing::field::Empty))]
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure> {
        let mut url = self.config.api_url("me");
        url.query_pairs_mut()
            .append_pair("fields", "id,username,name");
        let request = self.api.get(url).bearer_auth(access_token.expose());
        let me: Me = http::call_json(
            self,
            "threads_me",
            &Unlimited,
            request,
            errors::READ_ACCOUNT,
        )
        .await?;
        tracing::Span::current().record("account_id", me.id.as_str());
        let username = me.username.unwrap_or_else(|| me.id.clone());
        Ok(AccountProfile {
            account_id: me.id,
            display_name: me.name.unwrap_or_else(|| username.clone()),
            username,
        })
    }

    /// Threads pulls media from its URL when the container is made, so there is nothing to
    /// send: the reference says the kind and the URL.
    async fn upload_media(
        &self,
        _access_token: &Secret,
        upload: &MediaUpload<'_>,
        _limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        let item = upload.item;
        progress.started(0).await;
        let kind = match item.kind {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Gif => {
                return Err(media_not_taken(
                    "Threads",
                    "GIFs",
                    "post it as an image or a video",
                ))
            }
            MediaKind::Document => {
                return Err(media_not_taken(
                    "Threads",
                    "documents",
                    "share it as a link",
                ))
            }
        };
        Ok(format!("{kind}:{}", item.url))
    }

    #[tracing::instrument(
        skip_all,
        fields(platform = "threads", media = draft.media_ids.len(), post_id = tracing::field::Empty)
    )]
    async fn create_post(
        &self,
        access_token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        // A reply takes from the reply quota, a post from the posts quota: never both.
        let kind = PostKind::of(draft);
        let quota = self.quota(kind);
        quota.known_free(limits).await?;
        let container = self.prepare(access_token, draft, limits).await?;
        let reservation = self.reserve_slot(access_token, kind, limits).await?;
        let published = self.publish(access_token, &container, kind, limits).await;
        quota.settle(&reservation, &published, limits).await;
        let post_id = published?;
        tracing::Span::current().record("post_id", post_id.as_str());
        let url = self.post_url(access_token, &post_id, limits).await;
        Ok(CreatedPost { post_id, url })
    }

    #[tracing::instrument(skip_all, fields(platform = "threads", %since, found = tracing::field::Empty))]
    async fn find_post(
        &self,
        access_token: &Secret,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        let start = since - TimeDelta::seconds(CLOCK_SKEW_SECS);
        // A reply is listed among its parent's replies, not the account's posts.
        let found = match &draft.reply_to {
            Some(parent) => {
                self.find_reply(access_token, parent, start, draft, limits)
                    .await?
            }
            None => {
                self.find_top_level(access_token, start, draft, limits)
                    .await?
            }
        };
        tracing::Span::current().record("found", found.is_some());
        Ok(found.map(|post| CreatedPost {
            url: post
                .permalink
                .unwrap_or_else(|| self.fallback_url(&post.id)),
            post_id: post.id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_references_round_trip() {
        assert_eq!(
            MediaRef::parse("image:https://cdn/a.png"),
            Some(MediaRef::Image("https://cdn/a.png"))
        );
        assert_eq!(
            MediaRef::parse("video:https://cdn/a.mp4").map(MediaRef::params),
            Some([("media_type", "VIDEO"), ("video_url", "https://cdn/a.mp4")])
        );
        assert_eq!(MediaRef::parse("1234"), None);
    }
}
