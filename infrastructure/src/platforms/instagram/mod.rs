//! Instagram adapter: the Instagram API with Facebook Login (platform-facts §3, §4).
//!
//! Connecting: Facebook Login (see [`crate::platforms::meta::login`]); one login yields one
//! connection per Instagram business or creator account linked to a Page the person manages,
//! each holding that Page's token (Page tokens do not expire; Instagram calls accept them).
//! A personal Instagram account cannot be linked to a Page, so it is never offered: the person
//! is told to switch it to a professional account and link it.
//!
//! Publishing: images go by public URL, so `upload_media` returns `image:{url}`. A video is
//! uploaded by `upload_media` itself (see [`upload`]): a container with
//! `upload_type=resumable`, then the bytes streamed to `rupload.facebook.com` chunk by chunk,
//! resumable across attempts; it returns `container:{id}`. With `INSTAGRAM_VIDEO_UPLOAD=url`
//! Meta fetches the video instead and the reference is `video:{url}`. `create_post` makes the
//! container(s) the placement in `options.instagram` asks for — feed: one image (IMAGE), one
//! video (REELS shared to the feed, as Instagram no longer takes feed VIDEO) or 2–10 items
//! (CAROUSEL of children with `is_carousel_item`); `reels`: one video; `stories`: one image or
//! video — polls each container's `status_code` until FINISHED, reserves a publish from the
//! quota, then calls `media_publish`, the irreversible call.
//!
//! The publishing quota (docs say 50 or 100 posts per 24 hours, facts §4.3) is read live from
//! `content_publishing_limit` right before every `media_publish`, and one publish is reserved
//! through the shared gate ([`RateLimitGate::reserve_publish`], key
//! `instagram_publishing_quota`): Meta's count plus Herald's publishes it may not show yet, taken
//! atomically across every worker process, so two workers never both take the last slot. A
//! refused publish frees its reservation; one whose outcome is unknown keeps it. When the quota
//! is used up the job waits for the next free slot, and the gate remembers it so other workers
//! do not make containers meanwhile. Other rate-limit keys: `instagram_me`, `instagram_media`,
//! `instagram_upload`, `instagram_status`, `instagram_publish`, `instagram_read`.
mod settings;
mod upload;

pub use settings::{InstagramSettings, ENTRY};

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaKind, Platform, PlatformFailure};
use serde::Deserialize;
use url::Url;

use super::http::{self, PlatformApi, SendError};
use super::meta::errors::{self, instagram_subcode, GraphPlatform};
use super::meta::graph::{self, CallContext};
use super::meta::login::{self, FacebookLogin, GraphConfig, IdRef, RenewedPage, GRAPH_VERSION};
use super::meta::quota::{self, parse_graph_time, PublishingQuota, QuotaEntry};
use super::x::join;
use super::{
    AuthorizationStart, ConnectedAccount, CreatedPost, MediaUpload, PlatformAdapter, PostDraft,
    PostError, PublishReservation, RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::media_source::{MediaSource, MediaUrlPolicy};
use crate::oauth::SetupError;
use crate::platforms::media_not_taken;
use crate::secret::Secret;
use crate::text::normalize_whitespace as normalize;

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
const UPLOAD: CallContext = CallContext::api("upload the video");
const PUBLISH: CallContext = CallContext::api("publish the post");
const READ_POSTS: CallContext = CallContext::api("list the account's posts");

/// Posts created this long before `since` still count: clocks differ between Herald and Meta.
const CLOCK_SKEW_SECS: i64 = 5;
/// The publishing quota's window (facts §4.3).
const QUOTA_WINDOW: TimeDelta = quota::WINDOW;

/// How Instagram gets a video's bytes (`INSTAGRAM_VIDEO_UPLOAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoUpload {
    /// Herald streams the video to `rupload.facebook.com` (`upload_type=resumable`), resuming
    /// an interrupted upload where Meta stopped. Meta offers it to apps with Facebook Login for
    /// Business (facts §4.2).
    #[default]
    Resumable,
    /// Meta fetches the video from its public URL (`video_url`): for apps without Facebook
    /// Login for Business.
    Url,
}

impl std::str::FromStr for VideoUpload {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "resumable" => Ok(Self::Resumable),
            "url" => Ok(Self::Url),
            other => Err(format!("{other:?} is neither `resumable` nor `url`")),
        }
    }
}

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
    /// How videos reach Instagram.
    pub video_upload: VideoUpload,
    /// Versioned base of resumable uploads: `{upload_base}/{container-id}`. Herald sends the
    /// token only here, whatever `uri` a container names.
    pub upload_base: Url,
    /// Bytes per upload request; each is confirmed (and recorded) before the next.
    pub upload_chunk_bytes: u64,
    /// Which media URLs Herald may download videos from (see `media_source`).
    pub media_policy: MediaUrlPolicy,
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
            video_upload: VideoUpload::Resumable,
            upload_base: Url::parse(&format!(
                "https://rupload.facebook.com/ig-api-upload/{GRAPH_VERSION}"
            ))
            .expect("static URL is valid"),
            upload_chunk_bytes: 8 * 1024 * 1024,
            media_policy: MediaUrlPolicy::default(),
        }
    }

    /// Configuration for a Graph-compatible server (the sandbox's `/meta`) at `base`, which
    /// also takes resumable uploads at `{base}/ig-api-upload/{version}/`.
    pub fn for_base(base: Url, client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            graph: GraphConfig::for_base(base.clone(), client_id, client_secret, &DEFAULT_SCOPES),
            status_poll_interval: Duration::from_millis(100),
            status_poll_max_wait: Duration::from_secs(30),
            upload_base: join(&join(&base, "ig-api-upload"), GRAPH_VERSION),
            upload_chunk_bytes: 1024 * 1024,
            ..Self::new(String::new(), Secret::new(""))
        }
    }
}

/// The Instagram adapter. Cheap to share: hold it in an `Arc`.
pub struct InstagramAdapter {
    config: InstagramConfig,
    login: FacebookLogin,
    /// Downloads videos to upload, from public addresses only (see `media_source`).
    media_source: MediaSource,
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
    /// A video Meta fetches from its URL.
    Video(&'a str),
    /// A video already uploaded into this container (resumable upload).
    Container(&'a str),
}

impl<'a> MediaRef<'a> {
    fn parse(reference: &'a str) -> Option<Self> {
        if let Some(url) = reference.strip_prefix("image:") {
            return Some(Self::Image(url));
        }
        if let Some(id) = reference.strip_prefix("container:") {
            return Some(Self::Container(id));
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

type Params = Vec<(&'static str, String)>;

/// A container of the post: one to make, or one a resumable upload already made (with the
/// index of its media item).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Made {
    New(Params),
    Uploaded { id: String, media_index: usize },
}

/// The containers of a post: the carousel's children (in order), then the one to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    children: Vec<Made>,
    parent: Made,
}

fn permanent(code: &str, message: impl Into<String>) -> PlatformFailure {
    PlatformFailure::new(ErrorClass::Permanent, code, message)
}

/// The `media_type` (and `is_carousel_item`) of a video that is item `index` of `count` in a
/// post for `placement`, or why Instagram cannot take it. Reels and stories are one item; a
/// feed video alone is a reel shared to the feed; several items are a carousel.
fn video_container(
    placement: Placement,
    count: usize,
) -> Result<&'static [(&'static str, &'static str)], PlatformFailure> {
    match (placement, count) {
        (Placement::Stories, 1) => Ok(&[("media_type", "STORIES")]),
        (Placement::Stories, _) => Err(permanent(
            "story_single_media",
            "an Instagram story is one image or one video; publish each item as its own story",
        )),
        (Placement::Reels | Placement::Feed, 1) => {
            Ok(&[("media_type", "REELS"), ("share_to_feed", "true")])
        }
        (Placement::Reels, _) => Err(permanent(
            "reel_single_video",
            "an Instagram reel is exactly one video",
        )),
        (Placement::Feed, n) if n > 10 => Err(permanent(
            "carousel_too_large",
            format!("an Instagram carousel takes 2 to 10 items; this post has {n}"),
        )),
        (Placement::Feed, _) => Ok(&[("media_type", "VIDEO"), ("is_carousel_item", "true")]),
    }
}

/// The caption parameter, for the containers that take one (not carousel items, not stories).
fn caption_of(draft: &PostDraft, params: &mut Params) {
    if !draft.text.is_empty() {
        params.push(("caption", draft.text.clone()));
    }
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
    let placement = Placement::of(draft);
    let single = |item: MediaRef<'_>, media_index: usize| -> Result<Made, PlatformFailure> {
        let mut params: Params = Vec::new();
        match item {
            MediaRef::Image(url) => {
                match placement {
                    Placement::Stories => params.push(("media_type", "STORIES".into())),
                    Placement::Reels => {
                        return Err(permanent(
                            "reel_single_video",
                            "an Instagram reel is exactly one video",
                        ))
                    }
                    Placement::Feed => {}
                }
                params.push(("image_url", url.into()));
            }
            MediaRef::Video(url) => {
                for (key, value) in video_container(placement, 1)? {
                    params.push((key, (*value).into()));
                }
                params.push(("video_url", url.into()));
            }
            MediaRef::Container(id) => {
                video_container(placement, 1)?;
                return Ok(Made::Uploaded {
                    id: id.to_owned(),
                    media_index,
                });
            }
        }
        if placement != Placement::Stories {
            caption_of(draft, &mut params);
        }
        Ok(Made::New(params))
    };
    match media.as_slice() {
        [] => Err(permanent(
            "media_required",
            "an Instagram post needs an image or a video; add one",
        )),
        [one] => Ok(Plan {
            children: Vec::new(),
            parent: single(*one, 0)?,
        }),
        many => {
            // Stories and reels are single items, carousels 2 to 10: whatever the kinds.
            video_container(placement, many.len())?;
            let children = many
                .iter()
                .enumerate()
                .map(|(media_index, item)| match item {
                    MediaRef::Image(url) => Made::New(vec![
                        ("image_url", (*url).to_owned()),
                        ("is_carousel_item", "true".to_owned()),
                    ]),
                    MediaRef::Video(url) => Made::New(vec![
                        ("media_type", "VIDEO".to_owned()),
                        ("video_url", (*url).to_owned()),
                        ("is_carousel_item", "true".to_owned()),
                    ]),
                    MediaRef::Container(id) => Made::Uploaded {
                        id: (*id).to_owned(),
                        media_index,
                    },
                })
                .collect();
            let mut parent: Params = vec![("media_type", "CAROUSEL".into())];
            caption_of(draft, &mut parent);
            Ok(Plan {
                children,
                parent: Made::New(parent),
            })
        }
    }
}

/// A container expired before it was published: the next attempt makes a new one.
fn expired() -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::Retryable,
        "container_expired",
        "the Instagram media container expired before it was published; Herald makes a new one",
    )
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
        let media_source =
            MediaSource::new(config.media_policy.clone(), config.graph.request_timeout)?;
        Ok(Self {
            config,
            login,
            media_source,
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
                        subcode
                            .map_or("container_error".into(), |s| format!("container_error_{s}")),
                        format!("Instagram could not process the post's media: {advice} ({said})"),
                    ));
                }
                Some("EXPIRED") => return Err(expired()),
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
        let plan = plan(draft)?;
        if plan.children.is_empty() {
            return self.ready(token, ig_id, draft, &plan.parent, limits).await;
        }
        let mut ids = Vec::with_capacity(plan.children.len());
        for child in &plan.children {
            ids.push(match child {
                Made::New(params) => self.create_container(token, ig_id, params, limits).await?,
                Made::Uploaded { id, .. } => id.clone(),
            });
        }
        for (id, child) in ids.iter_mut().zip(&plan.children) {
            match child {
                Made::New(_) => self.wait_until_ready(token, id, limits).await?,
                uploaded => *id = self.ready(token, ig_id, draft, uploaded, limits).await?,
            }
        }
        let mut parent = plan.parent;
        if let Made::New(params) = &mut parent {
            params.push(("children", ids.join(",")));
        }
        self.ready(token, ig_id, draft, &parent, limits).await
    }

    /// The container of `made`, FINISHED. An uploaded video whose container expired before it
    /// was published (24 hours, e.g. while the quota was used up) is uploaded again.
    async fn ready(
        &self,
        token: &Secret,
        ig_id: &str,
        draft: &PostDraft,
        made: &Made,
        limits: &dyn RateLimitGate,
    ) -> Result<String, PlatformFailure> {
        let id = match made {
            Made::New(params) => self.create_container(token, ig_id, params, limits).await?,
            Made::Uploaded { id, .. } => id.clone(),
        };
        match self.wait_until_ready(token, &id, limits).await {
            Err(failure) if failure.code == "container_expired" => {}
            other => return other.map(|()| id),
        }
        let Made::Uploaded { media_index, .. } = made else {
            return Err(expired());
        };
        let Some(item) = draft.media.get(*media_index) else {
            return Err(expired());
        };
        tracing::info!(container = %id, "the uploaded video's container expired; uploading it again");
        let upload = MediaUpload {
            item,
            index: *media_index,
            count: draft.media.len(),
            post: draft,
            resume: None,
        };
        let again = upload::upload(self, token, &upload, limits, &upload::Unrecorded).await?;
        let id = again
            .strip_prefix("container:")
            .unwrap_or(&again)
            .to_owned();
        self.wait_until_ready(token, &id, limits).await?;
        Ok(id)
    }

    /// When the oldest post in the 24-hour window leaves it: the next free publishing slot
    /// (`None` when Instagram lists none).
    async fn next_free_slot(
        &self,
        token: &Secret,
        ig_id: &str,
        limits: &dyn RateLimitGate,
    ) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let since = (now - QUOTA_WINDOW).timestamp().to_string();
        let mut posted = Vec::new();
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
            posted.extend(
                listed
                    .map(|l| l.data)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|m| m.timestamp.as_deref().and_then(parse_graph_time)),
            );
        }
        quota::next_free_slot(posted, now)
    }

    /// The publishing quota as configured.
    fn quota(&self) -> PublishingQuota {
        PublishingQuota {
            key: QUOTA_KEY,
            platform: "Instagram",
            owner: "account",
            items: "posts",
            fallback: self.config.publish_quota_fallback,
            cap: self.config.publish_quota_cap,
        }
    }

    /// Reads `content_publishing_limit` and reserves this publish through the shared gate.
    async fn reserve_slot(
        &self,
        token: &Secret,
        ig_id: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<PublishReservation, PlatformFailure> {
        let read_at = Utc::now();
        // Meta takes a `since` at most 24 hours old.
        let since = (read_at - QUOTA_WINDOW + TimeDelta::minutes(1)).timestamp();
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
        let quota = self.quota();
        let reading = quota.reading(live.data.into_iter().next(), read_at);
        quota
            .reserve(reading, limits, || {
                self.next_free_slot(token, ig_id, limits)
            })
            .await
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
            if quota::is_refusal(&failure) {
                // Another client used the quota meanwhile: wait for the next free slot.
                let free_at = self
                    .next_free_slot(token, ig_id, limits)
                    .await
                    .unwrap_or_else(|| Utc::now() + TimeDelta::hours(1));
                return Err(PostError::Failed(
                    self.quota().refused(failure, free_at, limits).await,
                ));
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

    /// Renews the token of the Page linked to the account through the login's user token
    /// (see `meta::login`).
    #[tracing::instrument(skip_all, fields(platform = "instagram"))]
    async fn refresh(
        &self,
        account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure> {
        let page = RenewedPage::LinkedTo(&account.account_id);
        self.login.renew_page_grant(self, refresh_token, page).await
    }

    /// Reads the renewal handle with the Page id an older Herald stored.
    fn current_form(&self, stored: TokenGrant) -> TokenGrant {
        login::current_form(stored)
    }

    /// Facebook Login's Deauthorize Callback (the person removed the app).
    fn read_webhook(
        &self,
        _headers: &std::collections::HashMap<String, String>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<super::WebhookNotice, super::WebhookRefusal> {
        self.login.read_deauthorize(body, now)
    }

    /// Facebook grants per person, not per Page: the login's permissions are taken back
    /// (see `meta::login`), which the caller asks for only with the person's last connection.
    async fn revoke(
        &self,
        _account: &AccountProfile,
        grant: &TokenGrant,
    ) -> Result<(), PlatformFailure> {
        self.login.revoke(self, grant).await
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
                grant: Some(self.login.page_grant(token, grant)),
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

    /// Images: Instagram fetches them when their container is made, nothing to send. Videos:
    /// uploaded now into a resumable container (see [`upload`]), or fetched by Meta from their
    /// URL with `INSTAGRAM_VIDEO_UPLOAD=url`.
    async fn upload_media(
        &self,
        access_token: &Secret,
        upload: &MediaUpload<'_>,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        let item = upload.item;
        match (item.kind, self.config.video_upload) {
            (MediaKind::Image, _) => {
                progress.started(0).await;
                Ok(format!("image:{}", item.url))
            }
            (MediaKind::Video, VideoUpload::Url) => {
                progress.started(0).await;
                Ok(format!("video:{}", item.url))
            }
            (MediaKind::Video, VideoUpload::Resumable) => {
                upload::upload(self, access_token, upload, limits, progress).await
            }
            (MediaKind::Gif, _) => Err(media_not_taken(
                "Instagram",
                "GIFs",
                "post it as a video or a JPEG image",
            )),
            (MediaKind::Document, _) => Err(media_not_taken(
                "Instagram",
                "documents",
                "post its pages as a carousel of images",
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
        let ig_id = draft.account.account_id.clone();
        let quota = self.quota();
        quota.known_free(limits).await?;
        let container = self.prepare(access_token, &ig_id, draft, limits).await?;
        let reservation = self.reserve_slot(access_token, &ig_id, limits).await?;
        let published = self.publish(access_token, &ig_id, &container, limits).await;
        quota.settle(&reservation, &published, limits).await;
        let post_id = published?;
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
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        let account_id = draft.account.account_id.as_str();
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

    fn keys(made: &Made) -> Vec<String> {
        match made {
            Made::New(params) => params.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            Made::Uploaded { id, media_index } => vec![format!("uploaded {id} #{media_index}")],
        }
    }

    #[test]
    fn each_placement_makes_its_containers() {
        let plan_of = |media: &[&str], placement| plan(&draft(media, placement)).unwrap();
        let single = plan_of(&["image:https://a/1.jpg"], None);
        assert!(single.children.is_empty());
        assert_eq!(
            keys(&single.parent),
            ["image_url=https://a/1.jpg", "caption=caption #tag"]
        );

        let reel = keys(&plan_of(&["video:https://a/v.mp4"], None).parent);
        assert!(reel.contains(&"media_type=REELS".to_owned()));
        assert!(reel.contains(&"share_to_feed=true".to_owned()));

        assert_eq!(
            keys(&plan_of(&["image:https://a/s.jpg"], Some("stories")).parent),
            ["media_type=STORIES", "image_url=https://a/s.jpg"]
        );

        let carousel = plan_of(&["image:https://a/1.jpg", "video:https://a/2.mp4"], None);
        assert_eq!(carousel.children.len(), 2);
        assert!(keys(&carousel.children[1]).contains(&"media_type=VIDEO".to_owned()));
        assert!(keys(&carousel.children[0]).contains(&"is_carousel_item=true".to_owned()));
        assert_eq!(
            keys(&carousel.parent),
            ["media_type=CAROUSEL", "caption=caption #tag"]
        );
    }

    #[test]
    fn uploaded_videos_are_their_own_containers() {
        let plan_of = |media: &[&str], placement| plan(&draft(media, placement)).unwrap();
        for placement in [None, Some("reels"), Some("stories")] {
            let plan = plan_of(&["container:179"], placement);
            assert_eq!(keys(&plan.parent), ["uploaded 179 #0"], "{placement:?}");
        }
        let carousel = plan_of(&["image:https://a/1.jpg", "container:179"], None);
        assert_eq!(keys(&carousel.children[1]), ["uploaded 179 #1"]);
        assert!(plan(&draft(&["container:1", "container:2"], Some("reels"))).is_err());
        assert_eq!(
            video_container(Placement::Feed, 3).unwrap(),
            [("media_type", "VIDEO"), ("is_carousel_item", "true")]
        );
        assert_eq!(
            video_container(Placement::Stories, 2).unwrap_err().code,
            "story_single_media"
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
