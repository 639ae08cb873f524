//! Instagram adapter: the Instagram API with Facebook Login (platform-facts §3, §4).
//!
//! Connecting: Facebook Login (see [`crate::platforms::meta::login`]); one login yields one
//! connection per Instagram business or creator account linked to a Page the person manages,
//! each holding that Page's token (Page tokens do not expire; Instagram calls accept them).
//! A personal Instagram account cannot be linked to a Page, so it is never offered: the person
//! is told to switch it to a professional account and link it.
//!
//! Publishing: Instagram fetches media from public URLs, so `upload_media` sends nothing and
//! returns `image:{url}` or `video:{url}`. `create_post` makes the container(s) the placement in
//! `options.instagram` asks for — feed: one image (IMAGE), one video (REELS shared to the feed,
//! as Instagram no longer takes feed VIDEO) or 2–10 items (CAROUSEL of children with
//! `is_carousel_item`); `reels`: one video; `stories`: one image or video — polls each
//! container's `status_code` until FINISHED, checks the publishing quota, then calls
//! `media_publish`, the irreversible call.
//!
//! The publishing quota (docs say 50 or 100 posts per 24 hours, facts §4.3) is read live from
//! `content_publishing_limit` right before every `media_publish`, one publish per account at a
//! time in a process. What the reading leaves is recorded in the shared rate-limit gate (key
//! `instagram_publishing_quota`), so once any worker finds the quota used up, every worker waits
//! for the next free slot without making containers. Two processes reading at the same moment
//! can still both take the last slot; Instagram then refuses one (2207042), which waits for the
//! next free slot too. Other rate-limit keys: `instagram_me`, `instagram_media`,
//! `instagram_status`, `instagram_publish`, `instagram_read`.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaKind, Platform, PlatformFailure};
use serde::Deserialize;
use url::Url;

use super::http::{self, PlatformApi, SendError};
use super::meta::errors::{self, instagram_subcode, GraphPlatform};
use super::meta::graph::{self, normalize, CallContext};
use super::meta::login::{FacebookLogin, GraphConfig, IdRef};
use super::{
    AuthorizationStart, ConnectedAccount, CreatedPost, MediaUpload, PlatformAdapter, PostDraft,
    PostError, RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::oauth::SetupError;
use crate::secret::Secret;

/// Permissions Herald asks for (facts §4: Instagram API with Facebook Login).
pub const DEFAULT_SCOPES: [&str; 4] = [
    "instagram_basic",
    "instagram_content_publish",
    "pages_show_list",
    "pages_read_engagement",
];
/// Without these Herald cannot find or publish to the account.
const REQUIRED: [&str; 3] = [
    "instagram_basic",
    "instagram_content_publish",
    "pages_show_list",
];
const INSTAGRAM: GraphPlatform = GraphPlatform {
    name: "Instagram",
    permissions: "instagram_basic, instagram_content_publish and pages_show_list",
    reconnect: "connect Instagram again",
    credentials: "INSTAGRAM_CLIENT_ID and INSTAGRAM_CLIENT_SECRET",
};
const RECONNECT: &str = "connect Instagram again";
/// The gate's key for the shared publishing quota.
const QUOTA_KEY: &str = "instagram_publishing_quota";

const READ_ACCOUNT: CallContext = CallContext::api("read the Instagram account");
const CREATE_CONTAINER: CallContext = CallContext::api("create the post's media container");
const CONTAINER_STATUS: CallContext = CallContext::api("check the media container's status");
const READ_QUOTA: CallContext = CallContext::api("read the publishing limit");
const PUBLISH: CallContext = CallContext::api("publish the post");
const READ_POSTS: CallContext = CallContext::api("list the account's posts");

/// Posts created this long before `since` still count: clocks differ between Herald and Meta.
const CLOCK_SKEW_SECS: i64 = 5;
/// The publishing quota's window (facts §4.3).
const QUOTA_WINDOW: TimeDelta = TimeDelta::hours(24);

/// Configuration of the Instagram adapter.
#[derive(Debug, Clone)]
pub struct InstagramConfig {
    pub graph: GraphConfig,
    /// Pause between container status checks (Meta suggests once a minute for up to five).
    pub status_poll_interval: Duration,
    /// How long to wait for a container before giving up on this attempt.
    pub status_poll_max_wait: Duration,
    /// Posts per 24 hours when `content_publishing_limit` does not say (docs: 50 or 100).
    pub publish_quota_fallback: u32,
    /// Publish at most this many per 24 hours even when Meta allows more.
    pub publish_quota_cap: Option<u32>,
}

impl InstagramConfig {
    /// Configuration for Meta's real hosts.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            graph: GraphConfig::new(client_id, client_secret, &DEFAULT_SCOPES),
            status_poll_interval: Duration::from_secs(5),
            status_poll_max_wait: Duration::from_secs(5 * 60),
            publish_quota_fallback: 50,
            publish_quota_cap: None,
        }
    }

    /// Configuration for a Graph-compatible server (the sandbox's `/meta`) at `base`.
    pub fn for_base(base: Url, client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            graph: GraphConfig::for_base(base, client_id, client_secret, &DEFAULT_SCOPES),
            status_poll_interval: Duration::from_millis(100),
            status_poll_max_wait: Duration::from_secs(30),
            ..Self::new(String::new(), Secret::new(""))
        }
    }
}

/// The Instagram adapter. Cheap to share: hold it in an `Arc`.
pub struct InstagramAdapter {
    config: InstagramConfig,
    login: FacebookLogin,
    /// Per account: one publish at a time in this process, from reading the live quota to
    /// `media_publish`, so this process never races itself past the quota.
    publish_turns: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for InstagramAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstagramAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct IdBody {
    id: String,
}

#[derive(Debug, Deserialize)]
struct PageLink {
    instagram_business_account: Option<IdRef>,
}

#[derive(Debug, Deserialize)]
struct IgUser {
    id: String,
    username: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContainerStatus {
    status_code: Option<String>,
    status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Listing<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct QuotaEntry {
    #[serde(default)]
    quota_usage: u32,
    config: Option<QuotaConfig>,
}

#[derive(Debug, Deserialize)]
struct QuotaConfig {
    quota_total: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct Media {
    id: String,
    #[serde(default)]
    caption: Option<String>,
    permalink: Option<String>,
    timestamp: Option<String>,
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
}

/// Where the post goes (`options.instagram.placement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    Feed,
    Reels,
    Stories,
}

impl Placement {
    fn of(draft: &PostDraft) -> Self {
        match draft.options.instagram.placement.as_deref() {
            Some("reels") => Self::Reels,
            Some("stories") => Self::Stories,
            _ => Self::Feed,
        }
    }
}

/// The container parameters of a post: `(children, parent)`, children first.
type Plan = (
    Vec<Vec<(&'static str, String)>>,
    Vec<(&'static str, String)>,
);

fn permanent(code: &str, message: impl Into<String>) -> PlatformFailure {
    PlatformFailure::new(ErrorClass::Permanent, code, message)
}

/// The containers `draft` needs, or why Instagram cannot take it.
fn plan(draft: &PostDraft) -> Result<Plan, PlatformFailure> {
    let media = draft
        .media_ids
        .iter()
        .map(|id| {
            MediaRef::parse(id).ok_or_else(|| {
                permanent(
                    "invalid_media_reference",
                    "the media reference is not one the Instagram adapter made; publish the media again",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let caption = |params: &mut Vec<(&'static str, String)>| {
        if !draft.text.is_empty() {
            params.push(("caption", draft.text.clone()));
        }
    };
    let mut parent: Vec<(&'static str, String)> = Vec::new();
    match (Placement::of(draft), media.as_slice()) {
        (_, []) => {
            return Err(permanent(
                "media_required",
                "an Instagram post needs an image or a video; add one",
            ))
        }
        (Placement::Stories, [one]) => {
            parent.push(("media_type", "STORIES".into()));
            match one {
                MediaRef::Image(url) => parent.push(("image_url", (*url).into())),
                MediaRef::Video(url) => parent.push(("video_url", (*url).into())),
            }
        }
        (Placement::Stories, _) => {
            return Err(permanent(
                "story_single_media",
                "an Instagram story is one image or one video; publish each item as its own story",
            ))
        }
        (Placement::Reels, [MediaRef::Video(url)]) | (Placement::Feed, [MediaRef::Video(url)]) => {
            parent.push(("media_type", "REELS".into()));
            parent.push(("video_url", (*url).into()));
            parent.push(("share_to_feed", "true".into()));
            caption(&mut parent);
        }
        (Placement::Reels, _) => {
            return Err(permanent(
                "reel_single_video",
                "an Instagram reel is exactly one video",
            ))
        }
        (Placement::Feed, [MediaRef::Image(url)]) => {
            parent.push(("image_url", (*url).into()));
            caption(&mut parent);
        }
        (Placement::Feed, many) if many.len() > 10 => {
            return Err(permanent(
                "carousel_too_large",
                format!(
                    "an Instagram carousel takes 2 to 10 items; this post has {}",
                    many.len()
                ),
            ))
        }
        (Placement::Feed, many) => {
            let children = many
                .iter()
                .map(|item| match item {
                    MediaRef::Image(url) => vec![
                        ("image_url", (*url).to_owned()),
                        ("is_carousel_item", "true".to_owned()),
                    ],
                    MediaRef::Video(url) => vec![
                        ("media_type", "VIDEO".to_owned()),
                        ("video_url", (*url).to_owned()),
                        ("is_carousel_item", "true".to_owned()),
                    ],
                })
                .collect();
            parent.push(("media_type", "CAROUSEL".into()));
            caption(&mut parent);
            return Ok((children, parent));
        }
    }
    Ok((Vec::new(), parent))
}

/// The subcode in a container's `status` ("... failed with error code 2207026.").
fn status_subcode(status: &str) -> Option<i64> {
    let (_, rest) = status.rsplit_once("error code ")?;
    rest.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

impl InstagramAdapter {
    pub fn new(config: InstagramConfig) -> Result<Self, SetupError> {
        let login = FacebookLogin::new(config.graph.clone(), "Instagram")?;
        Ok(Self {
            config,
            login,
            publish_turns: std::sync::Mutex::default(),
        })
    }

    pub fn config(&self) -> &InstagramConfig {
        &self.config
    }

    fn url(&self, path: &str) -> Url {
        self.config.graph.graph_url(path)
    }

    fn get(&self, url: Url, token: &Secret) -> reqwest::RequestBuilder {
        self.login.http().get(url).bearer_auth(token.expose())
    }

    /// The Instagram account linked to the Page whose token this is.
    async fn ig_user_id(
        &self,
        token: &Secret,
        limits: &dyn RateLimitGate,
    ) -> Result<String, PlatformFailure> {
        let mut url = self.url("me");
        url.query_pairs_mut()
            .append_pair("fields", "instagram_business_account");
        let page: PageLink = http::call_json(
            self,
            "instagram_me",
            limits,
            self.get(url, token),
            READ_ACCOUNT,
        )
        .await?;
        page.instagram_business_account
            .map(|ig| ig.id)
            .ok_or_else(|| {
                PlatformFailure::new(
                    ErrorClass::ReauthorizationRequired,
                    "instagram_unlinked",
                    "the Instagram account is no longer linked to its Facebook Page: link it again in the Page's settings (Linked accounts), then connect Instagram again",
                )
            })
    }

    async fn profile(
        &self,
        token: &Secret,
        ig_id: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<AccountProfile, PlatformFailure> {
        let mut url = self.url(ig_id);
        url.query_pairs_mut()
            .append_pair("fields", "id,username,name");
        let user: IgUser = http::call_json(
            self,
            "instagram_me",
            limits,
            self.get(url, token),
            READ_ACCOUNT,
        )
        .await?;
        let username = user.username.unwrap_or_else(|| user.id.clone());
        Ok(AccountProfile {
            account_id: user.id,
            display_name: user.name.unwrap_or_else(|| username.clone()),
            username,
        })
    }

    async fn create_container(
        &self,
        token: &Secret,
        ig_id: &str,
        params: &[(&'static str, String)],
        limits: &dyn RateLimitGate,
    ) -> Result<String, PlatformFailure> {
        let request = self
            .login
            .http()
            .post(self.url(&format!("{ig_id}/media")))
            .bearer_auth(token.expose())
            .form(params);
        let created: IdBody =
            http::call_json(self, "instagram_media", limits, request, CREATE_CONTAINER).await?;
        Ok(created.id)
    }

    /// Polls a container until FINISHED, within `status_poll_max_wait`.
    async fn wait_until_ready(
        &self,
        token: &Secret,
        container: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<(), PlatformFailure> {
        let deadline = tokio::time::Instant::now() + self.config.status_poll_max_wait;
        loop {
            let mut url = self.url(container);
            url.query_pairs_mut()
                .append_pair("fields", "status_code,status");
            let status: ContainerStatus = http::call_json(
                self,
                "instagram_status",
                limits,
                self.get(url, token),
                CONTAINER_STATUS,
            )
            .await?;
            match status.status_code.as_deref() {
                Some("FINISHED") => return Ok(()),
                Some("ERROR") => {
                    let said = status.status.unwrap_or_default();
                    let subcode = status_subcode(&said);
                    let (class, advice) = subcode.and_then(instagram_subcode).unwrap_or((
                        ErrorClass::Permanent,
                        "check that each URL is a public JPEG image (up to 8 MB) or MP4/MOV video",
                    ));
                    return Err(PlatformFailure::new(
                        class,
                        subcode.map_or("container_error".into(), |s| format!("container_error_{s}")),
                        format!("Instagram could not process the post's media: {advice} ({said})"),
                    ));
                }
                Some("EXPIRED") => {
                    return Err(PlatformFailure::new(
                        ErrorClass::Retryable,
                        "container_expired",
                        "the Instagram media container expired before it was published; Herald makes a new one",
                    ))
                }
                Some("PUBLISHED") => {
                    return Err(permanent(
                        "container_published",
                        "the Instagram media container was already published",
                    ))
                }
                _ => {}
            }
            if tokio::time::Instant::now() + self.config.status_poll_interval > deadline {
                return Err(PlatformFailure::new(
                    ErrorClass::Retryable,
                    "container_in_progress",
                    format!(
                        "Instagram was still processing the post's media after {} s; Herald will try again",
                        self.config.status_poll_max_wait.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(self.config.status_poll_interval).await;
        }
    }

    /// Makes the post's containers and waits until the one to publish is ready. Nothing is
    /// visible on Instagram yet.
    async fn prepare(
        &self,
        token: &Secret,
        ig_id: &str,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<String, PlatformFailure> {
        let (children, mut parent) = plan(draft)?;
        if !children.is_empty() {
            let mut ids = Vec::with_capacity(children.len());
            for child in &children {
                ids.push(self.create_container(token, ig_id, child, limits).await?);
            }
            for id in &ids {
                self.wait_until_ready(token, id, limits).await?;
            }
            parent.push(("children", ids.join(",")));
        }
        let container = self.create_container(token, ig_id, &parent, limits).await?;
        self.wait_until_ready(token, &container, limits).await?;
        Ok(container)
    }

    /// When the oldest post in the 24-hour window leaves it: the next free publishing slot.
    async fn next_free_slot(
        &self,
        token: &Secret,
        ig_id: &str,
        limits: &dyn RateLimitGate,
    ) -> DateTime<Utc> {
        let now = Utc::now();
        let since = (now - QUOTA_WINDOW).timestamp().to_string();
        let mut oldest: Option<DateTime<Utc>> = None;
        for edge in ["media", "stories"] {
            let mut url = self.url(&format!("{ig_id}/{edge}"));
            url.query_pairs_mut()
                .append_pair("fields", "id,timestamp")
                .append_pair("since", &since)
                .append_pair("limit", "100");
            let listed: Result<Listing<Media>, _> = http::call_json(
                self,
                "instagram_read",
                limits,
                self.get(url, token),
                READ_POSTS,
            )
            .await;
            for media in listed.map(|l| l.data).unwrap_or_default() {
                let at = media.timestamp.as_deref().and_then(parse_graph_time);
                if let Some(at) = at.filter(|at| *at > now - QUOTA_WINDOW) {
                    oldest = Some(oldest.map_or(at, |o: DateTime<Utc>| o.min(at)));
                }
            }
        }
        oldest.map_or(now + TimeDelta::hours(1), |o| {
            o + QUOTA_WINDOW + TimeDelta::seconds(1)
        })
    }

    fn quota_failure(&self, total: u32, until: DateTime<Utc>) -> PlatformFailure {
        PlatformFailure::new(
            ErrorClass::RateLimited,
            "publishing_quota",
            format!(
                "the Instagram account used its {total} API-published posts of the last 24 hours; Herald publishes at {} when the oldest leaves the window",
                until.to_rfc3339()
            ),
        )
        .not_before(until)
    }

    /// This process's turn to publish to `ig_id`.
    async fn publish_turn(&self, ig_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self
            .publish_turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(ig_id.to_owned())
            .or_default()
            .clone();
        turn.lock_owned().await
    }

    /// Refuses at once when the workers already know the quota is used up (the gate holds
    /// what the last live reading said), before any container is made.
    async fn quota_known_free(&self, limits: &dyn RateLimitGate) -> Result<(), PlatformFailure> {
        limits.acquire(QUOTA_KEY).await.map_err(|until| {
            let total = self
                .config
                .publish_quota_cap
                .unwrap_or(self.config.publish_quota_fallback);
            self.quota_failure(total, until)
        })
    }

    /// Reads the live usage: refuses when the quota is used up, and tells the gate what is left
    /// after this publish (and, when nothing is, when the next slot frees).
    async fn reserve_slot(
        &self,
        token: &Secret,
        ig_id: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<(), PlatformFailure> {
        let now = Utc::now();
        // Meta takes a `since` at most 24 hours old.
        let since = (now - QUOTA_WINDOW + TimeDelta::minutes(1)).timestamp();
        let mut url = self.url(&format!("{ig_id}/content_publishing_limit"));
        url.query_pairs_mut()
            .append_pair("fields", "quota_usage,config")
            .append_pair("since", &since.to_string());
        let live: Listing<QuotaEntry> = http::call_json(
            self,
            "instagram_read",
            limits,
            self.get(url, token),
            READ_QUOTA,
        )
        .await?;
        let entry = live.data.into_iter().next();
        let usage = entry.as_ref().map_or(0, |e| e.quota_usage);
        let live_total = entry
            .and_then(|e| e.config)
            .and_then(|c| c.quota_total)
            .unwrap_or(self.config.publish_quota_fallback);
        let total = self
            .config
            .publish_quota_cap
            .map_or(live_total, |cap| cap.min(live_total));
        if usage >= total {
            let free_at = self.next_free_slot(token, ig_id, limits).await;
            limits.observe(QUOTA_KEY, Some(0), Some(free_at)).await;
            return Err(self.quota_failure(total, free_at));
        }
        let left = u64::from(total - usage - 1);
        let reset = if left == 0 {
            self.next_free_slot(token, ig_id, limits).await
        } else {
            now + QUOTA_WINDOW
        };
        limits.observe(QUOTA_KEY, Some(left), Some(reset)).await;
        Ok(())
    }

    /// `media_publish`: the irreversible call.
    async fn publish(
        &self,
        token: &Secret,
        ig_id: &str,
        container: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<String, PostError> {
        let request = self
            .login
            .http()
            .post(self.url(&format!("{ig_id}/media_publish")))
            .bearer_auth(token.expose())
            .form(&[("creation_id", container)]);
        let response = match http::send(self, "instagram_publish", limits, request).await {
            Ok(response) => response,
            Err(SendError::Limited(failure)) => return Err(PostError::Failed(failure)),
            Err(SendError::Transport(e)) => {
                return Err(graph::publish_transport_error("Instagram", &e, PUBLISH))
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(_) if status.is_success() => {
                return Err(PostError::OutcomeUnknown(format!(
                    "Instagram published the post (HTTP {status}) but its answer was cut off; the post exists"
                )))
            }
            Err(_) => Default::default(),
        };
        if !status.is_success() {
            let failure = self.classify(status, &headers, &body, PUBLISH, Utc::now());
            if failure.code.ends_with("_2207042") {
                // Another client used the quota meanwhile: wait for the next free slot.
                let free_at = self.next_free_slot(token, ig_id, limits).await;
                limits.observe(QUOTA_KEY, Some(0), Some(free_at)).await;
                return Err(PostError::Failed(failure.not_before(free_at)));
            }
            return Err(PostError::Failed(failure));
        }
        serde_json::from_slice::<IdBody>(&body)
            .map(|b| b.id)
            .map_err(|_| {
                PostError::OutcomeUnknown(format!(
                    "Instagram answered HTTP {status} without a readable media id; the post may exist"
                ))
            })
    }

    /// The media's permalink, or the account's profile when Instagram does not say.
    async fn post_url(
        &self,
        token: &Secret,
        ig_id: &str,
        media_id: &str,
        limits: &dyn RateLimitGate,
    ) -> String {
        let mut url = self.url(media_id);
        url.query_pairs_mut().append_pair("fields", "permalink");
        let request = self.get(url, token).timeout(Duration::from_secs(5));
        if let Ok(Media {
            permalink: Some(link),
            ..
        }) =
            http::call_json::<_, Media>(self, "instagram_read", limits, request, READ_POSTS).await
        {
            return link;
        }
        match self.profile(token, ig_id, limits).await {
            Ok(profile) => format!("https://www.instagram.com/{}/", profile.username),
            Err(_) => "https://www.instagram.com/".to_owned(),
        }
    }
}

/// Graph's `2025-01-02T03:04:05+0000` (or RFC 3339).
fn parse_graph_time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%z")
        .or_else(|_| DateTime::parse_from_rfc3339(raw))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

errors::graph_platform_api!(InstagramAdapter, INSTAGRAM);

#[async_trait::async_trait]
impl PlatformAdapter for InstagramAdapter {
    fn platform(&self) -> Platform {
        Platform::Instagram
    }

    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        self.login.authorization_url(redirect_uri)
    }

    /// The code → a long-lived user token; [`Self::accounts`] finds the Instagram accounts.
    #[tracing::instrument(skip_all, fields(platform = "instagram"))]
    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.login.exchange_code(self, code, redirect_uri).await
    }

    /// Renews the linked Page's token through the login's user token (see `meta::login`).
    #[tracing::instrument(skip_all, fields(platform = "instagram"))]
    async fn refresh(&self, refresh_token: &Secret) -> Result<TokenGrant, PlatformFailure> {
        self.login.renew_page_grant(self, refresh_token).await
    }

    /// Meta revokes per app, which would disconnect the person's Pages too: Herald forgets the
    /// token; the person removes Herald in Facebook's Business Integrations if they wish.
    async fn revoke(&self, _grant: &TokenGrant) -> Result<(), PlatformFailure> {
        Ok(())
    }

    /// The Instagram account linked to the token's Page.
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure> {
        let ig_id = self.ig_user_id(access_token, &Unlimited).await?;
        self.profile(access_token, &ig_id, &Unlimited).await
    }

    /// One connection per Instagram business/creator account linked to a Page the person
    /// manages, each with that Page's token.
    #[tracing::instrument(skip_all, fields(platform = "instagram", accounts = tracing::field::Empty))]
    async fn accounts(&self, grant: &TokenGrant) -> Result<Vec<ConnectedAccount>, PlatformFailure> {
        self.login
            .require_permissions(self, &grant.access_token, &REQUIRED, RECONNECT)
            .await?;
        let pages = self
            .login
            .pages(
                self,
                &grant.access_token,
                "id,name,access_token,tasks,instagram_business_account",
            )
            .await?;
        let mut accounts: Vec<ConnectedAccount> = Vec::new();
        for page in &pages {
            let (Some(ig), Some(token)) = (&page.instagram_business_account, &page.access_token)
            else {
                continue;
            };
            if accounts.iter().any(|a| a.profile.account_id == ig.id) {
                continue;
            }
            let page_token = Secret::new(token.clone());
            let profile = self.profile(&page_token, &ig.id, &Unlimited).await?;
            accounts.push(ConnectedAccount {
                profile,
                grant: Some(self.login.page_grant(&page.id, token, grant)),
            });
        }
        tracing::Span::current().record("accounts", accounts.len());
        if accounts.is_empty() {
            let message = if pages.is_empty() {
                "Instagram publishing goes through a Facebook Page, and this login gave Herald no Page: switch your Instagram account to a professional account (Business or Creator), link it to a Facebook Page you manage, then connect Instagram again and choose that Page".to_owned()
            } else {
                let names: Vec<String> = pages.iter().map(|p| p.display_name()).collect();
                format!(
                    "none of your Facebook Pages ({}) has an Instagram business or creator account linked. A personal Instagram account cannot publish through the API: in the Instagram app switch it to a professional account (Business or Creator), link it to one of these Pages, then connect Instagram again",
                    names.join(", ")
                )
            };
            return Err(permanent("no_instagram_business_account", message));
        }
        Ok(accounts)
    }

    /// Instagram fetches media itself when a container is made: nothing to send.
    async fn upload_media(
        &self,
        _access_token: &Secret,
        upload: &MediaUpload<'_>,
        _limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        progress.started(0).await;
        let item = upload.item;
        match item.kind {
            MediaKind::Image => Ok(format!("image:{}", item.url)),
            MediaKind::Video => Ok(format!("video:{}", item.url)),
            MediaKind::Gif => Err(permanent(
                "unsupported_media",
                "Instagram does not take GIFs; post it as a video or a JPEG image",
            )),
        }
    }

    #[tracing::instrument(
        skip_all,
        fields(platform = "instagram", media = draft.media_ids.len(), post_id = tracing::field::Empty)
    )]
    async fn create_post(
        &self,
        access_token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        let ig_id = self.ig_user_id(access_token, limits).await?;
        self.quota_known_free(limits).await?;
        let container = self.prepare(access_token, &ig_id, draft, limits).await?;
        let turn = self.publish_turn(&ig_id).await;
        self.reserve_slot(access_token, &ig_id, limits).await?;
        let post_id = self
            .publish(access_token, &ig_id, &container, limits)
            .await?;
        drop(turn);
        tracing::Span::current().record("post_id", post_id.as_str());
        tracing::debug!("instagram media published");
        let url = self.post_url(access_token, &ig_id, &post_id, limits).await;
        Ok(CreatedPost { post_id, url })
    }

    /// The account's media (or stories) since `since`, matched on the caption; a story has
    /// no caption, so the first story since the attempt is taken.
    #[tracing::instrument(skip_all, fields(platform = "instagram", %since, found = tracing::field::Empty))]
    async fn find_post(
        &self,
        access_token: &Secret,
        account_id: &str,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        let stories = Placement::of(draft) == Placement::Stories;
        let start = since - TimeDelta::seconds(CLOCK_SKEW_SECS);
        let mut url = self.url(&format!(
            "{account_id}/{}",
            if stories { "stories" } else { "media" }
        ));
        url.query_pairs_mut()
            .append_pair("since", &start.timestamp().to_string())
            .append_pair(
                "fields",
                "id,caption,media_type,media_product_type,permalink,timestamp",
            )
            .append_pair("limit", "100");
        let listed: Listing<Media> = http::call_json(
            self,
            "instagram_read",
            limits,
            self.get(url, access_token),
            READ_POSTS,
        )
        .await?;
        let wanted = normalize(&draft.text);
        let mut candidates: Vec<Media> = listed
            .data
            .into_iter()
            .filter(|m| {
                m.timestamp
                    .as_deref()
                    .and_then(parse_graph_time)
                    .is_none_or(|t| t >= start)
            })
            .filter(|m| stories || normalize(m.caption.as_deref().unwrap_or_default()) == wanted)
            .collect();
        // Newest first: the oldest match is the attempt's.
        let found = candidates.pop();
        tracing::Span::current().record("found", found.is_some());
        Ok(found.map(|m| CreatedPost {
            url: m
                .permalink
                .unwrap_or_else(|| "https://www.instagram.com/".to_owned()),
            post_id: m.id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_domain::PublishOptions;

    fn draft(media: &[&str], placement: Option<&str>) -> PostDraft {
        let mut options = PublishOptions::default();
        options.instagram.placement = placement.map(str::to_owned);
        PostDraft {
            text: "caption #tag".into(),
            media_ids: media.iter().map(|m| (*m).to_owned()).collect(),
            options,
            ..PostDraft::default()
        }
    }

    fn keys(params: &[(&'static str, String)]) -> Vec<String> {
        params.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn each_placement_makes_its_containers() {
        let (children, parent) = plan(&draft(&["image:https://a/1.jpg"], None)).unwrap();
        assert!(children.is_empty());
        assert_eq!(
            keys(&parent),
            ["image_url=https://a/1.jpg", "caption=caption #tag"]
        );

        let (_, parent) = plan(&draft(&["video:https://a/v.mp4"], None)).unwrap();
        assert!(keys(&parent).contains(&"media_type=REELS".to_owned()));
        assert!(keys(&parent).contains(&"share_to_feed=true".to_owned()));

        let (_, parent) = plan(&draft(&["image:https://a/s.jpg"], Some("stories"))).unwrap();
        assert_eq!(
            keys(&parent),
            ["media_type=STORIES", "image_url=https://a/s.jpg"]
        );

        let (children, parent) = plan(&draft(
            &["image:https://a/1.jpg", "video:https://a/2.mp4"],
            None,
        ))
        .unwrap();
        assert_eq!(children.len(), 2);
        assert!(keys(&children[1]).contains(&"media_type=VIDEO".to_owned()));
        assert!(keys(&children[0]).contains(&"is_carousel_item=true".to_owned()));
        assert_eq!(
            keys(&parent),
            ["media_type=CAROUSEL", "caption=caption #tag"]
        );
    }

    #[test]
    fn what_instagram_cannot_take_is_refused_before_any_call() {
        assert!(plan(&draft(&[], None)).is_err());
        assert!(plan(&draft(&["image:https://a/1.jpg"], Some("reels"))).is_err());
        assert!(plan(&draft(&["image:a", "image:b"], Some("stories"))).is_err());
        let eleven: Vec<String> = (0..11)
            .map(|i| format!("image:https://a/{i}.jpg"))
            .collect();
        let refs: Vec<&str> = eleven.iter().map(String::as_str).collect();
        assert!(plan(&draft(&refs, None)).is_err());
        assert!(plan(&draft(&["photo:1"], None)).is_err());
    }

    #[test]
    fn container_errors_name_their_subcode() {
        assert_eq!(
            status_subcode("Error: Media upload has failed with error code 2207026."),
            Some(2_207_026)
        );
        assert_eq!(status_subcode("Error: something else"), None);
        assert_eq!(
            parse_graph_time("2025-01-02T03:04:05+0000").map(|t| t.timestamp()),
            Some(1_735_787_045)
        );
    }
}
