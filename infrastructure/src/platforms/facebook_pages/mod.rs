//! Facebook Pages adapter (platform-facts §3, §5).
//!
//! Connecting: Facebook Login (see [`crate::platforms::meta::login`]); one login yields one
//! connection per Page the person can create content on, each holding the Page's own token
//! (which does not expire when made from a long-lived user token). Instagram business accounts
//! linked to those Pages are connected through the Instagram adapter's own login; both use the
//! same Meta app.
//!
//! Publishing, always with the Page token:
//! - text and link posts: `POST /{page}/feed` with `message` and `link`;
//! - photos: `upload_media` uploads each one unpublished (`POST /{page}/photos` with `url` and
//!   `published=false`; nothing is visible yet) and returns `photo:{id}`; `create_post` makes
//!   the post with `attached_media` — the irreversible call;
//! - a video: `upload_phase=start/transfer/finish` on `graph-video`, published with the post's
//!   title and text (see [`video`]); `create_post` waits until Facebook has processed it and
//!   returns the post;
//! - a reel (`options.facebook_pages.placement = "reels"`): `upload_media` opens it on
//!   `/{page}/video_reels` and streams the video to rupload; `create_post` publishes it
//!   (`upload_phase=finish`, within the Page's 30 reels per 24 hours) and waits until it is
//!   published (see [`reel`]).
//!
//! Every call asks the shared `RateLimitGate` first and reports Meta's usage headers after.
//! Rate-limit keys: `facebook_me`, `facebook_feed`, `facebook_photos`, `facebook_videos`,
//! `facebook_reels`, `facebook_reels_upload`, `facebook_reels_quota` (the reels of 24 hours),
//! `facebook_read`.
mod reel;
mod settings;
mod video;

pub use settings::{FacebookPagesSettings, ENTRY};

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaKind, Platform, PlatformFailure};
use serde::Deserialize;
use url::Url;

use super::http::{self, PlatformApi, SendError};
use super::meta::errors::{self, GraphPlatform};
use super::meta::graph::{self, CallContext};
use super::meta::login::{self, FacebookLogin, GraphConfig, RenewedPage, GRAPH_VERSION};
use super::x::join;
use super::{
    AuthorizationStart, ConnectedAccount, CreatedPost, MediaUpload, PlatformAdapter, PostDraft,
    PostError, RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::media_source::{MediaSource, MediaUrlPolicy};
use crate::oauth::SetupError;
use crate::platforms::media_not_taken;
use crate::secret::Secret;
use crate::text::normalize_whitespace as normalize;

/// Permissions Herald asks for: list the Pages, read and publish as them (facts §5).
pub const DEFAULT_SCOPES: [&str; 3] = [
    "pages_show_list",
    "pages_read_engagement",
    "pages_manage_posts",
];

const FACEBOOK: GraphPlatform = GraphPlatform {
    name: "Facebook",
    permissions: "pages_show_list, pages_read_engagement and pages_manage_posts",
    reconnect: "connect your Facebook Pages again",
    credentials: "FACEBOOK_PAGES_CLIENT_ID and FACEBOOK_PAGES_CLIENT_SECRET",
};
const RECONNECT: &str = "connect your Facebook Pages again";

const READ_PAGE: CallContext = CallContext::api("read the Page");
const UPLOAD_PHOTO: CallContext = CallContext::api("upload the photo");
const PUBLISH: CallContext = CallContext::api("publish the post");
const READ_POSTS: CallContext = CallContext::api("list the Page's posts");
const VIDEO_START: CallContext = CallContext::api("start the video upload");
const VIDEO_TRANSFER: CallContext = CallContext::api("send a part of the video");
const VIDEO_FINISH: CallContext = CallContext::api("finish the video upload");
const VIDEO_STATUS: CallContext = CallContext::api("check the video's processing");
const REEL_START: CallContext = CallContext::api("start the reel's upload");
const REEL_UPLOAD: CallContext = CallContext::api("upload the reel's video");
const REEL_FINISH: CallContext = CallContext::api("publish the reel");

/// Posts created this long before `since` still count: clocks differ between Herald and Meta.
const CLOCK_SKEW_SECS: i64 = 5;

/// Configuration of the Facebook Pages adapter.
#[derive(Debug, Clone)]
pub struct FacebookPagesConfig {
    pub graph: GraphConfig,
    /// Largest video chunk Herald sends (Facebook may ask for less); held in memory while sent.
    pub max_chunk_bytes: u64,
    /// Pause between video status checks.
    pub status_poll_interval: Duration,
    /// How long to wait for video processing before giving up on this attempt.
    pub status_poll_max_wait: Duration,
    /// Which video URLs Herald may download (photos are fetched by Facebook itself).
    pub media_policy: MediaUrlPolicy,
    /// Reels a Page publishes through the API per moving 24 hours (Meta: 30).
    pub reels_per_day: u32,
    /// Versioned base of reel uploads: `{reel_upload_base}/{video-id}`. Herald sends the token
    /// only here, whatever `upload_url` Meta names.
    pub reel_upload_base: Url,
    /// Bytes per reel upload request; each is confirmed (and recorded) before the next.
    pub reel_chunk_bytes: u64,
}

impl FacebookPagesConfig {
    /// Configuration for Meta's real hosts.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            graph: GraphConfig::new(client_id, client_secret, &DEFAULT_SCOPES),
            max_chunk_bytes: 4 * 1024 * 1024,
            status_poll_interval: Duration::from_secs(3),
            status_poll_max_wait: Duration::from_secs(10 * 60),
            media_policy: MediaUrlPolicy::default(),
            reels_per_day: 30,
            reel_upload_base: Url::parse(&format!(
                "https://rupload.facebook.com/video-upload/{GRAPH_VERSION}"
            ))
            .expect("static URL is valid"),
            reel_chunk_bytes: 8 * 1024 * 1024,
        }
    }

    /// Configuration for a Graph-compatible server (the sandbox's `/meta`) at `base`, which
    /// also takes reel uploads at `{base}/video-upload/{version}/`.
    pub fn for_base(base: Url, client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            reel_upload_base: join(&join(&base, "video-upload"), GRAPH_VERSION),
            reel_chunk_bytes: 1024 * 1024,
            graph: GraphConfig::for_base(base, client_id, client_secret, &DEFAULT_SCOPES),
            status_poll_interval: Duration::from_millis(100),
            status_poll_max_wait: Duration::from_secs(30),
            ..Self::new(String::new(), Secret::new(""))
        }
    }
}

/// The Facebook Pages adapter. Cheap to share: hold it in an `Arc`.
pub struct FacebookPagesAdapter {
    config: FacebookPagesConfig,
    login: FacebookLogin,
    /// Downloads videos to upload, from public addresses only (see `media_source`).
    media_source: MediaSource,
}

impl std::fmt::Debug for FacebookPagesAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacebookPagesAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct IdBody {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Me {
    id: String,
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Feed {
    #[serde(default)]
    data: Vec<FeedPost>,
}

#[derive(Debug, Deserialize)]
struct FeedPost {
    id: String,
    #[serde(default)]
    message: Option<String>,
    permalink_url: Option<String>,
    #[serde(default)]
    attachments: Option<Attachments>,
}

#[derive(Debug, Deserialize)]
struct Attachments {
    #[serde(default)]
    data: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Permalink {
    permalink_url: Option<String>,
}

/// A media reference from `upload_media`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MediaRef<'a> {
    Photo(&'a str),
    Video { page_id: &'a str, video_id: &'a str },
    Reel { page_id: &'a str, video_id: &'a str },
}

impl<'a> MediaRef<'a> {
    fn parse(reference: &'a str) -> Option<Self> {
        if let Some(id) = reference.strip_prefix("photo:") {
            return Some(Self::Photo(id));
        }
        if let Some(rest) = reference.strip_prefix("reel:") {
            let (page_id, video_id) = rest.split_once(':')?;
            return Some(Self::Reel { page_id, video_id });
        }
        let (page_id, video_id) = reference.strip_prefix("video:")?.split_once(':')?;
        Some(Self::Video { page_id, video_id })
    }
}

/// The post's message: the text, plus the link when photos take the link's place (Facebook
/// does not take both on one post).
fn message(draft: &PostDraft) -> String {
    match &draft.link {
        Some(link) if !draft.media_ids.is_empty() && !draft.text.contains(link.as_str()) => {
            if draft.text.is_empty() {
                link.clone()
            } else {
                format!("{}\n\n{link}", draft.text)
            }
        }
        _ => draft.text.clone(),
    }
}

impl FacebookPagesAdapter {
    pub fn new(config: FacebookPagesConfig) -> Result<Self, SetupError> {
        let login = FacebookLogin::new(config.graph.clone(), "Facebook")?;
        let media_source =
            MediaSource::new(config.media_policy.clone(), config.graph.request_timeout)?;
        Ok(Self {
            config,
            login,
            media_source,
        })
    }

    pub fn config(&self) -> &FacebookPagesConfig {
        &self.config
    }

    fn url(&self, path: &str) -> Url {
        self.config.graph.graph_url(path)
    }

    async fn video_status(
        &self,
        token: &Secret,
        video_id: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<video::VideoStatus, PlatformFailure> {
        // The id comes from Meta, but it is a path segment: never let it name another path.
        if video_id.contains(['/', '?', '#']) {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "invalid_media_reference",
                "the video reference is not one Facebook made; publish the media again",
            ));
        }
        let mut url = self.url(video_id);
        url.query_pairs_mut()
            .append_pair("fields", "status,permalink_url");
        let request = self.login.http().get(url).bearer_auth(token.expose());
        http::call_json(self, "facebook_read", limits, request, VIDEO_STATUS).await
    }

    /// `POST /me/photos?url=&published=false`: a photo waiting to be attached.
    async fn upload_photo(
        &self,
        token: &Secret,
        url: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<String, PlatformFailure> {
        let request = self
            .login
            .http()
            .post(self.url("me/photos"))
            .bearer_auth(token.expose())
            .form(&[("url", url), ("published", "false")]);
        let photo: IdBody =
            http::call_json(self, "facebook_photos", limits, request, UPLOAD_PHOTO).await?;
        Ok(format!("photo:{}", photo.id))
    }

    /// `POST /me/feed`: the irreversible call for text, link and photo posts.
    async fn publish(
        &self,
        token: &Secret,
        draft: &PostDraft,
        photos: &[&str],
        limits: &dyn RateLimitGate,
    ) -> Result<String, PostError> {
        let mut form: Vec<(String, String)> = Vec::new();
        let text = message(draft);
        if !text.is_empty() {
            form.push(("message".into(), text));
        }
        if photos.is_empty() {
            if let Some(link) = &draft.link {
                form.push(("link".into(), link.clone()));
            }
        }
        for (i, id) in photos.iter().enumerate() {
            form.push((
                format!("attached_media[{i}]"),
                serde_json::json!({ "media_fbid": id }).to_string(),
            ));
        }
        let request = self
            .login
            .http()
            .post(self.url("me/feed"))
            .bearer_auth(token.expose())
            .form(&form);
        let response = match http::send(self, "facebook_feed", limits, request).await {
            Ok(response) => response,
            Err(SendError::Limited(failure)) => return Err(PostError::Failed(failure)),
            Err(SendError::Transport(e)) => {
                return Err(graph::publish_transport_error("Facebook", &e, PUBLISH))
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(_) if status.is_success() => {
                return Err(PostError::OutcomeUnknown(format!(
                    "Facebook published the post (HTTP {status}) but its answer was cut off; the post exists"
                )))
            }
            Err(_) => Default::default(),
        };
        if !status.is_success() {
            let failure = self.classify(status, &headers, &body, PUBLISH, Utc::now());
            // "Duplicate status message": an earlier try may have made the post after all.
            if failure.code == "graph_506" {
                return Err(PostError::OutcomeUnknown(format!(
                    "{}; an earlier attempt may have created it",
                    failure.message
                )));
            }
            return Err(PostError::Failed(failure));
        }
        serde_json::from_slice::<IdBody>(&body)
            .map(|b| b.id)
            .map_err(|_| {
                PostError::OutcomeUnknown(format!(
                    "Facebook answered HTTP {status} without a readable post id; the post may exist"
                ))
            })
    }

    /// The post's permalink, or one built from its id when Facebook does not say.
    async fn post_url(&self, token: &Secret, post_id: &str, limits: &dyn RateLimitGate) -> String {
        let mut url = self.url(post_id);
        url.query_pairs_mut().append_pair("fields", "permalink_url");
        let request = self
            .login
            .http()
            .get(url)
            .bearer_auth(token.expose())
            .timeout(Duration::from_secs(5));
        match http::call_json::<_, Permalink>(self, "facebook_read", limits, request, READ_POSTS)
            .await
        {
            Ok(Permalink {
                permalink_url: Some(link),
            }) => self.config.graph.web_url(&link),
            _ => self.fallback_url(post_id),
        }
    }

    fn fallback_url(&self, post_id: &str) -> String {
        match post_id.split_once('_') {
            Some((page, post)) => self.config.graph.web_url(&format!("/{page}/posts/{post}")),
            None => self.config.graph.web_url(&format!("/{post_id}")),
        }
    }
}

errors::graph_platform_api!(FacebookPagesAdapter, FACEBOOK);

#[async_trait::async_trait]
impl PlatformAdapter for FacebookPagesAdapter {
    fn platform(&self) -> Platform {
        Platform::FacebookPages
    }

    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        self.login.authorization_url(redirect_uri)
    }

    /// The code → a long-lived user token; [`Self::accounts`] turns it into Page tokens.
    #[tracing::instrument(skip_all, fields(platform = "facebook_pages"))]
    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.login.exchange_code(self, code, redirect_uri).await
    }

    /// Renews the Page token through the login's user token (see `meta::login`); the Page is
    /// the connection's account.
    #[tracing::instrument(skip_all, fields(platform = "facebook_pages"))]
    async fn refresh(
        &self,
        account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.login
            .renew_page_grant(self, refresh_token, RenewedPage::Page(&account.account_id))
            .await
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

    /// The Page a Page token acts as (or the person, for a user token).
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure> {
        let mut url = self.url("me");
        url.query_pairs_mut().append_pair("fields", "id,name");
        let request = self
            .login
            .http()
            .get(url)
            .bearer_auth(access_token.expose());
        let me: Me = http::call_json(self, "facebook_me", &Unlimited, request, READ_PAGE).await?;
        let name = me.name.unwrap_or_else(|| me.id.clone());
        Ok(AccountProfile {
            account_id: me.id,
            username: name.clone(),
            display_name: name,
        })
    }

    /// One connection per Page the person can create content on, each with its Page token.
    #[tracing::instrument(skip_all, fields(platform = "facebook_pages", pages = tracing::field::Empty))]
    async fn accounts(&self, grant: &TokenGrant) -> Result<Vec<ConnectedAccount>, PlatformFailure> {
        self.login
            .require_permissions(self, &grant.access_token, &DEFAULT_SCOPES, RECONNECT)
            .await?;
        let pages = self
            .login
            .pages(self, &grant.access_token, "id,name,access_token,tasks")
            .await?;
        tracing::Span::current().record("pages", pages.len());
        if pages.is_empty() {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "no_pages",
                "the Facebook login gave Herald no Page: create a Facebook Page or, in the login dialog, choose the Pages Herald may publish to, then connect again",
            ));
        }
        let (usable, read_only): (Vec<_>, Vec<_>) =
            pages.into_iter().partition(|p| p.can_create_content());
        if usable.is_empty() {
            let names: Vec<String> = read_only.iter().map(|p| p.display_name()).collect();
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "no_publishable_pages",
                format!(
                    "your role on {} does not allow creating content; ask a Page admin for a role with content permissions, then connect again",
                    names.join(", ")
                ),
            ));
        }
        Ok(usable
            .into_iter()
            .filter_map(|page| {
                let token = page.access_token.clone()?;
                let name = page.display_name();
                Some(ConnectedAccount {
                    grant: Some(self.login.page_grant(&token, grant)),
                    profile: AccountProfile {
                        account_id: page.id,
                        username: name.clone(),
                        display_name: name,
                    },
                })
            })
            .collect())
    }

    /// Photos are uploaded unpublished; a video is uploaded and published (see [`video`]); a
    /// reel's video is uploaded, to be published by `create_post` (see [`reel`]).
    async fn upload_media(
        &self,
        access_token: &Secret,
        upload: &MediaUpload<'_>,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        match upload.item.kind {
            _ if upload.post.options.facebook_pages.is_reel() => {
                reel::upload(self, access_token, upload, limits, progress).await
            }
            MediaKind::Image | MediaKind::Gif => {
                progress.started(0).await;
                self.upload_photo(access_token, &upload.item.url, limits)
                    .await
            }
            MediaKind::Document => Err(media_not_taken(
                "Facebook",
                "documents",
                "share it as a link",
            )),
            MediaKind::Video => {
                if upload.count > 1 {
                    return Err(PlatformFailure::new(
                        ErrorClass::Permanent,
                        "video_not_alone",
                        "a Facebook post carries one video and nothing else; post the photos separately",
                    ));
                }
                video::upload(self, access_token, upload, limits, progress).await
            }
        }
    }

    #[tracing::instrument(
        skip_all,
        fields(platform = "facebook_pages", media = draft.media_ids.len(), post_id = tracing::field::Empty)
    )]
    async fn create_post(
        &self,
        access_token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        let media = draft
            .media_ids
            .iter()
            .map(|id| {
                MediaRef::parse(id).ok_or_else(|| {
                    PlatformFailure::new(
                        ErrorClass::Permanent,
                        "invalid_media_reference",
                        "the media reference is not one the Facebook adapter made; publish the media again",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let post_id = match media.as_slice() {
            [MediaRef::Reel { page_id, video_id }] => {
                let created =
                    reel::publish(self, access_token, draft, page_id, video_id, limits).await?;
                tracing::Span::current().record("post_id", created.post_id.as_str());
                return Ok(created);
            }
            [MediaRef::Video { page_id, video_id }] => {
                let permalink =
                    video::wait_until_ready(self, access_token, video_id, limits).await?;
                let post_id = format!("{page_id}_{video_id}");
                tracing::Span::current().record("post_id", post_id.as_str());
                let url = permalink.map_or_else(
                    || {
                        self.config
                            .graph
                            .web_url(&format!("/{page_id}/videos/{video_id}/"))
                    },
                    |p| self.config.graph.web_url(&p),
                );
                return Ok(CreatedPost { post_id, url });
            }
            refs => {
                let photos: Vec<&str> = refs
                    .iter()
                    .filter_map(|r| match r {
                        MediaRef::Photo(id) => Some(*id),
                        MediaRef::Video { .. } | MediaRef::Reel { .. } => None,
                    })
                    .collect();
                if photos.len() != refs.len() {
                    return Err(PostError::Failed(PlatformFailure::new(
                        ErrorClass::Permanent,
                        "video_not_alone",
                        "a Facebook post carries one video and nothing else; post the photos separately",
                    )));
                }
                self.publish(access_token, draft, &photos, limits).await?
            }
        };
        tracing::Span::current().record("post_id", post_id.as_str());
        let url = self.post_url(access_token, &post_id, limits).await;
        Ok(CreatedPost { post_id, url })
    }

    /// The Page's feed since `since`, matched on the message (and attachments for photos).
    #[tracing::instrument(skip_all, fields(platform = "facebook_pages", %since, found = tracing::field::Empty))]
    async fn find_post(
        &self,
        access_token: &Secret,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        // A reel is found by its own status: whether its publish reached Meta.
        if let [reference] = draft.media_ids.as_slice() {
            if let Some(MediaRef::Reel { page_id, video_id }) = MediaRef::parse(reference) {
                let found = reel::find(self, access_token, page_id, video_id, limits).await?;
                tracing::Span::current().record("found", found.is_some());
                return Ok(found);
            }
        }
        let account_id = draft.account.account_id.as_str();
        let start = (since - TimeDelta::seconds(CLOCK_SKEW_SECS)).timestamp();
        let mut url = self.url(account_id);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push("feed");
        }
        url.query_pairs_mut()
            .append_pair("since", &start.to_string())
            .append_pair(
                "fields",
                "id,message,created_time,permalink_url,attachments",
            )
            .append_pair("limit", "100");
        let request = self
            .login
            .http()
            .get(url)
            .bearer_auth(access_token.expose());
        let feed: Feed =
            http::call_json(self, "facebook_read", limits, request, READ_POSTS).await?;
        let wanted = normalize(&message(draft));
        let photos = draft.media_ids.len();
        // A photo post must carry attachments; a link post may too (the link's preview).
        let found = feed.data.into_iter().find(|post| {
            let attached = post
                .attachments
                .as_ref()
                .is_some_and(|a| !a.data.is_empty());
            normalize(post.message.as_deref().unwrap_or_default()) == wanted
                && (photos == 0 || attached)
        });
        tracing::Span::current().record("found", found.is_some());
        Ok(found.map(|post| CreatedPost {
            url: post.permalink_url.map_or_else(
                || self.fallback_url(&post.id),
                |p| self.config.graph.web_url(&p),
            ),
            post_id: post.id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_references_round_trip() {
        assert_eq!(MediaRef::parse("photo:12"), Some(MediaRef::Photo("12")));
        assert_eq!(
            MediaRef::parse(&video::reference("1", "2")),
            Some(MediaRef::Video {
                page_id: "1",
                video_id: "2"
            })
        );
        assert_eq!(
            MediaRef::parse(&reel::reference("1", "3")),
            Some(MediaRef::Reel {
                page_id: "1",
                video_id: "3"
            })
        );
        assert_eq!(MediaRef::parse("reel:3"), None);
        assert_eq!(MediaRef::parse("video:2"), None);
        assert_eq!(MediaRef::parse("image:https://x"), None);
    }

    #[test]
    fn a_link_joins_the_message_when_photos_take_its_place() {
        let mut draft = PostDraft {
            text: "look".into(),
            link: Some("https://example.com".into()),
            ..PostDraft::default()
        };
        assert_eq!(message(&draft), "look");
        draft.media_ids = vec!["photo:1".into()];
        assert_eq!(message(&draft), "look\n\nhttps://example.com");
        draft.text = String::new();
        assert_eq!(message(&draft), "https://example.com");
    }
}
